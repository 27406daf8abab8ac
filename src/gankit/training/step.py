"""One training iteration of the GAN algorithm, and everything it changes: :class:`GANStep`.

Goodfellow et al. 2014, with SAGAN's two time-scale update rule (TTUR) and an EMA of G::

    repeat n_critic times:  x ~ data, z ~ N(0, I);  D <- D - lr_D * grad L_D(D(x), D(G(z)))   (fakes detached)
    z ~ N(0, I);            G <- G - lr_G * grad L_G(D(G(z)))                                 (D frozen)
    G_ema <- lerp(G_ema, G, 1 - decay)

What D sees is augmented (DiffAugment / ADA, reals and fakes in both steps); the losses are
:class:`~gankit.losses.AdversarialLoss`'s (hinge, non-saturating, WGAN-GP, LeCam); a progressively growing model
is moved through its schedule by a :class:`~gankit.training.growth.GrowthController`. An update whose loss or
gradients are not finite is skipped on every rank alike (the caller's guard counts those).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

import gankit.training.distributed as distributed
from gankit.augment import LeCam, build_augment
from gankit.config import RunConfig
from gankit.data import DataBatches
from gankit.device import autocast_dtype
from gankit.losses import AdversarialLoss
from gankit.models.registry import build_discriminator, build_generator
from gankit.training.ema import EMA
from gankit.training.growth import LOG_COLUMNS as GROWTH_COLUMNS
from gankit.training.growth import GrowthController
from gankit.training.logger import attention_gammas, log_columns
from gankit.training.schedules import lr_decay_factor

ADA_COLUMNS = ["ada_p", "ada_r_t"]


class GANStep:
    """G, D, the EMA of G, their optimizers and the random stream of the steps; :meth:`train_step` is one
    iteration of the algorithm above.

    Built from the run config on ``device`` (``dist``: this process's rank, see
    :func:`gankit.training.distributed.current`), with ``batches`` the real-image stream. The global random state
    must be seeded before (G's and D's initial weights are drawn here, G first).
    """

    def __init__(self, cfg: RunConfig, batches: DataBatches, device: torch.device, dist: distributed.DistInfo) -> None:
        t = cfg.training
        self.cfg, self.batches, self.device, self.dist = cfg, batches, device, dist
        self.G = build_generator(cfg.model).to(device).train()
        self.D = build_discriminator(cfg.model).to(device).train()
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
        self.lr_scale = 1.0  # lowered by each rollback of the caller's NaN guard
        self.build_optimizers()
        self.growth = (
            GrowthController.for_model(cfg.model, t.batch_size, self.G, self.D, self.ema.model, batches,
                                       self.build_optimizers)
            if getattr(self.G, "grows_progressively", False)
            else None
        )
        # One generator for everything random in a step (latents, fake labels, GP mixing, augmentation): saved in
        # checkpoints. Per-rank seeds: each process draws its own latents.
        self.noise = torch.Generator(device=device).manual_seed(t.seed + 1 + 1_000_003 * dist.rank)

    def init_weights(self, g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor] | None,
                     source: str) -> None:  # fmt: skip
        """Start from stored weights (``gankit train --init-from``): G and its EMA from ``g_state``, D from
        ``d_state`` when given (else D keeps its fresh initialisation); loaded strictly, ``source`` names them."""
        self.G.load_weights(g_state, source)
        self.ema.model.load_weights(g_state, source)
        if d_state is not None:
            self.D.load_weights(d_state, f"{source}/discriminator")

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
        distributed.broadcast_state(self.G)  # rank 0's initial weights everywhere
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

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of G's and D's forward passes (a no-op in float32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    # --------------------------------------------------------------------------------------- optimizers

    def build_optimizers(self) -> None:
        """Adam for G and D with the configured rates and betas (also after every change of a growing model's
        scale, as pytorch_GAN_zoo does), at the rates in force for the current step."""
        t = self.cfg.training
        # floats: YAML's [0, 0.99] gives an int beta, which Adam rejects
        betas_g, betas_d = tuple(map(float, t.g_betas)), tuple(map(float, t.d_betas))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.g_lr, betas=betas_g)  # type: ignore[arg-type]
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=betas_d)  # type: ignore[arg-type]
        self.set_lr()

    def set_lr(self) -> None:
        """The learning rates of the current step: the configured ones, decayed and scaled by rollbacks."""
        t = self.cfg.training
        factor = self.lr_scale * lr_decay_factor(t.lr_decay, self.step, t.steps)
        for opt, base in ((self.opt_g, t.g_lr), (self.opt_d, t.d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    # --------------------------------------------------------------------------------------- the step

    def latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(z (n, z_dim), y (n,) or None)`` from the step's random stream."""
        z = torch.randn(n, self.G.z_dim, device=self.device, generator=self.noise)
        y = None
        if self.G.num_classes:
            y = torch.randint(self.G.num_classes, (n,), device=self.device, generator=self.noise)
        return z, y

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next real images ``(B, C, S, S)`` (at a growing model's current scale, faded like its output) and
        labels."""
        real, y = self.batches.next()
        if self.growth is not None:
            real = self.growth.real_images(real)
        if self.cfg.training.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return real, y

    @property
    def adaptive(self) -> bool:
        """Whether the augmentation adapts to D (ADA): it then observes D's outputs on reals and logs p."""
        return self.augment.kind == "ada"

    def _observe_reals(self, real_logits: torch.Tensor) -> None:
        """ADA's statistic from every rank's reals, so that all ranks move p alike."""
        self.augment.observe(distributed.all_gather_cat(real_logits))

    def train_step(self) -> dict[str, torch.Tensor]:
        """``n_critic`` D steps then one G step and the EMA update. Returns detached scalar tensors;
        ``skipped`` is 1 when a non-finite loss or gradient made an update be skipped."""
        t = self.cfg.training
        batch_size = self.growth.enter(self.step).batch_size if self.growth else t.batch_size
        if t.lr_decay != "constant":
            self.set_lr()
        self.images_seen += batch_size * t.n_critic * self.dist.world_size
        d_ok = True
        augment = self.augment
        for _ in range(t.n_critic):
            real, y_real = self.real_batch()
            z, y_fake = self.latents(batch_size)
            with torch.no_grad(), self.autocast():  # D's step needs no graph through G
                fake = self.G(z, y_fake)
            with self.autocast():
                d_loss, stats = self.loss.discriminator_loss(
                    self.D, augment(real, self.noise), augment(fake, self.noise), y_real, y_fake,
                    generator=self.noise, step=self.step, observe=self._observe_reals if self.adaptive else None,
                )
            d_ok &= self.apply_gradients(d_loss, self.opt_d, "d")

        z, y_fake = self.latents(batch_size)
        self.D.requires_grad_(False)  # G's step needs gradients w.r.t. the image only
        try:
            with self.autocast():  # the fakes are augmented too: gradients reach G through the augmentation
                g_loss = self.loss.generator_loss(self.D, augment(self.G(z, y_fake), self.noise), y_fake)
            g_ok = self.apply_gradients(g_loss, self.opt_g, "g")
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

    def apply_gradients(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, net: str) -> bool:
        """Backward, average the gradients over the ranks, and step, unless the loss or a gradient is NaN/inf:
        then the update is skipped (on every rank alike). ``net``: ``"g"`` or ``"d"`` (its fp16 loss scaler)."""
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

    # --------------------------------------------------------------------------------------- the log

    def log_columns(self, extra: list[str]) -> list[str]:
        """The columns of ``metrics.csv``: the losses, the step's own values (:meth:`log_values`), ``extra``."""
        gammas = [*attention_gammas("G", self.G), *attention_gammas("D", self.D)]
        own = [*(GROWTH_COLUMNS if self.growth else []), *(ADA_COLUMNS if self.adaptive else [])]
        return log_columns(penalty=self.loss.gp > 0, gammas=gammas, extra=[*own, *extra])

    def log_values(self) -> dict[str, float]:
        """What the step adds to a log row: learning rates, attention gammas, growth and ADA state."""
        values = {"g_lr": self.opt_g.param_groups[0]["lr"], "d_lr": self.opt_d.param_groups[0]["lr"]}
        values.update(attention_gammas("G", self.G))
        values.update(attention_gammas("D", self.D))
        if self.growth is not None:
            values.update(self.growth.log_values())
        if self.adaptive:
            r_t = self.augment.r_t
            values.update(ada_p=self.augment.p, ada_r_t=math.nan if r_t is None else r_t)
        return values

    # --------------------------------------------------------------------------------------- state

    def weights_finite(self) -> bool:
        """Whether every floating-point weight and buffer of G, D and the EMA generator is finite."""
        tensors = [*self.G.state_dict().values(), *self.D.state_dict().values(), *self.ema.model.state_dict().values()]
        floats = [x for x in tensors if x.is_floating_point()]
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(floats))).all())

    def state_dict(self) -> dict[str, Any]:
        """The step's part of a checkpoint (the keys of the checkpoint format)."""
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.model.state_dict(),
            "ema_updates": self.ema.num_updates,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "noise_rng": self.noise.get_state(),
            "progress": self.growth.state_dict() if self.growth else None,
            "augment": self.augment.state_dict(),
            "lecam": self.loss.lecam.state_dict() if self.loss.lecam else None,
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()} if self.scalers else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (a growing model grows to the saved scale first). The data
        position, the global random state and the learning-rate scale are the caller's."""
        if self.growth is not None:
            self.growth.load_state_dict(state.get("progress"))
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.ema.load_state_dict({"model": state["G_ema"], "num_updates": state["ema_updates"]})
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("augment") is not None:  # (absent from checkpoints written before augmentation existed)
            self.augment.load_state_dict(state["augment"])
        if self.loss.lecam is not None and state.get("lecam") is not None:
            self.loss.lecam.load_state_dict(state["lecam"])
        if self.scalers and state.get("scalers"):
            for key, scaler in self.scalers.items():
                scaler.load_state_dict(state["scalers"][key])
        self.noise.set_state(state["noise_rng"])
        self.step = int(state["step"])


__all__ = ["GANStep"]
