"""Elastic torchrun on CPU processes with gloo: a killed process is restarted by torchrun and ``gankit train --out
RUN`` continues RUN from its last checkpoint by itself; two torchrun "nodes" on one machine end with identical
weights on every rank. First the rule itself, on one process with torchrun's restart count set (fast).

The kill is a real one: the test waits for the run's first checkpoint and sends SIGKILL to rank 0 (the process that
holds the run folder's lock and writes it), found among torchrun's children by its ``RANK``. No hook in gankit
fakes the failure, so the test sees what a crashed process leaves (a lock held until the kernel drops it, the store
keys of the killed attempt, a half-done step) and what torchrun does about it (SIGTERM to the other rank, a new
rendezvous). Startup takes most of the time: each torchrun attempt imports torch in two processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import torch

from gankit.cli import main
from gankit.errors import UserError
from gankit.io import load_checkpoint
from gankit.training.lock import RunLock
from gankit.training.resume import RESUMABLE, plan_restart
from tests.data_writers import noise, save_image, snapshot
from tests.tiny import TINY_SETS, sagan_digits_run

REPO = Path(__file__).resolve().parents[2]
STEPS = 40


def train_args(steps: int) -> list[str]:
    """The tiny sagan-digits run: a checkpoint every 4 steps, samples only every 20 (each grid costs time)."""
    return ["train", "--preset", "sagan-digits", "--steps", str(steps), "--checkpoint-every", "4", "--device", "cpu",
            "--no-progress", *TINY_SETS, "--set", "training.sample_every=20", "--set", "training.tensorboard=false"]

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")


# ------------------------------------------------------------------------------------------------ the rule


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("gankit: error")]


@pytest.mark.slow
def test_after_a_restart_the_same_command_resumes_its_run_and_refuses_another_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")  # one torchrun job: its first attempt marks the run
    run = tmp_path / "run"
    assert main([*train_args(3), "--out", str(run)]) == 0
    assert (run / ".gankit.job").read_text().startswith("job-1:")
    capsys.readouterr()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    # steps is one of the keys a resume may change: the command's 6 is the resume's change, recorded as such
    assert main([*train_args(6), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"gankit: torchrun restart 1: resumed {run} at step 3 of 6 from its last checkpoint" in err
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 6
    history = json.loads((run / "resume_history.json").read_text())
    assert [(h["step"], h["key"], h["old"], h["new"]) for h in history] == [(3, "training.steps", 3, 6)]
    # a restart after the last checkpoint (a process died on its way out) has nothing left to do: status 0
    assert main([*train_args(6), "--out", str(run)]) == 0
    assert f"{run} is already at step 6 of 6; nothing left to train" in capsys.readouterr().err
    # another config: one line naming the first key that differs, nothing written
    before = snapshot(run)
    assert main([*train_args(6), "--out", str(run), "--set", "model.z_dim=32", "--seed", "5"]) == 2
    [line] = errors(capsys)
    assert f"--out {run} holds a run whose config differs from this command's at model.z_dim (16 in its " \
           "checkpoints/last.pt, 32 here)" in line
    assert snapshot(run) == before
    # --overwrite asked to start over: so it does
    assert main([*train_args(2), "--out", str(run), "--set", "model.z_dim=32", "--overwrite"]) == 0
    assert load_checkpoint(run / "checkpoints/last.pt")["config"]["model"]["z_dim"] == 32
    # a restart of another torchrun job never continues this run: it is refused as a first attempt refuses it
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-2")
    before = snapshot(run)
    assert main([*train_args(4), "--out", str(run), "--set", "model.z_dim=32"]) == 2
    assert "already holds a run" in errors(capsys)[0]
    assert snapshot(run) == before
    # the first attempt (no restart) refuses an existing run as always
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    assert main([*train_args(4), "--out", str(run), "--set", "model.z_dim=32"]) == 2
    assert "already holds a run" in errors(capsys)[0]


def test_the_data_section_is_compared_as_the_run_recorded_it(tmp_path, monkeypatch, capsys):
    """``--data pets`` (relative, format detected) is recorded as ``folder`` at the absolute path: the same."""
    for k, name in enumerate(["zebra", "ant", "moose"]):
        for i in range(3):
            save_image(tmp_path / "pets" / name / f"{i}.png", noise(20, 18, seed=10 * k + i))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    args = ["--data", "pets", "--set", "model.num_classes=3", "--set", "model.channels=3", "--set",
            "data.num_workers=0", "--out", "run"]
    assert main([*train_args(2), *args]) == 0
    recorded = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["config"]["data"]
    assert (recorded["dataset"], recorded["path"]) == ("folder", str((tmp_path / "pets").resolve()))
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert main([*train_args(3), *args]) == 0
    assert "gankit: torchrun restart 2: resumed run at step 2 of 3" in capsys.readouterr().err


def test_plan_restart_without_a_checkpoint(tmp_path):
    cfg = sagan_digits_run(steps=4)
    assert not plan_restart(tmp_path / "none", cfg).resume and not plan_restart(tmp_path / "none", cfg).overwrite
    setup = tmp_path / "setup"  # killed after its setup, before its config.yaml: started over
    for folder in ("checkpoints", "samples"):
        (setup / folder).mkdir(parents=True)
    (setup / "classes.json").write_text("{}")
    assert plan_restart(setup, cfg).overwrite and not plan_restart(setup, cfg).resume
    (setup / "samples/step_0000002.png").write_bytes(b"")  # more than a setup writes: refused as any run folder
    assert not plan_restart(setup, cfg).overwrite
    (setup / "config.yaml").write_text(cfg.to_yaml())  # killed before its first checkpoint: started over
    assert plan_restart(setup, cfg).overwrite and not plan_restart(setup, cfg).resume
    with pytest.raises(UserError, match=r"at training\.seed \(0 in its config\.yaml, 3 here\)"):
        plan_restart(setup, sagan_digits_run(steps=4, seed=3))
    every = sagan_digits_run(steps=9, g_lr=1e-5, log_every=7, device="cpu")  # keys a resume may change: no refusal
    assert set(RESUMABLE) >= {"training.steps", "training.g_lr", "training.log_every"}
    assert plan_restart(setup, every).overwrite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
            *args]


def workers(agent: int) -> dict[int, int]:
    """``{rank: pid}`` of the processes torchrun (pid ``agent``) runs now."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid != agent:
                continue
            env = dict(e.split("=", 1) for e in (stat.parent / "environ").read_text().split("\0") if "=" in e)
        except (OSError, IndexError, ValueError):  # ended while being read
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(stat.parent.name)
    return found


def state_digest(modules: dict[str, dict[str, torch.Tensor]]) -> str:
    """One sha256 over the state dicts of G, D and G_ema (names and bytes)."""
    h = hashlib.sha256()
    for net in ("G", "D", "G_ema"):
        for name, t in sorted(modules[net].items()):
            h.update(f"{net}.{name}".encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ torchrun


@linux_only
@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_run_continues_from_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    out, err = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    cmd = torchrun("--nproc-per-node=2", "--max-restarts=2", "-m", "gankit", *train_args(STEPS), "--out", str(run),
                   port=free_port())
    agent = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints/last.pt").exists():  # the first checkpoint: step 4
            assert agent.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()[-3000:]
            time.sleep(0.02)
        killed = workers(agent.pid)
        assert set(killed) == {0, 1}
        os.kill(killed[0], signal.SIGKILL)  # the lock holder and writer, mid-run
        code = agent.wait(timeout=150)
    finally:
        if agent.poll() is None:
            agent.kill()
        out.close()
        err.close()
    log = (tmp_path / "stderr.txt").read_text() + (tmp_path / "stdout.txt").read_text()
    assert code == 0, log[-3000:]
    resumed = [line for line in log.splitlines() if "torchrun restart 1: resumed" in line]
    assert len(resumed) == 1, log[-3000:]
    step = int(resumed[0].split(" at step ")[1].split()[0])
    assert 4 <= step < STEPS and f"done at step {STEPS}" in log
    state = load_checkpoint(run / "checkpoints/last.pt")
    assert state["step"] == STEPS and state["world_size"] == 2
    for net in ("G", "D", "G_ema"):
        floats = [t for t in state[net].values() if t.is_floating_point()]
        assert floats and all(torch.isfinite(t).all() for t in floats), net
    rows = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == sorted(set(rows)) and rows[-1] == STEPS  # the killed attempt's rows past the checkpoint went
    assert not (run / "resume_history.json").exists()  # same config, same processes: nothing changed
    RunLock(run).acquire().release()  # no process of either attempt holds the folder


WRAPPER = textwrap.dedent(
    """
    # `gankit train` as the command line runs it; each rank writes a digest of its G, D and G_ema at the end
    import json, os, sys
    from gankit.apps import train as app
    from gankit.cli import main
    from tests.training.test_elastic import state_digest

    fit = app.fit

    def fit_and_digest(trainer, say):
        code = fit(trainer, say)
        gan = trainer.gan
        digest = state_digest({"G": gan.G.state_dict(), "D": gan.D.state_dict(), "G_ema": gan.ema.model.state_dict()})
        with open(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.json"), "w") as f:
            json.dump({"digest": digest, "step": trainer.step, "world": trainer.dist.world_size}, f)
        return code

    app.fit = fit_and_digest
    sys.exit(main(sys.argv[2:]))
    """
)


@linux_only
@pytest.mark.slow
def test_two_nodes_on_one_machine_end_with_identical_weights_on_every_rank(tmp_path):
    script = tmp_path / "digest_train.py"
    script.write_text(WRAPPER)
    run, port, rdzv_id = tmp_path / "run", free_port(), f"gankit-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    nodes = []
    for node in (0, 1):
        cmd = torchrun("--nnodes=2", f"--node-rank={node}", "--nproc-per-node=1", f"--rdzv-id={rdzv_id}",
                       str(script), str(tmp_path), *train_args(6), "--out", str(run),
                       port=port)
        nodes.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = []
    try:
        for p in nodes:
            logs.append(p.communicate(timeout=150)[0])
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [6, 6] and [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    state = load_checkpoint(run / "checkpoints/last.pt")  # rank 0 wrote it: the weights every rank holds
    assert state["step"] == 6 and state["world_size"] == 2
    assert state_digest(state) == ranks[0]["digest"]
