"""The one training loop for every family: it sees only the generator/discriminator interface."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gankit.config import RunConfig
from gankit.data import DataBatches, open_dataset
from gankit.errors import UserError
from gankit.images import save_grid
from gankit.losses import AdversarialLoss
from gankit.models.registry import build_discriminator, build_generator
from gankit.nn import SelfAttention2d
from gankit.training import distributed
from gankit.training.checkpoint import load_checkpoint, save_checkpoint, save_generator
from gankit.training.ema import EMA
from gankit.training.logger import MetricsLogger, plot_losses
from gankit.training.run import rng_state, seed_everything, select_device, set_rng_state
from gankit.training.schedules import GrowthPhase, build_schedule, fade_real_images, lr_decay_factor

GRID_COLUMNS = 10
MAX_GRID_ROWS = 16


class TrainingDiverged(UserError):
    """Too many non-finite steps even after rolling back: a one-line message says what to change."""


class TrainingInterrupted(Exception):
    """Raised after a Ctrl-C / SIGTERM checkpoint was saved; the message says how to resume."""


def attention_gammas(prefix: str, model: torch.nn.Module) -> dict[str, float]:
    """``{"gamma/G/attention.16": value}`` for each self-attention block (users watch gamma grow)."""
    return {
        f"gamma/{prefix}/{name}": float(m.gamma.detach())
        for name, m in model.named_modules()
        if isinstance(m, SelfAttention2d)
    }


class Trainer:
    """Alternates ``n_critic`` D steps (on detached fakes) with one G step; keeps an EMA of G.

    Writes into ``run_dir``: ``samples/step_XXXXXXX.png`` (EMA G on a fixed latent batch, one row per class
    when conditional), ``metrics.csv`` (+ TensorBoard), ``checkpoints/last.pt`` and ``step_XXXXXXX.pt``,
    ``loss.png`` and ``generator.safetensors`` (the EMA generator).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        progress: bool | None = None,
        batches: DataBatches | None = None,
        _resume: dict | None = None,
    ) -> None:
        """``batches`` replaces the configured dataset (benchmarks, tests); by default it is loaded from
        ``cfg.data``."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        t = cfg.training
        self.dist = distributed.current()
        self.device = select_device(t.device)
        if self.dist.enabled and self.device.type == "cuda":  # one GPU per process
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.progress = progress if self.dist.is_main else False
        seed_everything(t.seed)  # same seed on every rank: identical initial weights (rank 0's are broadcast too)

        model_cfg = cfg.model
        self.batches = batches if batches is not None else self._load_batches()
        self.G = build_generator(model_cfg).to(self.device).train()
        self.D = build_discriminator(model_cfg).to(self.device).train()
        self._speedups()
        self.ema = EMA(self.G, t.ema_decay, t.ema_warmup)
        # floats: YAML's [0, 0.99] gives an int beta, which Adam rejects
        betas_g, betas_d = tuple(map(float, t.g_betas)), tuple(map(float, t.d_betas))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.g_lr, betas=betas_g)  # type: ignore[arg-type]
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=betas_d)  # type: ignore[arg-type]
        self.loss = AdversarialLoss(t.loss, t.gp_weight, t.drift)
        # Models that grow (Progressive GAN) follow their schedule: (scale, alpha, batch size) for every step.
        grows = getattr(self.G, "grows_progressively", False)
        self.schedule = build_schedule(model_cfg, t.batch_size) if grows else None
        # One generator for everything random in a step (latents, fake labels, GP mixing): saved in checkpoints.
        # Per-rank seeds: each process draws its own latents.
        self.noise = torch.Generator(device=self.device).manual_seed(t.seed + 1 + 1_000_003 * self.dist.rank)
        self.step = 0
        self.images_seen = 0  # real images D has consumed, all ranks together (per-scale batch sizes included)
        self._evaluation = None  # built on the first evaluation (training.eval_every)
        self.bad_streak = 0  # consecutive steps skipped by the NaN/inf guard
        self.rollbacks = 0
        self.lr_scale = 1.0  # lowered by each rollback
        self._fixed_batch()
        if _resume is not None:
            self.load_state_dict(_resume)

    def _speedups(self) -> None:
        """Distributed sync, mixed precision, channels_last, sync BN and torch.compile, as configured.

        Each switches itself off where it does not apply: AMP and SyncBatchNorm are CUDA-only, so on CPU
        training runs in float32 exactly as without them.
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
        self.amp_dtype: torch.dtype | None = None
        if cuda and t.amp != "off":
            bf16 = torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.float16 if t.amp == "fp16" or (t.amp == "auto" and not bf16) else torch.bfloat16
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

    def _load_batches(self) -> DataBatches:
        """Open ``cfg.data`` for the model (folder listing and checks happen here, decoding in the batches).

        The detected dataset kind and the absolute data path replace ``auto`` / a relative path in ``self.cfg``
        (so ``config.yaml`` and ``--resume`` see them); class names go to ``classes.json`` when labels are used.
        """
        cfg, t, d = self.cfg, self.cfg.training, self.cfg.data
        model_cfg = cfg.model
        wanted = model_cfg.num_classes  # type: ignore[attr-defined]
        source = open_dataset(
            d.dataset,
            d.path,
            image_size=model_cfg.image_size,
            channels=model_cfg.channels,  # type: ignore[attr-defined]
            split=d.split,
            labels=d.labels,
            strict=d.strict,
            num_workers=d.num_workers,
            conditional=bool(wanted),
            progress=self.progress,
        )
        have = source.num_classes
        if wanted and wanted != have:
            raise UserError(
                f"model.num_classes is {wanted} but the data has {have or 'no'} classes; "
                f"set --set model.num_classes={have}"
            )
        if not wanted and d.labels == "subdirs":
            raise UserError(
                f"--labels subdirs found {have} classes but the model is unconditional; "
                f"add --set model.num_classes={have} (or drop --labels)"
            )
        if source.path is not None:
            path = str(Path(source.path).resolve())
            self.cfg = dataclasses.replace(cfg, data=dataclasses.replace(d, dataset=source.kind, path=path))
        if wanted and source.classes is not None and distributed.current().is_main:
            classes = {"num_classes": have, "classes": source.classes, "dataset": source.kind, "path": source.path}
            (self.run_dir / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # one shard of the data per rank
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        kw = dict(batch_size=t.batch_size, seed=t.seed, device=self.device, rank=rank, world_size=world)
        return source.batches(**kw, with_labels=bool(wanted))

    # ------------------------------------------------------------------------------------------- state

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
            "progress": {"scale": self.G.scale, "alpha": float(self.G.alpha)} if self.schedule else None,
            "world_size": self.dist.world_size,
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()} if self.scalers else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.schedule is not None and state.get("progress"):  # grow G, D, EMA to the saved scale first
            self._grow_to(int(state["progress"]["scale"]))
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.ema.load_state_dict({"model": state["G_ema"], "num_updates": state["ema_updates"]})
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.batches.load_state_dict(self._rescale_data_position(state))
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
    def resume(cls, run_dir: str | Path, *, steps: int | None = None, progress: bool | None = None) -> Trainer:
        """Continue the run in ``run_dir`` from ``checkpoints/last.pt`` (optionally to a new total ``steps``)."""
        run_dir = Path(run_dir)
        ckpt = run_dir / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            raise UserError(f"--resume {run_dir}: no checkpoints/last.pt there; is it a gankit run folder?")
        state = load_checkpoint(ckpt)
        for stale in (run_dir / "checkpoints").glob(".*.tmp"):  # left by a write that was killed midway
            stale.unlink(missing_ok=True)
        data = state["config"]
        if steps is not None:
            data = {**data, "training": {**data["training"], "steps": steps}}
        cfg = RunConfig.from_dict(data)
        if cfg.training.steps <= int(state["step"]):
            raise UserError(
                f"the run is already at step {state['step']} of {cfg.training.steps}; "
                "pass --steps TOTAL larger than that"
            )
        if distributed.current().is_main:
            (run_dir / "config.yaml").write_text(cfg.to_yaml())
        return cls(cfg, run_dir, progress=progress, _resume=state)

    # ------------------------------------------------------------------------------------------- steps

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, self.G.z_dim, device=self.device, generator=self.noise)
        y = None
        if self.G.num_classes:
            y = torch.randint(self.G.num_classes, (n,), device=self.device, generator=self.noise)
        return z, y

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

    def train_step(self) -> dict[str, torch.Tensor]:
        """``n_critic`` D steps then one G step and the EMA update. Returns detached scalar tensors;
        ``skipped`` is 1 when a non-finite loss or gradient made the guard skip an update."""
        t = self.cfg.training
        batch_size = t.batch_size if self.schedule is None else self._enter_phase(self.schedule.at(self.step))
        if t.lr_decay != "constant":
            self._set_lr()
        self.images_seen += batch_size * t.n_critic * self.dist.world_size
        ok = True
        for _ in range(t.n_critic):
            real, y_real = self.batches.next()
            if self.schedule is not None:  # reals at the current scale, faded like G's output
                real = fade_real_images(real, self.G.image_size, float(self.G.alpha))
            z, y_fake = self._latents(batch_size)
            if self.cfg.training.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), self._autocast():  # D's step needs no graph through G
                fake = self.G(z, y_fake)
            with self._autocast():
                d_loss, stats = self.loss.discriminator_loss(
                    self.D, real, fake, y_real, y_fake, generator=self.noise
                )
            ok &= self._apply(d_loss, self.opt_d, "d")

        z, y_fake = self._latents(batch_size)
        self.D.requires_grad_(False)  # G's step needs gradients w.r.t. the image only
        try:
            with self._autocast():
                g_loss = self.loss.generator_loss(self.D, self.G(z, y_fake), y_fake)
            g_ok = self._apply(g_loss, self.opt_g, "g")
        finally:
            self.D.requires_grad_(True)
        if self.dist.enabled:  # batch-norm statistics differ per rank: keep rank 0's everywhere
            distributed.broadcast_state(self.G, buffers_only=True)
            distributed.broadcast_state(self.D, buffers_only=True)
        if g_ok:
            self.ema.update(self.G)
        self.step += 1
        skipped = torch.tensor(0.0 if (ok and g_ok) else 1.0)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **stats, "skipped": skipped}

    # ------------------------------------------------------------------------------------------- growth

    def _enter_phase(self, phase: GrowthPhase) -> int:
        """Apply a growth phase (scale, alpha, batch size) to G, D, the EMA and the data; returns the batch size."""
        if phase.scale != self.G.scale:
            self._grow_to(phase.scale)
        for model in (self.G, self.D, self.ema.model):
            model.set_alpha(phase.alpha)
        if getattr(self.batches, "batch_size", phase.batch_size) != phase.batch_size:
            self.batches.batch_size = phase.batch_size  # type: ignore[attr-defined]
            close = getattr(self.batches, "close", None)  # a prefetching loader restarts at the consumed position
            if close is not None:
                close()
        return phase.batch_size

    def _grow_to(self, scale: int) -> None:
        """Grow (or, when rolling back, shrink) G, D and the EMA to ``scale``, with fresh optimizers (as the zoo).

        The EMA keeps its averages of the existing layers; its new layers start as copies of G's."""
        if scale == self.G.scale:
            return
        self.G.set_scale(scale)
        self.D.set_scale(scale)
        old = set(self.ema.model.state_dict())
        self.ema.model.set_scale(scale)
        g_state = self.G.state_dict()
        with torch.no_grad():
            for key, value in self.ema.model.state_dict().items():
                if key not in old:
                    value.copy_(g_state[key])
        self.ema.model.eval().requires_grad_(False)
        t = self.cfg.training
        betas_g, betas_d = tuple(map(float, t.g_betas)), tuple(map(float, t.d_betas))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.g_lr, betas=betas_g)  # type: ignore[arg-type]
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=betas_d)  # type: ignore[arg-type]
        self._set_lr()

    def _guard(self, skipped: bool) -> None:
        """After ``nan_patience`` consecutive bad steps, roll back to the last checkpoint with lower learning
        rates; after ``max_rollbacks`` rollbacks, stop."""
        t = self.cfg.training
        self.bad_streak = self.bad_streak + 1 if skipped else 0
        if self.bad_streak < t.nan_patience:
            return
        last = self.run_dir / "checkpoints" / "last.pt"
        if self.rollbacks >= t.max_rollbacks or not last.is_file():
            raise TrainingDiverged(
                f"training diverged: {self.bad_streak} consecutive steps with NaN/inf losses or gradients at step "
                f"{self.step} after {self.rollbacks} rollback(s); lower training.g_lr / training.d_lr "
                f"(or try training.loss=hinge) and restart"
            )
        state = load_checkpoint(last, map_location=self.device)
        rollbacks, scale = self.rollbacks + 1, self.lr_scale * t.nan_lr_factor
        self.load_state_dict(state)
        self.rollbacks, self.lr_scale, self.bad_streak = rollbacks, scale, 0
        self._set_lr()
        tqdm.write(
            f"gankit: {t.nan_patience} non-finite steps in a row: rolled back to step {self.step} and scaled the "
            f"learning rates by {self.lr_scale:g} (rollback {self.rollbacks} of at most {t.max_rollbacks})"
        )

    def _set_lr(self) -> None:
        t = self.cfg.training
        factor = self.lr_scale * lr_decay_factor(t.lr_decay, self.step, t.steps)
        for opt, base in ((self.opt_g, t.g_lr), (self.opt_d, t.d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    # ------------------------------------------------------------------------------------------- outputs

    @torch.no_grad()
    def save_samples(self) -> Path:
        images = self.ema.model(self.fixed_z, self.fixed_y)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        return save_grid(images, path, self.grid_cols, row_labels=self.row_labels, title=f"step {self.step}")

    def _weights_finite(self) -> bool:
        tensors = [*self.G.state_dict().values(), *self.D.state_dict().values(), *self.ema.model.state_dict().values()]
        floats = [x for x in tensors if x.is_floating_point()]
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(floats))).all())

    def save_checkpoint(self) -> Path | None:
        """Write ``step_XXXXXXX.pt`` and point ``last.pt`` at it; refuses (returns None) if any weight is NaN/inf."""
        if not self._weights_finite():
            tqdm.write(f"gankit: step {self.step}: weights are not finite; checkpoint NOT written (last.pt kept)")
            return None
        folder = self.run_dir / "checkpoints"
        path = save_checkpoint(self.state_dict(), folder / f"step_{self.step:07d}.pt")
        last = folder / "last.pt"
        tmp = folder / ".last.pt.link"
        tmp.unlink(missing_ok=True)
        try:  # last.pt is a hard link to the newest step file: one write, then an atomic rename
            tmp.hardlink_to(path)
            tmp.replace(last)
        except OSError:
            save_checkpoint(self.state_dict(), last)
        self._prune(folder)
        self.export()
        return last

    def _prune(self, folder: Path) -> None:
        keep = self.cfg.training.keep_checkpoints
        steps = sorted(p for p in folder.glob("step_*.pt") if re.fullmatch(r"step_\d{7,}\.pt", p.name))
        for p in steps[: max(0, len(steps) - keep)] if keep else steps:
            p.unlink(missing_ok=True)

    def export(self) -> Path:
        return save_generator(self.ema.model, self.cfg.model.to_dict(), self.run_dir / "generator.safetensors")

    # ------------------------------------------------------------------------------------------- loop

    def fit(self) -> None:
        t = self.cfg.training
        gammas = list(attention_gammas("G", self.G)) + list(attention_gammas("D", self.D))
        columns = ["kimg", "d_loss", "g_loss", "d_real", "d_fake"]
        columns += ["gp"] if self.loss.gp > 0 else []
        columns += ["skipped", "img_per_s", "g_lr", "d_lr", *gammas]
        columns += ["resolution", "alpha"] if self.schedule else []
        if t.eval_every:
            from gankit.metrics.evaluate import TrainingEvaluation

            columns += TrainingEvaluation.columns()
            if self._evaluation is None:  # fail now, not hours in, when e.g. the Inception weights are missing
                self._evaluation = TrainingEvaluation(self.cfg, self.run_dir, self.device)
        main = self.dist.is_main  # rank 0 alone logs, samples, evaluates and writes checkpoints
        logger = MetricsLogger(
            self.run_dir, columns, tensorboard=t.tensorboard, resume_step=self.step if self.step else None
        ) if main else None
        if self.step == 0 and main:
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        bar = tqdm(total=t.steps, initial=self.step, unit="it", dynamic_ncols=True, disable=self._bar_disabled())
        sums: dict[str, torch.Tensor] = {}
        count, t0, seen0 = 0, time.perf_counter(), self.images_seen
        try:
            while self.step < t.steps:
                stats = self.train_step()
                self._guard(bool(stats["skipped"]))
                if self.bad_streak == 0 and stats["skipped"]:  # just rolled back: restart the log window
                    sums, count, t0, seen0 = {}, 0, time.perf_counter(), self.images_seen
                    bar.n = self.step
                    bar.refresh()
                    continue
                for k, v in stats.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                count += 1
                done = self.step == t.steps
                evals: dict[str, float] = {}
                if main and t.eval_every and (self.step % t.eval_every == 0 or done):
                    t_eval = time.perf_counter()
                    evals = self.evaluate()
                    t0 += time.perf_counter() - t_eval  # img/s counts training time only
                if main and (self.step % t.log_every == 0 or done or evals):
                    elapsed = time.perf_counter() - t0
                    values = {k: float(v) / count for k, v in sums.items()}
                    values["skipped"] = float(sums["skipped"])  # a count, not a mean
                    values["img_per_s"] = (self.images_seen - seen0) / max(elapsed, 1e-9)
                    values["kimg"] = self.images_seen / 1000
                    values["g_lr"] = self.opt_g.param_groups[0]["lr"]
                    values["d_lr"] = self.opt_d.param_groups[0]["lr"]
                    values.update(attention_gammas("G", self.G))
                    values.update(attention_gammas("D", self.D))
                    if self.schedule is not None:
                        values.update(resolution=self.G.image_size, alpha=float(self.G.alpha))
                    values.update(evals)
                    logger.log(self.step, values)
                    bar.set_postfix(
                        d=f"{values['d_loss']:.3f}",
                        g=f"{values['g_loss']:.3f}",
                        img_s=f"{values['img_per_s']:.0f}",
                        refresh=False,
                    )
                    sums, count, t0, seen0 = {}, 0, time.perf_counter(), self.images_seen
                if main and (self.step % t.sample_every == 0 or done):
                    self.save_samples()
                if self.step % t.checkpoint_every == 0 or done:
                    if main:
                        self.save_checkpoint()
                        plot_losses(self.run_dir / "metrics.csv", self.run_dir / "loss.png", self._title())
                    distributed.barrier()  # a rollback on any rank must find the same last.pt
                bar.update(1)
        except KeyboardInterrupt:
            bar.close()
            if main:
                self.save_checkpoint()
                plot_losses(self.run_dir / "metrics.csv", self.run_dir / "loss.png", self._title())
            raise TrainingInterrupted(
                f"interrupted at step {self.step}; checkpoint saved. "
                f"Continue with: gankit train --resume {self.run_dir}"
            ) from None
        finally:
            bar.close()
            if logger is not None:
                logger.close()

    def evaluate(self) -> dict[str, float]:
        """``eval/fid``, ``eval/kid``, ... of the EMA generator on ``training.eval_num`` samples; keeps
        ``checkpoints/best.pt`` (and ``best.json``) for the best FID. See ``gankit.metrics.evaluate``."""
        if self._evaluation is None:
            from gankit.metrics.evaluate import TrainingEvaluation

            self._evaluation = TrainingEvaluation(self.cfg, self.run_dir, self.device)
        return self._evaluation(self)

    def _title(self) -> str:
        return self.cfg.preset or self.cfg.model.family

    def _bar_disabled(self) -> bool | None:
        return None if self.progress is None else not self.progress
