"""Crash safety of training: the NaN guard, checkpoints never written with non-finite weights or half written,
and SIGTERM / SIGKILL mid-run."""

import errno
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gankit.cli import main
from gankit.errors import UserError
from gankit.io import load_checkpoint
from gankit.training import Trainer, prepare_run_dir
from gankit.training.trainer import TrainingDiverged
from tests.tiny import TINY_SETS, trainer_run

REPO = Path(__file__).resolve().parents[2]


class NaNLoss:
    """Wraps the trainer's loss and makes the D loss NaN on the given (1-based) steps."""

    def __init__(self, trainer: Trainer, bad_steps) -> None:
        self.inner, self.trainer, self.bad = trainer.gan.loss, trainer, bad_steps

    @property
    def gp(self) -> float:
        return self.inner.gp

    @property
    def lecam(self):
        return self.inner.lecam

    def discriminator_loss(self, *args, **kwargs):
        loss, stats = self.inner.discriminator_loss(*args, **kwargs)
        if self.trainer.step + 1 in self.bad:
            loss = loss * float("nan")
        return loss, stats

    def generator_loss(self, *args, **kwargs):
        return self.inner.generator_loss(*args, **kwargs)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_nan_step_is_skipped_and_counted(tmp_path):
    trainer = Trainer(trainer_run(steps=4, nan_patience=3), prepare_run_dir(tmp_path / "r"), progress=False)
    trainer.gan.loss = NaNLoss(trainer, {2})
    trainer.gan.train_step()
    before = _params(trainer.gan.D)
    stats = trainer.gan.train_step()  # step 2: NaN D loss
    assert stats["skipped"].item() == 1
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.gan.D.parameters(), strict=True))
    stats = trainer.gan.train_step()
    assert stats["skipped"].item() == 0
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.gan.D.parameters(), strict=True))


def test_nan_streak_rolls_back_with_lower_lr_then_finishes(tmp_path):
    run = prepare_run_dir(tmp_path / "r")
    cfg = trainer_run(steps=10, nan_patience=3, checkpoint_every=3, log_every=1)
    trainer = Trainer(cfg, run, progress=False)
    trainer.gan.loss = NaNLoss(trainer, {5, 6, 7})  # three bad steps in a row after the step-3 checkpoint
    trainer.fit()
    assert trainer.rollbacks == 1 and trainer.gan.lr_scale == 0.5
    assert trainer.gan.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.training.g_lr * 0.5)
    state = load_checkpoint(run / "checkpoints/last.pt")
    assert state["step"] == 10 and state["guard"]["lr_scale"] == 0.5
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    skipped = [float(r.split(",")[header.index("skipped")]) for r in rows[1:]]
    assert sum(skipped) >= 2  # the bad steps before the rollback are in the log


def test_persistent_nan_stops_with_a_clear_message(tmp_path):
    run = prepare_run_dir(tmp_path / "r")
    trainer = Trainer(trainer_run(steps=40, nan_patience=2, checkpoint_every=2, max_rollbacks=2), run,
                      progress=False)
    trainer.gan.loss = NaNLoss(trainer, set(range(3, 100)))
    with pytest.raises(TrainingDiverged, match="training diverged.*after 2 rollback"):
        trainer.fit()
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 2


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    run = prepare_run_dir(tmp_path / "r")
    trainer = Trainer(trainer_run(steps=2), run, progress=False)
    trainer.gan.train_step()
    assert trainer.save_checkpoint() is not None
    before = (run / "checkpoints/last.pt").read_bytes()
    with torch.no_grad():
        next(trainer.gan.G.parameters()).fill_(float("inf"))
    trainer.gan.step += 1
    assert trainer.save_checkpoint() is None
    assert (run / "checkpoints/last.pt").read_bytes() == before
    assert not (run / "checkpoints/step_0000002.pt").exists()


def test_no_space_left_during_training_checkpoint(monkeypatch, tmp_path):
    import gankit.io as ckpt

    run = prepare_run_dir(tmp_path / "r")
    trainer = Trainer(trainer_run(steps=4, checkpoint_every=2), run, progress=False)
    trainer.gan.train_step()
    trainer.save_checkpoint()
    before = (run / "checkpoints/last.pt").read_bytes()

    def no_space(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", no_space)
    trainer.gan.train_step()
    with pytest.raises(UserError, match="no space left"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert (run / "checkpoints/last.pt").read_bytes() == before
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 1


def _train_cmd(out: Path, steps: int, every: int) -> list[str]:
    return [sys.executable, "-m", "gankit", "train", "--preset", "sagan-digits", "--out", str(out), "--steps",
            str(steps), "--checkpoint-every", str(every), "--device", "cpu", "--no-progress", *TINY_SETS,
            "--set", "training.tensorboard=false"]


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(out, 100000, 100000), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    _wait_for(out / "samples" / "step_0000002.png")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143  # 128 + SIGTERM (Ctrl-C gives 130)
    assert f"gankit train --resume {out}" in err and "terminated (SIGTERM) at step" in err
    step = load_checkpoint(out / "checkpoints/last.pt")["step"]
    assert step >= 2
    assert main(["train", "--resume", str(out), "--steps", str(step + 2), "--no-progress"]) == 0
    assert load_checkpoint(out / "checkpoints/last.pt")["step"] == step + 2


SLOW_FS_DRIVER = textwrap.dedent(
    """
    import os, sys, time
    import gankit.io as ckpt
    real_fsync = os.fsync
    def slow_fsync(fd):  # a slow disk: every checkpoint write spends 0.3 s between data and rename
        time.sleep(0.3)
        real_fsync(fd)
    ckpt.os.fsync = slow_fsync
    from gankit.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_loadable_last_checkpoint(tmp_path):
    driver = tmp_path / "slow_fs_driver.py"
    driver.write_text(SLOW_FS_DRIVER)
    rng = random.Random(0)
    out = tmp_path / "run"
    args = _train_cmd(out, 100000, 1)[3:]  # checkpoint every step: most of the time is spent writing
    for attempt in range(3):
        cmd = [sys.executable, str(driver), *(args if attempt == 0 else ["train", "--resume", str(out),
                                                                          "--no-progress"])]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        _wait_for(out / "checkpoints" / "last.pt")
        time.sleep(rng.uniform(0.5, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        state = load_checkpoint(out / "checkpoints/last.pt")  # complete, never half-written
        assert state["step"] >= 1
        leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        # a temporary file may be left by the kill, but last.pt never points at one
        assert all(name.startswith(".") for name in leftovers)
    final = load_checkpoint(out / "checkpoints/last.pt")["step"]
    assert main(["train", "--resume", str(out), "--steps", str(final + 1), "--no-progress"]) == 0
    assert load_checkpoint(out / "checkpoints/last.pt")["step"] == final + 1
