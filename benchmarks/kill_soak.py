"""Kill soak: a tiny training SIGKILLed at seeded random moments and resumed each time.

Checks, after every kill: ``checkpoints/last.pt`` and every ``step_*.pt`` load (never a torn file), the step
never goes backwards, ``generator.safetensors`` reads, and disk use stays bounded (step files at most
``keep_checkpoints`` + 1, the moment between writing a new one and pruning the oldest; temporaries of killed
writes are removed by the next resume). Each resume must start (a process that exits on its own before its kill
is a failed resume). A kill before the first checkpoint leaves a run that cannot be resumed; it is started over
with ``--overwrite``, as a user would. At the end, one more resume must run to its end.

    python benchmarks/kill_soak.py                    # 30 kills, ~4 minutes on 2 cores
    python benchmarks/kill_soak.py --kills 5 --seed 1
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gankit.errors import UserError
from gankit.io import RunDir, is_temporary_name, load_checkpoint, read_generator_export

KEEP = 2
TINY = ["--set", "model.z_dim=16", "--set", "model.g_conv_dim=8", "--set", "model.d_conv_dim=8",
        "--set", "training.batch_size=8", "--set", "training.log_every=2", "--set", "training.sample_every=10",
        "--set", f"training.keep_checkpoints={KEEP}", "--set", "training.tensorboard=false"]


def new_run(out: Path, overwrite: bool) -> list[str]:
    cmd = ["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "1000000", "--checkpoint-every", "2",
           "--device", "cpu", "--no-progress", *TINY]
    return cmd + (["--overwrite"] if overwrite else [])


def inspect(run: RunDir) -> dict:
    """What a kill left: the step of last.pt (None: none yet), unreadable files, step files and temporaries."""
    unreadable, step = [], None
    if run.last_checkpoint.exists():
        try:
            step = int(load_checkpoint(run.last_checkpoint)["step"])
        except UserError as exc:
            unreadable.append(f"last.pt: {exc}")
    step_files = run.step_checkpoints()
    for path in step_files:
        try:
            load_checkpoint(path)
        except UserError as exc:
            unreadable.append(f"{path.name}: {exc}")
    if run.generator.exists():
        try:
            read_generator_export(run.generator)
        except UserError as exc:
            unreadable.append(f"generator.safetensors: {exc}")
    temporaries = [p for folder in run.written_folders() if folder.is_dir() for p in folder.iterdir()
                   if is_temporary_name(p.name)]
    size = sum(p.stat().st_size for p in run.checkpoints.iterdir() if p.is_file()) if run.checkpoints.is_dir() else 0
    return {"step": step, "unreadable": unreadable, "step_files": len(step_files), "temporaries": len(temporaries),
            "checkpoint_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-delay", type=float, default=1.0, help="seconds after a launch, at least")
    parser.add_argument("--max-delay", type=float, default=12.0, help="seconds after a launch, at most (startup: ~5 s)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = {"kills": 0, "resumes": 0, "failed resumes": 0, "restarts over (killed before any checkpoint)": 0,
              "unreadable files": 0, "steps backwards": 0, "max step files": 0, "max temporaries": 0,
              "max checkpoints MB": 0.0}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gankit-soak-") as tmp:
        run = RunDir(Path(tmp) / "run")
        best = 0
        for k in range(args.kills):
            if run.last_checkpoint.exists():
                argv = ["train", "--resume", str(run.root), "--no-progress"]
                counts["resumes"] += 1
            else:
                argv = new_run(run.root, overwrite=run.root.exists())
                counts["restarts over (killed before any checkpoint)"] += k > 0
            proc = subprocess.Popen([sys.executable, "-m", "gankit", *argv], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            try:
                proc.wait(timeout=rng.uniform(args.min_delay, args.max_delay))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                counts["kills"] += 1
            else:  # it ended by itself before the kill: a resume that did not start
                counts["failed resumes"] += 1
                print(f"launch {k} exited with {proc.returncode}: {proc.stderr.read().strip()[-300:]}")
            found = inspect(run)
            counts["unreadable files"] += len(found["unreadable"])
            for line in found["unreadable"]:
                print(f"after kill {k}: unreadable {line}")
            if found["step"] is not None:
                counts["steps backwards"] += found["step"] < best
                best = max(best, found["step"])
            counts["max step files"] = max(counts["max step files"], found["step_files"])
            counts["max temporaries"] = max(counts["max temporaries"], found["temporaries"])
            counts["max checkpoints MB"] = max(counts["max checkpoints MB"], found["checkpoint_bytes"] / 2**20)
        final = subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", str(run.root), "--steps",
                                str(best + 2), "--no-progress"], capture_output=True, text=True)
        end = inspect(run)
    counts["final resume exit code"] = final.returncode
    counts["final step"] = end["step"]
    counts["step files at the end"] = end["step_files"]
    counts["temporaries at the end"] = end["temporaries"]
    print(f"kill soak: seed {args.seed}, kills {args.min_delay:g}-{args.max_delay:g} s after each launch, "
          f"checkpoint every 2 steps, keep_checkpoints {KEEP}, {time.perf_counter() - t0:.0f} s")
    for name, value in counts.items():
        print(f"  {name:<48} {value:.1f}" if isinstance(value, float) else f"  {name:<48} {value}")
    ok = (final.returncode == 0 and counts["failed resumes"] == 0 and counts["unreadable files"] == 0
          and counts["steps backwards"] == 0 and counts["max step files"] <= KEEP + 1 and end["temporaries"] == 0)
    print("  result" + " " * 43 + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
