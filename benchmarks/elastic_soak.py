"""Elastic soak: torchrun restarts after a killed process, again and again, on a machine kept busy.

Each round launches a tiny two-process run (gloo on the CPU) the way a user would,

    torchrun --nproc-per-node=2 --max-restarts=2 --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:PORT \\
        -m gankit train --preset sagan-digits --out RUN --steps 40 --checkpoint-every 4 ...

waits for its first checkpoint, waits a seeded random moment more (so the kill lands mid-step, mid-checkpoint or
between), SIGKILLs one worker (rank 0 or 1, seeded), and lets torchrun restart the group. A round passes when
torchrun exits 0, the restarted attempt said it resumed (once), ``last.pt`` is at the final step with finite
weights, the metrics rows never repeat a step, no temporary file is left and nothing holds the run's lock. A run
that ended before its kill is counted apart (no kill, no verdict). Meanwhile one busy-loop process per core (started
and stopped here) competes for the CPUs, as on a shared machine.

    python benchmarks/elastic_soak.py                 # 20 rounds, ~1 minute each on 2 busy cores
    python benchmarks/elastic_soak.py --runs 5 --seed 1 --hogs 0
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gankit.errors import UserError
from gankit.io import RunDir, is_temporary_name, load_checkpoint
from gankit.training.lock import RunLock, RunLocked

REPO = Path(__file__).resolve().parents[1]
TINY = ["--set", "model.z_dim=16", "--set", "model.g_conv_dim=8", "--set", "model.d_conv_dim=8",
        "--set", "training.batch_size=8", "--set", "training.log_every=2", "--set", "training.sample_every=20",
        "--set", "training.tensorboard=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers(agent: int) -> dict[int, int]:
    """``{rank: pid}`` of torchrun's (pid ``agent``) worker processes, read from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != agent:
                continue
            env = dict(e.split("=", 1) for e in (stat.parent / "environ").read_text().split("\0") if "=" in e)
        except (OSError, IndexError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(stat.parent.name)
    return found


def check(run: RunDir, steps: int, log: str) -> list[str]:
    """What is wrong with a finished run (empty: nothing)."""
    problems = []
    resumed = [line for line in log.splitlines() if ": resumed " in line and "torchrun restart" in line]
    if len(resumed) != 1:
        problems.append(f"{len(resumed)} 'resumed' lines")
    try:
        state = load_checkpoint(run.last_checkpoint)
    except UserError as exc:
        return [*problems, f"last.pt: {exc}"]
    if state["step"] != steps:
        problems.append(f"last.pt at step {state['step']}, not {steps}")
    for net in ("G", "D", "G_ema"):
        if not all(t.isfinite().all() for t in state[net].values() if t.is_floating_point()):
            problems.append(f"{net} has non-finite weights")
    rows = [int(r.split(",")[0]) for r in run.metrics.read_text().splitlines()[1:]]
    if rows != sorted(set(rows)):
        problems.append("metrics.csv repeats or reorders steps")
    temporaries = [p.name for folder in run.written_folders() if folder.is_dir() for p in folder.iterdir()
                   if is_temporary_name(p.name)]
    if temporaries:
        problems.append(f"temporaries left: {temporaries}")
    try:
        RunLock(run.root).acquire().release()
    except RunLocked as exc:
        problems.append(str(exc))
    return problems


def one_round(k: int, rng: random.Random, tmp: Path, args: argparse.Namespace) -> tuple[str, str]:
    """``(verdict, detail)``; verdict ``pass``, ``fail`` or ``no kill``."""
    run = RunDir(tmp / f"run-{k:03d}")
    rank, delay = rng.randrange(2), rng.uniform(0.0, args.max_delay)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--max-restarts=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}", "-m", "gankit", "train",
           "--preset", "sagan-digits", "--out", str(run.root), "--steps", str(args.steps), "--checkpoint-every", "4",
           "--device", "cpu", "--no-progress", *TINY]
    log_path, pid, code = tmp / f"log-{k:03d}.txt", None, None
    with log_path.open("w") as log:
        agent = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + args.timeout
            while not run.last_checkpoint.exists() and agent.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(delay)
            pid = workers(agent.pid).get(rank) if agent.poll() is None else None
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            code = agent.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)  # torchrun stops its workers
                try:
                    agent.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
    text = log_path.read_text()
    what = f"rank {rank} killed {delay:.1f} s after the first checkpoint"
    if pid is None and code == 0:
        return "no kill", f"the run ended before its kill ({what})"
    if code != 0:
        tail = " | ".join(line for line in text.splitlines()[-400:] if "gankit:" in line)[-600:]
        return "fail", f"{what}: torchrun exit {code}; {tail}"
    problems = check(run, args.steps, text)
    return ("fail", f"{what}: {'; '.join(problems)}") if problems else ("pass", what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-delay", type=float, default=3.0, help="seconds after the first checkpoint, at most")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 1, help="busy-loop processes (default: cores)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one round may take")
    parser.add_argument("--keep", action="store_true", help="keep the run folders and logs (their path is said)")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("elastic soak: finds torchrun's workers in /proc (Linux only)")
    rng = random.Random(args.seed)
    counts = {"pass": 0, "fail": 0, "no kill": 0}
    t0 = time.perf_counter()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    tmp = Path(tempfile.mkdtemp(prefix="gankit-elastic-soak-"))
    try:
        for k in range(args.runs):
            started = time.perf_counter()
            verdict, detail = one_round(k, rng, tmp, args)
            counts[verdict] += 1
            print(f"round {k + 1}/{args.runs}: {verdict.upper()} in {time.perf_counter() - started:.0f} s ({detail})",
                  flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    minutes = (time.perf_counter() - t0) / 60
    ok = counts["fail"] == 0 and counts["pass"] > 0
    kept = f"; kept in {tmp}" if args.keep else ""
    print(f"elastic soak: {counts['pass']} passed, {counts['fail']} failed, {counts['no kill']} without a kill of "
          f"{args.runs} rounds (seed {args.seed}, {args.hogs} CPU hogs, {args.steps} steps, kill 0-"
          f"{args.max_delay:g} s after the first checkpoint), {math.ceil(minutes)} min{kept}: "
          f"{'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
