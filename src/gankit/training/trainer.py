"""The training loop for every family: :class:`Trainer` runs :class:`~gankit.training.step.GANStep` to
``training.steps`` and schedules what a run writes.

Read top-down: setting up (seed, data, the step, the run writer), the state of a checkpoint, the loop (:meth:`fit`:
a step, the NaN guard, the outputs due at this step), then the outputs. Rank 0 alone logs, samples, evaluates and
writes checkpoints; every rank steps. Continuing a run from its checkpoint is :mod:`gankit.training.resume`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from gankit import interrupts, log
from gankit.config import RunConfig
from gankit.data import DataBatches, DataSource, open_training_data
from gankit.device import select_device
from gankit.errors import UserError
from gankit.io import RunDir, atomic_write, load_checkpoint
from gankit.training import distributed
from gankit.training.checkpoints import RunWriter
from gankit.training.evaluation import TrainingEvaluation
from gankit.training.logger import LogWindow, MetricsLogger
from gankit.training.run import rng_state, seed_everything, set_rng_state
from gankit.training.step import GANStep


class TrainingDiverged(UserError):
    """Too many non-finite steps even after rolling back: a one-line message says what to change."""


class TrainingInterrupted(Exception):
    """Raised after a Ctrl-C / SIGTERM checkpoint was saved; the message says how to resume, ``status`` is the
    exit status (130 Ctrl-C, 143 SIGTERM)."""

    def __init__(self, message: str, status: int = interrupts.INTERRUPTED) -> None:
        super().__init__(message)
        self.status = status


class Trainer:
    """Trains ``cfg`` into the run folder ``run_dir`` (laid out by :class:`~gankit.io.RunDir`): sample grids of the
    EMA generator on a fixed latent batch, ``metrics.csv`` (+ TensorBoard), checkpoints, ``loss.png`` and
    ``generator.safetensors`` (the EMA generator). ``trainer.gan`` is the step: G, D, the EMA, the optimizers.
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        progress: bool | None = None,
        batches: DataBatches | None = None,
        source: DataSource | None = None,
        state: dict[str, Any] | None = None,
        init: tuple[dict[str, Any], dict[str, Any] | None, str] | None = None,
    ) -> None:
        """``batches`` replaces the configured dataset (benchmarks, tests); by default it is opened from
        ``cfg.data`` (``source``: opened already, by a caller that checks the data before it makes the run
        folder). ``state``: a checkpoint to continue from. ``init``: ``(G state, D state or None, source)`` to start
        a new run from (:meth:`GANStep.init_weights`)."""
        self.cfg = cfg
        self.run = RunDir(run_dir)
        t = cfg.training
        self.dist = distributed.current()  # the rank, world size and local rank: read here once
        self.device = select_device(t.device)
        if self.dist.enabled and self.device.type == "cuda":  # one GPU per process
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.progress = progress if self.dist.is_main else False
        seed_everything(t.seed)  # same seed on every rank: identical initial weights (rank 0's are broadcast too)
        self.class_names: list[str] | None = None  # the data's class names, for the sample grids' rows
        self.batches = batches if batches is not None else self._open_data(source)
        self.gan = GANStep(self.cfg, self.batches, self.device, self.dist)
        if init is not None:
            self.gan.init_weights(*init)
        self.bad_streak = 0  # consecutive steps skipped by the NaN guard
        self.rollbacks = 0
        self.writer = RunWriter(self.run, self.cfg, self.gan.G, self.device, self.class_names)
        self._evaluation: TrainingEvaluation | None = None  # built when training starts (training.eval_every)
        if state is not None:
            self.load_state_dict(state)

    def _open_data(self, source: DataSource | None) -> DataBatches:
        """Open ``cfg.data`` for the model, sharded for this rank. The detected dataset kind and the absolute path
        replace ``auto`` / a relative path in ``self.cfg`` (``config.yaml`` and ``--resume`` see them); class
        names go to ``classes.json`` when labels are used."""
        if source is None:
            source = open_training_data(self.cfg.data, self.cfg.model, progress=self.progress)
        if source.path is not None:
            data = dataclasses.replace(self.cfg.data, dataset=source.kind, path=str(Path(source.path).resolve()))
            self.cfg = dataclasses.replace(self.cfg, data=data)
        conditional = bool(self.cfg.model.num_classes)
        if conditional and source.classes is not None:
            self.class_names = list(source.classes)
        if conditional and source.classes is not None and self.dist.is_main:
            classes = {"num_classes": source.num_classes, "classes": source.classes, "dataset": source.kind,
                       "path": source.path}
            atomic_write(self.run.classes, json.dumps(classes, indent=1) + "\n")
        t = self.cfg.training
        return source.batches(batch_size=t.batch_size, seed=t.seed, device=self.device, rank=self.dist.rank,
                              world_size=self.dist.world_size, with_labels=conditional)

    @property
    def run_dir(self) -> Path:
        return self.run.root

    @property
    def step(self) -> int:
        return self.gan.step

    # ------------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint: the config, the step's state, the data position, the random state and the guard."""
        return {
            "config": self.cfg.to_dict(),
            **self.gan.state_dict(),
            "data": self.batches.state_dict(),
            "rng": rng_state(),
            "guard": {"rollbacks": self.rollbacks, "lr_scale": self.gan.lr_scale},
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gan.load_state_dict(state)
        old_world = int(state.get("world_size", 1))
        self.batches.load_state_dict(distributed.rescale_data_position(state["data"], old_world, self.dist.world_size))
        set_rng_state(state["rng"])
        t = self.cfg.training
        default_seen = self.step * t.batch_size * t.n_critic * int(state.get("world_size", 1))  # older checkpoints
        self.gan.images_seen = int(state.get("images_seen", default_seen))
        guard = state.get("guard", {})
        self.rollbacks, self.gan.lr_scale = int(guard.get("rollbacks", 0)), float(guard.get("lr_scale", 1.0))
        self.gan.set_lr()

    # ------------------------------------------------------------------------------------------- the loop

    def fit(self) -> None:
        """Train to ``training.steps``; Ctrl-C / SIGTERM save a checkpoint and raise :class:`TrainingInterrupted`."""
        t = self.cfg.training
        main = self.dist.is_main  # rank 0 alone logs, samples, evaluates and writes checkpoints
        if main and t.eval_every and self._evaluation is None:
            self._evaluation = TrainingEvaluation(self.cfg, self.run, self.device)
        logger = self._open_log() if main else None
        if self.step == 0 and main:
            atomic_write(self.run.config, self.cfg.to_yaml())
        bar = log.progress(t.steps, desc="training", unit="step", initial=self.step, enabled=self.progress)
        window = LogWindow(self.gan.images_seen)
        try:
            while self.step < t.steps:
                stats = self.gan.train_step()
                if self._guard(bool(stats["skipped"])):  # rolled back: restart the log window
                    window.restart(self.gan.images_seen)
                    bar.n = self.step
                    bar.refresh()
                    continue
                window.add(stats)
                done = self.step == t.steps
                if main:
                    self._report(logger, bar, window, done)
                if self.step % t.checkpoint_every == 0 or done:
                    if main:
                        self._save()
                    distributed.barrier()  # a rollback on any rank must find the same last.pt
                bar.update(1)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (interrupts.Terminated)
            bar.close()
            if main:
                self._save()
            raise TrainingInterrupted(
                f"{interrupts.describe(exc).split(';')[0]} at step {self.step}; checkpoint saved. "
                f"Continue with: gankit train --resume {self.run.root}",
                interrupts.exit_status(exc),
            ) from None
        finally:
            bar.close()
            if logger is not None:
                logger.close()

    def _guard(self, skipped: bool) -> bool:
        """Count non-finite steps; after ``nan_patience`` in a row, roll back to the last checkpoint with lower
        learning rates (True: rolled back), and after ``max_rollbacks`` rollbacks stop."""
        t = self.cfg.training
        self.bad_streak = self.bad_streak + 1 if skipped else 0
        if self.bad_streak < t.nan_patience:
            return False
        if self.rollbacks >= t.max_rollbacks or not self.run.last_checkpoint.is_file():
            raise TrainingDiverged(
                f"training diverged: {self.bad_streak} consecutive steps with NaN/inf losses or gradients at step "
                f"{self.step} after {self.rollbacks} rollback(s); lower training.g_lr / training.d_lr "
                f"(or try training.loss=hinge) and restart"
            )
        state = load_checkpoint(self.run.last_checkpoint, map_location=self.device)
        rollbacks, scale = self.rollbacks + 1, self.gan.lr_scale * t.nan_lr_factor
        self.load_state_dict(state)
        self.rollbacks, self.gan.lr_scale, self.bad_streak = rollbacks, scale, 0
        self.gan.set_lr()
        log.info(
            f"{t.nan_patience} non-finite steps in a row: rolled back to step {self.step} and scaled the "
            f"learning rates by {self.gan.lr_scale:g} (rollback {self.rollbacks} of at most {t.max_rollbacks})"
        )
        return True

    def _report(self, logger: MetricsLogger, bar, window: LogWindow, done: bool) -> None:
        """Rank 0 after a step: evaluate, write a log row, save the sample grid, as their frequencies say."""
        t = self.cfg.training
        evals: dict[str, float] = {}
        if self._evaluation is not None and (self.step % t.eval_every == 0 or done):
            started = time.perf_counter()
            with torch.random.fork_rng(devices=[]):  # evaluating never changes the training's random stream
                evals = self._evaluation(self.gan.ema.model, self.step, self.state_dict)
            window.pause(time.perf_counter() - started)  # img/s counts training time only
        if self.step % t.log_every == 0 or done or evals:
            values = {**window.means(self.gan.images_seen), **self.gan.log_values(), **evals}
            logger.log(self.step, values)
            shown = dict(d=f"{values['d_loss']:.3f}", g=f"{values['g_loss']:.3f}", img_s=f"{values['img_per_s']:.0f}")
            if self.gan.adaptive:
                shown["p"] = f"{self.gan.augment.p:.3f}"
            bar.set_postfix(shown, refresh=False)
            window.restart(self.gan.images_seen)
        if self.step % t.sample_every == 0 or done:
            self.save_samples()

    # ------------------------------------------------------------------------------------------- outputs

    def _open_log(self) -> MetricsLogger:
        columns = self.gan.log_columns(extra=self._evaluation.columns() if self._evaluation else [])
        tensorboard = self.run.tensorboard if self.cfg.training.tensorboard else None
        return MetricsLogger(self.run.metrics, columns, tensorboard_dir=tensorboard,
                             resume_step=self.step if self.step else None)

    def save_samples(self) -> Path:
        """The EMA generator's sample grid of this step."""
        return self.writer.save_samples(self.gan.ema.model, self.step)

    def save_checkpoint(self) -> Path | None:
        """Write ``step_XXXXXXX.pt``, point ``last.pt`` at it and write the export; refuses (returns None) if any
        weight is NaN/inf."""
        if not self.gan.weights_finite():
            log.warn(f"step {self.step}: weights are not finite; checkpoint NOT written (last.pt kept)")
            return None
        return self.writer.save_checkpoint(self.state_dict(), self.step, self.gan.ema.model)

    def _save(self) -> None:
        """A checkpoint (with the export) and the loss plot, as the loop writes them. A failed write stops the run
        with one line that says what the run folder holds: the last checkpoint to resume from, or none yet."""
        try:
            self.save_checkpoint()
            self.writer.plot_losses()
        except UserError as exc:
            last = self.run.last_checkpoint
            if not last.is_file():
                raise UserError(f"{exc}; the run stopped at step {self.step} before its first checkpoint, so there "
                                f"is nothing to resume: fix that and start it again (--out {self.run.root} "
                                "--overwrite)") from None
            step = load_checkpoint(last)["step"]
            raise UserError(f"{exc}; the run stopped at step {self.step}: fix that and continue from its last "
                            f"checkpoint (step {step}) with gankit train --resume {self.run.root}") from None


__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted"]
