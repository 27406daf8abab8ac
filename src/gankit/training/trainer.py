"""The one training loop for every family: it sees only the generator/discriminator interface.

One iteration is the GAN algorithm (Goodfellow et al. 2014, with SAGAN's TTUR and an EMA of G):

    repeat n_critic times:  x ~ data, z ~ N(0, I);  D <- D - lr_D * grad L_D(D(x), D(G(z)))   (fakes detached)
    z ~ N(0, I);            G <- G - lr_G * grad L_G(D(G(z)))                                 (D frozen)
    G_ema <- lerp(G_ema, G, 1 - decay)

Around it: a progressively growing model is moved through its schedule by a :class:`GrowthController`, a
NaN/inf guard skips bad updates and rolls back, and rank 0 logs, samples, evaluates and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from gankit import log
from gankit.augment import LeCam, build_augment
from gankit.config import RunConfig
from gankit.data import DataBatches, DataSource, open_training_data
from gankit.device import autocast_dtype, select_device
from gankit.errors import UserError
from gankit.images import save_grid
from gankit.io import RunDir, atomic_write, load_checkpoint, save_checkpoint
from gankit.losses import AdversarialLoss
from gankit.models.registry import build_discriminator, build_generator
from gankit.training import distributed
from gankit.training.ema import EMA
from gankit.training.growth import LOG_COLUMNS as GROWTH_COLUMNS
from gankit.training.growth import GrowthController
from gankit.training.logger import LogWindow, MetricsLogger, attention_gammas, log_columns, plot_losses
from gankit.training.run import rng_state, seed_everything, set_rng_state
from gankit.training.schedules import lr_decay_factor

ADA_COLUMNS = ["ada_p", "ada_r_t"]
GRID_COLUMNS = 10
MAX_GRID_ROWS = 16


class TrainingDiverged(UserError):
    """Too many non-finite steps even after rolling back: a one-line message says what to change."""


class TrainingInterrupted(Exception):
    """Raised after a Ctrl-C / SIGTERM checkpoint was saved; the message says how to resume."""


class Trainer:
    """Alternates ``n_critic`` D steps (on detached fakes) with one G step; keeps an EMA of G.

    Writes the run folder laid out by :class:`~gankit.io.RunDir`: sample grids of the EMA generator on a fixed
    latent batch (one row per class when conditional), ``metrics.csv`` (+ TensorBoard), checkpoints,
    ``loss.png`` and ``generator.safetensors`` (the EMA generator).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        progress: bool | None = None,
        batches: DataBatches | None = None,
        source: DataSource | None = None,
        _resume: dict | None = None,
    ) -> None:
        """``batches`` replaces the configured dataset (benchmarks, tests); by default it is opened from
        ``cfg.data``. ``source``: ``cfg.data`` opened already (by a caller that checks the data before it makes
        the run folder)."""
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

        self.batches = batches if batches is not None else self._open_data(source)
        self.G = build_generator(cfg.model).to(self.device).train()
        self.D = build_discriminator(cfg.model).to(self.device).train()
        self._speedups()
        self.ema = EMA(self.G, t.ema_decay, t.ema_warmup)
        lecam = LeCam(t.lecam_decay, t.lecam_start) if t.lecam_weight > 0 else None
        self.loss = AdversarialLoss(t.loss, t.gp_weight, t.drift, t.lecam_weight, lecam)
        # what D sees is augmented (reals and fakes, in both steps); ADA's p is part of the training state
        self.augment = build_augment(t.augment, policy=t.augment_policy, channels=cfg.model.channels,
                                     ada_target=t.ada_target, ada_interval=t.ada_interval, ada_kimg=t.ada_kimg,
                                     batch_size=t.batch_size * t.n_critic)
        self.step = 0
        self.images_seen = 0  # real images D has consumed, all ranks together (per-scale batch sizes included)
        self.lr_scale = 1.0  # lowered by each rollback of the NaN guard
        self.bad_streak = 0  # consecutive steps skipped by the NaN guard
        self.rollbacks = 0
        self.build_optimizers()
        self.growth = (
            GrowthController.for_model(
                cfg.model, t.batch_size, self.G, self.D, self.ema.model, self.batches, self.build_optimizers
            )
            if getattr(self.G, "grows_progressively", False)
            else None
        )
        # One generator for everything random in a step (latents, fake labels, GP mixing): saved in checkpoints.
        # Per-rank seeds: each process draws its own latents.
        self.noise = torch.Generator(device=self.device).manual_seed(t.seed + 1 + 1_000_003 * self.dist.rank)
        self._evaluation = None  # built when training starts (training.eval_every)
        self._fixed_batch()
        if _resume is not None:
            self.load_state_dict(_resume)

    @property
    def run_dir(self) -> Path:
        return self.run.root

    # ------------------------------------------------------------------------------------------- setup

    def _speedups(self) -> None:
        """Distributed sync, mixed precision, channels_last, sync BN and torch.compile, as configured.

        Mixed precision (:func:`~gankit.device.autocast_dtype`) covers G's and D's forward passes only. What stays
        float32, on purpose: the weights, their EMA and the optimizer state (bf16 would round small Adam updates
        away); the losses (logits are cast to float32 first); WGAN-GP's penalty (its double backward runs outside
        autocast); spectral norm's power iteration (matrix-vector products, which autocast leaves in float32); and
        batch-norm statistics (the running buffers are float32). SyncBatchNorm is CUDA-only.
        """
        t = self.cfg.training
        cuda = self.device.type == "cuda"
        if self.dist.enabled and cuda and t.sync_bn:
            self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        distributed.broadcast_state(self.G)
        distributed.broadcast_state(self.D)
        if t.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.amp_dtype = autocast_dtype(self.device, t.amp)
        if cuda and self.amp_dtype is not None:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        fp16 = self.amp_dtype == torch.float16
        # fp16 needs loss scaling against underflow; bf16 has float32's range and does not
        self.scalers = {"g": torch.amp.GradScaler("cuda"), "d": torch.amp.GradScaler("cuda")} if fp16 else None
        if t.compile:
            self.G.compile()
            self.D.compile()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _open_data(self, source: DataSource | None = None) -> DataBatches:
        """Open ``cfg.data`` for the model, sharded for this rank. The detected dataset kind and the absolute path
        replace ``auto`` / a relative path in ``self.cfg`` (``config.yaml`` and ``--resume`` see them); class
        names go to ``classes.json`` when labels are used."""
        if source is None:
            source = open_training_data(self.cfg.data, self.cfg.model, progress=self.progress)
        d = self.cfg.data
        if source.path is not None:
            data = dataclasses.replace(d, dataset=source.kind, path=str(Path(source.path).resolve()))
            self.cfg = dataclasses.replace(self.cfg, data=data)
        conditional = bool(self.cfg.model.num_classes)  # type: ignore[attr-defined]
        if conditional and source.classes is not None and self.dist.is_main:
            classes = {"num_classes": source.num_classes, "classes": source.classes, "dataset": source.kind,
                       "path": source.path}
            atomic_write(self.run.classes, json.dumps(classes, indent=1) + "\n")
        t = self.cfg.training
        return source.batches(batch_size=t.batch_size, seed=t.seed, device=self.device, rank=self.dist.rank,
                              world_size=self.dist.world_size, with_labels=conditional)

    def build_optimizers(self) -> None:
        """Adam for G and D with the configured rates and betas (also after every change of a growing model's
        scale, as pytorch_GAN_zoo does), at the rates in force for the current step."""
        t = self.cfg.training
        # floats: YAML's [0, 0.99] gives an int beta, which Adam rejects
        betas_g, betas_d = tuple(map(float, t.g_betas)), tuple(map(float, t.d_betas))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.g_lr, betas=betas_g)  # type: ignore[arg-type]
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=betas_d)  # type: ignore[arg-type]
        self._set_lr()

    def _set_lr(self) -> None:
        t = self.cfg.training
        factor = self.lr_scale * lr_decay_factor(t.lr_decay, self.step, t.steps)
        for opt, base in ((self.opt_g, t.g_lr), (self.opt_d, t.d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def _fixed_batch(self) -> None:
        g = torch.Generator().manual_seed(self.cfg.training.seed + 2)
        if self.G.num_classes:
            rows = min(self.G.num_classes, MAX_GRID_ROWS)
            self.fixed_y = torch.arange(rows).repeat_interleave(GRID_COLUMNS).to(self.device)
            self.row_labels: list[str] | None = [str(c) for c in range(rows)]
            self.grid_cols = GRID_COLUMNS
        else:
            self.fixed_y = None
            self.row_labels = None
            self.grid_cols = 8
        n = len(self.fixed_y) if self.fixed_y is not None else 64
        self.fixed_z = self.G.sample_latents(n, generator=g)

    # ------------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.model.state_dict(),
            "ema_updates": self.ema.num_updates,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "data": self.batches.state_dict(),
            "rng": rng_state(),
            "noise_rng": self.noise.get_state(),
            "guard": {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale},
            "progress": self.growth.state_dict() if self.growth else None,
            "augment": self.augment.state_dict(),
            "lecam": self.loss.lecam.state_dict() if self.loss.lecam else None,
            "world_size": self.dist.world_size,
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()} if self.scalers else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.growth is not None:  # grow G, D, EMA to the saved scale first
            self.growth.load_state_dict(state.get("progress"))
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.ema.load_state_dict({"model": state["G_ema"], "num_updates": state["ema_updates"]})
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.batches.load_state_dict(self._rescale_data_position(state))
        if state.get("augment") is not None:  # (absent from checkpoints of gankit 0.1)
            self.augment.load_state_dict(state["augment"])
        if self.loss.lecam is not None and state.get("lecam") is not None:
            self.loss.lecam.load_state_dict(state["lecam"])
        if self.scalers and state.get("scalers"):
            for key, scaler in self.scalers.items():
                scaler.load_state_dict(state["scalers"][key])
        set_rng_state(state["rng"])
        self.noise.set_state(state["noise_rng"])
        self.step = int(state["step"])
        t = self.cfg.training
        default_seen = self.step * t.batch_size * t.n_critic * int(state.get("world_size", 1))  # older checkpoints
        self.images_seen = int(state.get("images_seen", default_seen))
        guard = state.get("guard", {})
        self.rollbacks, self.lr_scale = int(guard.get("rollbacks", 0)), float(guard.get("lr_scale", 1.0))
        self._set_lr()

    def _rescale_data_position(self, state: dict[str, Any]) -> dict[str, Any]:
        """The sampler index counts images of one rank's shard; resuming on another number of processes keeps
        the same point of the epoch (index x old world size images) and splits it over the new ranks."""
        data = state["data"]
        old = int(state.get("world_size", 1))
        sampler = data.get("sampler") if isinstance(data, dict) else None
        if old == self.dist.world_size or not isinstance(sampler, dict) or "index" not in sampler:
            return data
        index = int(sampler["index"]) * old // self.dist.world_size
        return {**data, "sampler": {**sampler, "index": index}}

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        steps: int | None = None,
        progress: bool | None = None,
        changes: dict[str, Any] | None = None,
        lock: Any = None,
    ) -> Trainer:
        """Continue the run in ``run_dir`` from ``checkpoints/last.pt``.

        ``changes`` (``{"training.g_lr": 5e-5}``) may set the keys of :data:`gankit.training.resume.RESUMABLE`
        (any other key is a one-line error); ``steps`` is ``training.steps``. Everything is checked before
        ``lock`` (a :class:`~gankit.training.lock.RunLock`, taken on rank 0 and left held for the caller) is
        acquired, and the lock before anything is written. Accepted changes go into ``config.yaml``, the config of
        later checkpoints and ``resume_history.json`` (with the step); temporaries of killed writes are removed.
        """
        from gankit.io import remove_stale_temporaries
        from gankit.training import resume as resuming

        run = RunDir(run_dir)
        wanted = dict(changes or {})
        if steps is not None:
            wanted["training.steps"] = steps
        plan = resuming.plan_resume(run, wanted)
        main = distributed.current().is_main
        if lock is not None and main:
            lock.acquire()
            if not plan.is_current(run):  # another process finished writing between the read and the lock
                plan = resuming.plan_resume(run, wanted)
        trainer = cls(plan.config, run.root, progress=progress, _resume=plan.state)
        if main:
            for folder in run.written_folders():  # left by a write that was killed midway
                remove_stale_temporaries(folder)
            changes = list(plan.changes)
            processes = int(plan.state.get("world_size", 1))
            if processes != trainer.dist.world_size:  # the data position was rescaled to the new shards
                changes.append(resuming.Change("processes", processes, trainer.dist.world_size))
            resuming.record_changes(run, plan.step, changes)
            atomic_write(run.config, trainer.cfg.to_yaml())
            if changes:
                log.info(f"changed on resume at step {plan.step}: {resuming.describe(changes)} "
                         f"(recorded in {run.resume_history.name})")
        return trainer

    # ------------------------------------------------------------------------------------------- the step

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, self.G.z_dim, device=self.device, generator=self.noise)
        y = None
        if self.G.num_classes:
            y = torch.randint(self.G.num_classes, (n,), device=self.device, generator=self.noise)
        return z, y

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        real, y = self.batches.next()
        if self.growth is not None:  # reals at the current scale, faded like G's output
            real = self.growth.real_images(real)
        if self.cfg.training.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return real, y

    @property
    def _adaptive(self) -> bool:
        """Whether the augmentation adapts to D (ADA): it then observes D's outputs on reals and logs p."""
        return self.augment.kind == "ada"

    def _observe_reals(self, real_logits: torch.Tensor) -> None:
        """ADA's statistic from every rank's reals, so that all ranks move p alike."""
        self.augment.observe(distributed.all_gather_cat(real_logits))

    def train_step(self) -> dict[str, torch.Tensor]:
        """``n_critic`` D steps then one G step and the EMA update. Returns detached scalar tensors;
        ``skipped`` is 1 when a non-finite loss or gradient made the guard skip an update."""
        t = self.cfg.training
        batch_size = self.growth.enter(self.step).batch_size if self.growth else t.batch_size
        if t.lr_decay != "constant":
            self._set_lr()
        self.images_seen += batch_size * t.n_critic * self.dist.world_size
        d_ok = True
        augment = self.augment
        for _ in range(t.n_critic):
            real, y_real = self._real_batch()
            z, y_fake = self._latents(batch_size)
            with torch.no_grad(), self._autocast():  # D's step needs no graph through G
                fake = self.G(z, y_fake)
            with self._autocast():
                d_loss, stats = self.loss.discriminator_loss(
                    self.D, augment(real, self.noise), augment(fake, self.noise), y_real, y_fake,
                    generator=self.noise, step=self.step, observe=self._observe_reals if self._adaptive else None,
                )
            d_ok &= self._apply(d_loss, self.opt_d, "d")

        z, y_fake = self._latents(batch_size)
        self.D.requires_grad_(False)  # G's step needs gradients w.r.t. the image only
        try:
            with self._autocast():  # the fakes are augmented too: gradients reach G through the augmentation
                g_loss = self.loss.generator_loss(self.D, augment(self.G(z, y_fake), self.noise), y_fake)
            g_ok = self._apply(g_loss, self.opt_g, "g")
        finally:
            self.D.requires_grad_(True)
        augment.step(batch_size * t.n_critic * self.dist.world_size)  # ADA adjusts p every ada_interval steps
        if self.dist.enabled:  # batch-norm statistics differ per rank: keep rank 0's everywhere
            distributed.broadcast_state(self.G, buffers_only=True)
            distributed.broadcast_state(self.D, buffers_only=True)
        if g_ok:
            self.ema.update(self.G)
        self.step += 1
        skipped = torch.tensor(0.0 if (d_ok and g_ok) else 1.0)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **stats, "skipped": skipped}

    def _apply(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, net: str) -> bool:
        """Backward, average the gradients over the ranks, and step, unless the loss or a gradient is NaN/inf:
        then the update is skipped (on every rank alike)."""
        scaler = self.scalers[net] if self.scalers else None
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if scaler:
            scaler.unscale_(optimizer)
        distributed.average_gradients(params)
        grads = [p.grad for p in params if p.grad is not None]
        finite = torch.isfinite(loss.detach())
        if grads and scaler is None:  # a non-finite entry makes its tensor's norm non-finite: one fused check
            finite = finite & torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        # (with fp16 loss scaling, inf gradients are routine: the scaler skips that step and lowers its scale)
        if distributed.all_ranks_true(bool(finite), self.device):
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            return True
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.update()
        return False

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
        rollbacks, scale = self.rollbacks + 1, self.lr_scale * t.nan_lr_factor
        self.load_state_dict(state)
        self.rollbacks, self.lr_scale, self.bad_streak = rollbacks, scale, 0
        self._set_lr()
        log.info(
            f"{t.nan_patience} non-finite steps in a row: rolled back to step {self.step} and scaled the "
            f"learning rates by {self.lr_scale:g} (rollback {self.rollbacks} of at most {t.max_rollbacks})"
        )
        return True

    # ------------------------------------------------------------------------------------------- outputs

    @torch.no_grad()
    def save_samples(self) -> Path:
        images = self.ema.model(self.fixed_z, self.fixed_y)
        return save_grid(images, self.run.sample_grid(self.step), self.grid_cols, row_labels=self.row_labels,
                         title=f"step {self.step}")

    def _weights_finite(self) -> bool:
        tensors = [*self.G.state_dict().values(), *self.D.state_dict().values(), *self.ema.model.state_dict().values()]
        floats = [x for x in tensors if x.is_floating_point()]
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(floats))).all())

    def save_checkpoint(self) -> Path | None:
        """Write ``step_XXXXXXX.pt`` and point ``last.pt`` at it; refuses (returns None) if any weight is NaN/inf."""
        if not self._weights_finite():
            log.warn(f"step {self.step}: weights are not finite; checkpoint NOT written (last.pt kept)")
            return None
        path = save_checkpoint(self.state_dict(), self.run.step_checkpoint(self.step))
        last = self.run.last_checkpoint
        link = last.with_name(".last.pt.link")
        link.unlink(missing_ok=True)
        try:  # last.pt is a hard link to the newest step file: one write, then an atomic rename
            link.hardlink_to(path)
            link.replace(last)
        except OSError:
            save_checkpoint(self.state_dict(), last)
        keep = self.cfg.training.keep_checkpoints
        steps = self.run.step_checkpoints()
        for old in steps[: max(0, len(steps) - keep)] if keep else steps:
            old.unlink(missing_ok=True)
        self.export()
        return last

    def _save(self) -> None:
        """A checkpoint (with the export) and the loss plot, as the loop writes them."""
        self.save_checkpoint()
        plot_losses(self.run.metrics, self.run.loss_plot, self.cfg.preset or self.cfg.model.family)

    def export(self) -> Path:
        return self.ema.model.save_export(self.run.generator)

    # ------------------------------------------------------------------------------------------- the loop

    def _open_log(self) -> MetricsLogger:
        t = self.cfg.training
        gammas = [*attention_gammas("G", self.G), *attention_gammas("D", self.D)]
        extra = [*(GROWTH_COLUMNS if self.growth else []), *(ADA_COLUMNS if self._adaptive else []),
                 *(self._evaluation.columns() if self._evaluation else [])]
        columns = log_columns(penalty=self.loss.gp > 0, gammas=gammas, extra=extra)
        return MetricsLogger(self.run.metrics, columns, tensorboard_dir=self.run.tensorboard if t.tensorboard else None,
                             resume_step=self.step if self.step else None)

    def _row(self, window: LogWindow, evals: dict[str, float]) -> dict[str, float]:
        values = window.means(self.images_seen)
        values.update(g_lr=self.opt_g.param_groups[0]["lr"], d_lr=self.opt_d.param_groups[0]["lr"])
        values.update(attention_gammas("G", self.G))
        values.update(attention_gammas("D", self.D))
        if self.growth is not None:
            values.update(self.growth.log_values())
        if self._adaptive:
            r_t = self.augment.r_t
            values.update(ada_p=self.augment.p, ada_r_t=math.nan if r_t is None else r_t)
        values.update(evals)
        return values

    def fit(self) -> None:
        """Train to ``training.steps``; Ctrl-C / SIGTERM save a checkpoint and raise :class:`TrainingInterrupted`."""
        t = self.cfg.training
        main = self.dist.is_main  # rank 0 alone logs, samples, evaluates and writes checkpoints
        if main and t.eval_every and self._evaluation is None:
            from gankit.training.evaluation import TrainingEvaluation

            self._evaluation = TrainingEvaluation(self.cfg, self.run, self.device)
        logger = self._open_log() if main else None
        if self.step == 0 and main:
            atomic_write(self.run.config, self.cfg.to_yaml())
        bar = log.progress(t.steps, initial=self.step, enabled=self.progress)
        window = LogWindow(self.images_seen)
        try:
            while self.step < t.steps:
                stats = self.train_step()
                if self._guard(bool(stats["skipped"])):  # rolled back: restart the log window
                    window.restart(self.images_seen)
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
        except KeyboardInterrupt:
            bar.close()
            if main:
                self._save()
            raise TrainingInterrupted(
                f"interrupted at step {self.step}; checkpoint saved. "
                f"Continue with: gankit train --resume {self.run.root}"
            ) from None
        finally:
            bar.close()
            if logger is not None:
                logger.close()

    def _report(self, logger: MetricsLogger, bar, window: LogWindow, done: bool) -> None:
        """Rank 0 after a step: evaluate, write a log row, save the sample grid, as their frequencies say."""
        t = self.cfg.training
        evals: dict[str, float] = {}
        if self._evaluation is not None and (self.step % t.eval_every == 0 or done):
            started = time.perf_counter()
            with torch.random.fork_rng(devices=[]):  # evaluating never changes the training's random stream
                evals = self._evaluation(self)
            window.pause(time.perf_counter() - started)  # img/s counts training time only
        if self.step % t.log_every == 0 or done or evals:
            values = self._row(window, evals)
            logger.log(self.step, values)
            shown = dict(d=f"{values['d_loss']:.3f}", g=f"{values['g_loss']:.3f}", img_s=f"{values['img_per_s']:.0f}")
            if self._adaptive:
                shown["p"] = f"{self.augment.p:.3f}"
            bar.set_postfix(shown, refresh=False)
            window.restart(self.images_seen)
        if self.step % t.sample_every == 0 or done:
            self.save_samples()

    def evaluate(self) -> dict[str, float]:
        """``eval/fid``, ``eval/kid``, ... of the EMA generator on ``training.eval_num`` samples; keeps
        ``checkpoints/best.pt`` (and ``best.json``) for the best FID. See :mod:`gankit.training.evaluation`."""
        if self._evaluation is None:
            from gankit.training.evaluation import TrainingEvaluation

            self._evaluation = TrainingEvaluation(self.cfg, self.run, self.device)
        return self._evaluation(self)
