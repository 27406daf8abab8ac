"""Two CPU processes with gloo through torchrun: identical weights every step, rank 0 writes, resume on 1."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.io import load_checkpoint
from tests.tiny import TINY_SETS, sagan_digits_run

REPO = Path(__file__).resolve().parents[2]

STEP_CHECK = textwrap.dedent(
    """
    import hashlib, json, sys, tempfile
    import torch
    import torch.distributed as dist
    from gankit.config import RunConfig, yaml_load
    from gankit.training import Trainer
    from gankit.training.distributed import cleanup, init_distributed

    out = sys.argv[1]
    info = init_distributed(torch.device("cpu"))

    def digest(module):
        h = hashlib.sha256()
        for t in [*module.parameters(), *module.buffers()]:
            h.update(t.detach().cpu().numpy().tobytes())
        return h.hexdigest()

    logs = {}
    for config in sys.argv[2:]:  # one launch for every loss: starting torchrun is most of the test's time
        with open(config) as f:
            cfg = RunConfig.from_dict(yaml_load(f.read()))
        loss = cfg.training.loss
        trainer = Trainer(cfg, tempfile.mkdtemp(), progress=False)
        log = logs[loss] = []
        for _ in range(3):
            trainer.gan.train_step()
            mine = [digest(trainer.gan.G), digest(trainer.gan.D), digest(trainer.gan.ema.model)]
            gathered = [None] * info.world_size
            dist.all_gather_object(gathered, mine)
            log.append(gathered)
    if info.rank == 0:
        json.dump({"logs": logs, "world": info.world_size}, open(out, "w"))
    cleanup()
    """
)


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.slow
def test_all_ranks_hold_identical_weights_after_every_step(tmp_path):
    """hinge and wgan-gp (its penalty's double backward is all-reduced too), three steps each."""
    script = tmp_path / "step_check.py"
    script.write_text(STEP_CHECK)
    configs = []
    for loss in ("hinge", "wgan-gp"):
        configs.append(tmp_path / f"{loss}.yaml")
        configs[-1].write_text(sagan_digits_run(batch_size=4, loss=loss).to_yaml())
    result = _torchrun(2, str(script), str(tmp_path / "digests.json"), *map(str, configs))
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "digests.json").read_text())
    assert data["world"] == 2 and sorted(data["logs"]) == ["hinge", "wgan-gp"]
    for log in data["logs"].values():
        assert len(log) == 3
        for step in log:
            assert step[0] == step[1]  # G, D and EMA digests of rank 0 == rank 1
        assert log[0][0] != log[1][0]  # and the weights did change between steps


@pytest.mark.slow
def test_torchrun_training_writes_once_and_resumes_on_one_process(tmp_path):
    out = tmp_path / "run"
    result = _torchrun(2, "-m", "gankit", "train", "--preset", "sagan-digits", "--out", str(out), "--steps", "4",
                       "--device", "cpu", "--no-progress", *TINY_SETS, "--set", "training.tensorboard=false")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4"]  # one writer: no duplicated rows
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    state = load_checkpoint(out / "checkpoints/last.pt")
    assert state["step"] == 4 and state["world_size"] == 2
    # resume with a single process
    assert main(["train", "--resume", str(out), "--steps", "6", "--no-progress"]) == 0
    assert load_checkpoint(out / "checkpoints/last.pt")["step"] == 6


def test_nproc_flag_launches_torchrun(monkeypatch, tmp_path):
    import gankit.training.distributed as distributed

    calls = []
    monkeypatch.setattr(distributed, "launch", lambda n, argv: calls.append((n, argv)) or 0)
    argv = ["train", "--preset", "sagan-digits", "--nproc", "2", "--out", str(tmp_path / "r"), "--steps", "3"]
    assert main(argv) == 0
    assert calls == [(2, ["train", "--preset", "sagan-digits", "--out", str(tmp_path / "r"), "--steps", "3"])]
    assert not (tmp_path / "r").exists()  # the launcher itself writes nothing
