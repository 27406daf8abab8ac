"""Progressive GAN (Karras, Aila, Laine, Lehtinen 2018): networks that start at 4x4 and grow one scale at a time.

Scale ``k`` has resolution ``4 * 2**k`` and width ``depths[k]``. The layer layout is that of
facebookresearch/pytorch_GAN_zoo (so its pretrained files load one to one, see :mod:`gankit.compat`):

- Generator: latent ``z (B, z_dim)`` (with a one-hot class appended when conditional), pixel-normalised when
  ``normalize_latent``; with ``class_embedding`` the class is instead an equalized dense embedding of the one-hot
  to ``z_dim`` features, pixel-normalised on its own and concatenated to the (normalised) latent, as
  StyleGAN2-ADA conditions its mapping network; ``input_layer`` equalized dense ``-> 16 * depths[0]``, LeakyReLU,
reshape to
  ``(B, depths[0], 4, 4)``, pixel norm; ``initial_conv`` 3x3, LeakyReLU, pixel norm. Each added scale
  (``blocks[k - 1]``): nearest-neighbour x2, two 3x3 convs each followed by LeakyReLU and pixel norm.
  ``to_rgb[k]``: a 1x1 conv per scale, no activation (optionally tanh): outputs are **not** bounded to [-1, 1].
- Discriminator: ``from_rgb[k]`` 1x1 conv + LeakyReLU; each scale's block two 3x3 convs (the second one to the
  previous scale's width) with LeakyReLU, then 2x2 average pooling; at 4x4 the minibatch standard deviation
  channel, a 3x3 conv, a dense ``16 * depths[0] -> depths[0]`` (LeakyReLU both) and the decision dense -> 1
  (plus a projection term ``<embed(y), h>`` when conditional).

Fade-in, gankit's convention (the paper's): ``alpha`` runs 0 -> 1 while a new scale fades in, 1 meaning fully
grown. ``G = alpha * to_rgb[k](new features) + (1 - alpha) * up2(to_rgb[k - 1](previous features))`` and D
mirrors it: ``alpha * block_k(from_rgb[k](x)) + (1 - alpha) * from_rgb[k - 1](avgpool2(x))``. pytorch_GAN_zoo
stores the weight of the *old* path (``alpha_zoo = 1 - alpha``). ``alpha`` is a buffer, so it travels with the
weights (checkpoints, EMA copies, exports) and a model saved mid-fade reproduces exactly.

The growth schedule (``steps_per_scale``, ``fade_steps``, ``fade_every``, ``batch_per_scale``) lives in this
config because it decides which architecture exists at each training step; the trainer reads it through
:mod:`gankit.training.schedules`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import UserError, check_number
from gankit.models.base import Discriminator, Generator, ModelConfig, check_power_of_two, latent_matrix
from gankit.nn.equalized import (
    SQRT2,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    downscale2d,
    upscale2d,
)

# pytorch_GAN_zoo's default recipe (pgan_config._C): 9 scales, 4 -> 1024.
ZOO_DEPTHS = (512, 512, 512, 512, 256, 128, 64, 32, 16)
ZOO_STEPS_PER_SCALE = (48000, 96000, 96000, 96000, 96000, 96000, 96000, 96000, 200000)


def zoo_steps_per_scale(num_scales: int) -> tuple[int, ...]:
    """The zoo's ``maxIterAtScale`` for the first ``num_scales`` scales (the last one repeated if needed)."""
    steps = list(ZOO_STEPS_PER_SCALE[:num_scales])
    return tuple(steps + [ZOO_STEPS_PER_SCALE[-1]] * (num_scales - len(steps)))


@dataclasses.dataclass(frozen=True)
class PGANConfig(ModelConfig):
    """Defaults: pytorch_GAN_zoo's CelebA-HQ recipe at 1024x1024, with NVIDIA's equalized-layer conventions
    (bias not scaled, toRGB gain 1, biased minibatch variance); the zoo's own are one flag each."""

    family = "pgan"

    image_size: int = 1024  # final resolution; 4 * 2**(number of scales - 1)
    z_dim: int = 512
    # num_classes > 0: a one-hot class appended to the latent, a projection term in D. For conditional models:
    # False (the zoo's form): the one-hot is pixel-normalised together with z, so the class is 1 of z_dim + 1
    # unit-size inputs and weighs like one latent coordinate. True: an embedding of the class normalised on its
    # own carries as much of the input as the whole latent.
    class_embedding: bool = False
    depths: tuple[int, ...] = ZOO_DEPTHS  # width of each scale, 4x4 first
    leaky_slope: float = 0.2
    normalize_latent: bool = True  # pixel-normalise the generator input
    output_tanh: bool = False  # the zoo applies tanh only with DCGAN / MSE losses
    scale_bias: bool = False  # zoo: True (the equalized scale multiplies the bias too)
    to_rgb_gain: float = 1.0  # zoo: sqrt(2)
    mbstd_group: int = 4  # minibatch stddev group size; 0 = no stddev channel
    mbstd_unbiased: bool = False  # zoo: True (torch.var)
    steps_per_scale: tuple[int, ...] = ZOO_STEPS_PER_SCALE  # training steps at each scale, fade-in included
    fade_steps: int = 19200  # steps over which alpha rises 0 -> 1 at the start of every scale after the first
    fade_every: int = 32  # alpha changes in jumps every this many steps (the zoo: 1/600 every 32 iterations)
    batch_per_scale: tuple[int, ...] = ()  # batch size at each scale; empty: training.batch_size everywhere

    @property
    def num_scales(self) -> int:
        return self.image_size.bit_length() - 2

    @staticmethod
    def resolution(scale: int) -> int:
        return 4 * 2**scale

    def validate(self) -> None:
        check_power_of_two("image_size", self.image_size, 4, 1024)
        n = self.num_scales
        for name, low in (("channels", 1), ("z_dim", 1), ("fade_every", 1), ("num_classes", 0), ("mbstd_group", 0),
                          ("fade_steps", 0)):
            check_number(f"model.{name}", getattr(self, name), integer=True, low=low)
        for name, allow_empty in (("depths", False), ("steps_per_scale", False), ("batch_per_scale", True)):
            values = tuple(getattr(self, name))
            if allow_empty and not values:
                continue
            if len(values) != n or not all(v > 0 for v in values):
                sizes = ", ".join(str(self.resolution(k)) for k in range(n))
                raise UserError(
                    f"model.{name} must hold {n} positive integers, one per scale ({sizes}) of a "
                    f"{self.image_size}x{self.image_size} model; got {list(values)!r}"
                )
        if n > 1 and self.fade_steps > min(self.steps_per_scale[1:]):
            raise UserError(
                f"model.fade_steps ({self.fade_steps}) is longer than a scale's step budget "
                f"(model.steps_per_scale {list(self.steps_per_scale)}); shorten the fade or raise the budget"
            )
        check_number("model.leaky_slope", self.leaky_slope, low=0)
        check_number("model.to_rgb_gain", self.to_rgb_gain, low=0, low_open=True)


def _check_scale(cfg: PGANConfig, scale: int) -> None:
    if not isinstance(scale, int) or not 0 <= scale < cfg.num_scales:
        raise ValueError(f"scale must be in 0..{cfg.num_scales - 1} for a {cfg.image_size}px model, got {scale!r}")


def scale_of_state_dict(state: dict[str, Any], prefix: str) -> int:
    """Highest ``k`` among the ``{prefix}.{k}.weight`` keys (``to_rgb`` for G, ``from_rgb`` for D)."""
    ks = [int(key.split(".")[1]) for key in state if key.startswith(prefix + ".") and key.endswith(".weight")]
    if not ks:
        raise ValueError(f"the state dict has no {prefix}.K.weight tensors: not a progressive GAN")
    return max(ks)


class _Growing:
    """Scale and fade-in bookkeeping shared by G and D (mixed into the nn.Module subclasses)."""

    config: PGANConfig
    alpha: torch.Tensor
    blocks: nn.ModuleList

    grows_progressively: ClassVar[bool] = True  # capability flag the trainer asks for
    _fixed_fade: tuple[float | None] | None = None  # set within traceable(): the fade as a Python number

    @property
    def scale(self) -> int:
        """Index of the current (highest) scale: 0 is 4x4."""
        return len(self.blocks)

    @property
    def image_size(self) -> int:
        """Current resolution ``4 * 2**scale`` (``config.image_size`` is the final one)."""
        return PGANConfig.resolution(self.scale)

    def set_alpha(self, alpha: float) -> None:
        """Fade-in weight of the newest scale, 0 (just added) to 1 (fully grown)."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        with torch.no_grad():
            self.alpha.fill_(float(alpha))

    def _fading(self) -> float | torch.Tensor | None:
        """The current alpha when a fade-in is under way, else None (no blend at all).

        Eager: a Python float read from the ``alpha`` buffer. Traced for export, where Python cannot branch on a
        buffer's value (``torch.export`` stops at ``float(alpha)``): the number fixed by :meth:`traceable`, else
        the buffer itself, a tensor op that blends at every alpha (at 1 the new scale alone, as eager).
        """
        if self.scale == 0:
            return None
        if self._fixed_fade is not None:
            return self._fixed_fade[0]
        if torch.compiler.is_exporting():
            return self.alpha
        a = float(self.alpha)
        return a if a < 1.0 else None

    @contextlib.contextmanager
    def traceable(self) -> Iterator[None]:
        """Within: the fade is fixed at the current alpha as a Python number (none once fully grown), so an
        exported graph holds exactly the eager computation and no dead blend."""
        self._fixed_fade = (self._fading(),)  # type: ignore[assignment]
        try:
            yield
        finally:
            self.__dict__.pop("_fixed_fade", None)

    def grow(self) -> None:
        """Add one scale (doubling the resolution); the new scale starts invisible (``alpha = 0``)."""
        if self.scale + 1 >= self.config.num_scales:
            raise ValueError(f"already at the final scale ({self.config.image_size}px)")
        self.set_scale(self.scale + 1)
        self.set_alpha(0.0)

    def set_scale(self, scale: int) -> None:
        """Grow (new layers freshly initialised) or shrink (highest layers dropped) to ``scale``."""
        _check_scale(self.config, scale)
        ref = next(self.parameters())  # type: ignore[attr-defined]
        while self.scale < scale:
            self._add_scale(self.scale + 1, ref)
        while self.scale > scale:
            self._drop_scale()

    def adapt_to_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Grow or shrink to the scale ``state_dict`` was saved at (its ``to_rgb`` / ``from_rgb`` layers)."""
        self.set_scale(scale_of_state_dict(state_dict, self._rgb_name))

    _rgb_name: ClassVar[str] = ""

    def _add_scale(self, scale: int, ref: torch.Tensor) -> None:
        raise NotImplementedError

    def _drop_scale(self) -> None:
        raise NotImplementedError


class _GBlock(nn.Module):
    """Nearest x2, then two (3x3 conv, LeakyReLU, pixel norm): ``(B, c_in, H, W) -> (B, c_out, 2H, 2W)``."""

    def __init__(self, c_in: int, c_out: int, slope: float, scale_bias: bool) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(c_in, c_out, 3, padding=1, scale_bias=scale_bias)
        self.conv2 = EqualizedConv2d(c_out, c_out, 3, padding=1, scale_bias=scale_bias)
        self.slope = slope
        self.norm = PixelNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = upscale2d(x)
        x = self.norm(F.leaky_relu(self.conv1(x), self.slope))
        return self.norm(F.leaky_relu(self.conv2(x), self.slope))


class ProgressiveGenerator(_Growing, Generator):
    """``G(z (B, z_dim), y (B,) | None) -> (B, channels, R, R)`` at the current resolution ``R``; unbounded.

    ``synthesize(v)`` takes the raw input vector ``(B, z_dim + num_classes)`` (or ``(B, D, 1, 1)``) as the
    zoo's networks do, for callers that build the class part themselves.
    """

    config_class = PGANConfig
    _rgb_name = "to_rgb"

    def __init__(self, cfg: PGANConfig, *, scale: int = 0) -> None:
        super().__init__(cfg)
        d0 = cfg.depths[0]
        embedded = cfg.class_embedding and cfg.num_classes > 0
        self.class_embed = EqualizedLinear(cfg.num_classes, cfg.z_dim, scale_bias=cfg.scale_bias) if embedded else None
        features_in = cfg.z_dim + (cfg.z_dim if embedded else cfg.num_classes)
        self.input_layer = EqualizedLinear(features_in, 16 * d0, scale_bias=cfg.scale_bias)
        self.initial_conv = EqualizedConv2d(d0, d0, 3, padding=1, scale_bias=cfg.scale_bias)
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList([self._make_to_rgb(0)])
        self.norm = PixelNorm()
        self.register_buffer("alpha", torch.tensor(1.0))
        self.set_scale(scale)

    def _make_to_rgb(self, scale: int) -> EqualizedConv2d:
        cfg = self.config
        return EqualizedConv2d(cfg.depths[scale], cfg.channels, 1, gain=cfg.to_rgb_gain, scale_bias=cfg.scale_bias)

    def _add_scale(self, scale: int, ref: torch.Tensor) -> None:
        cfg = self.config
        block = _GBlock(cfg.depths[scale - 1], cfg.depths[scale], cfg.leaky_slope, cfg.scale_bias)
        self.blocks.append(block.to(device=ref.device, dtype=ref.dtype))
        self.to_rgb.append(self._make_to_rgb(scale).to(device=ref.device, dtype=ref.dtype))

    def _drop_scale(self) -> None:
        del self.blocks[-1]
        del self.to_rgb[-1]

    @property
    def input_dim(self) -> int:
        return self.z_dim + self.num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        if y is not None:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        return self.synthesize(z)

    def latent_weight(self) -> torch.Tensor:
        # the equalised linear after pixel norm; its first z_dim inputs are the latent (the class part follows)
        return latent_matrix(self.input_layer, self.z_dim)

    def latent_layer(self) -> str:
        return "input_layer"

    def synthesize(self, v: torch.Tensor) -> torch.Tensor:
        """Raw input ``(B, z_dim + num_classes)`` or ``(B, z_dim + num_classes, 1, 1)`` -> ``(B, C, R, R)``."""
        v = v.flatten(1) if v.dim() == 4 else v
        if v.dim() != 2 or v.shape[1] != self.input_dim:
            raise ValueError(f"the generator input must have shape (B, {self.input_dim}), got {tuple(v.shape)}")
        slope = self.config.leaky_slope
        if self.class_embed is not None:
            z, one_hot = v.split([self.z_dim, self.num_classes], dim=1)
            z = self.norm(z) if self.config.normalize_latent else z
            v = torch.cat([z, self.norm(self.class_embed(one_hot))], dim=1)
        elif self.config.normalize_latent:
            v = self.norm(v)
        x = F.leaky_relu(self.input_layer(v), slope).reshape(v.shape[0], self.config.depths[0], 4, 4)
        x = self.norm(x)
        x = self.norm(F.leaky_relu(self.initial_conv(x), slope))
        previous = x
        for block in self.blocks:
            previous = x
            x = block(x)
        out = self.to_rgb[-1](x)
        alpha = self._fading()
        if alpha is not None:
            old = upscale2d(self.to_rgb[-2](previous))
            out = alpha * out + (1.0 - alpha) * old
        return torch.tanh(out) if self.config.output_tanh else out


class _DBlock(nn.Module):
    """Two (3x3 conv, LeakyReLU), then 2x2 average pooling: ``(B, c, H, W) -> (B, c_out, H/2, W/2)``."""

    def __init__(self, c: int, c_out: int, slope: float, scale_bias: bool) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(c, c, 3, padding=1, scale_bias=scale_bias)
        self.conv2 = EqualizedConv2d(c, c_out, 3, padding=1, scale_bias=scale_bias)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), self.slope)
        x = F.leaky_relu(self.conv2(x), self.slope)
        return downscale2d(x)


class ProgressiveDiscriminator(_Growing, Discriminator):
    """``D(x (B, channels, R, R), y (B,) | None) -> (B,)`` scores, ``R`` the current resolution."""

    config_class = PGANConfig
    _rgb_name = "from_rgb"

    def __init__(self, cfg: PGANConfig, *, scale: int = 0) -> None:
        super().__init__(cfg)
        d0, sb = cfg.depths[0], cfg.scale_bias
        self.from_rgb = nn.ModuleList([self._make_from_rgb(0)])
        self.blocks = nn.ModuleList()  # blocks[k - 1] takes scale k down to scale k - 1
        self.mbstd = (
            MinibatchStdDev(group_size=cfg.mbstd_group, unbiased=cfg.mbstd_unbiased) if cfg.mbstd_group else None
        )
        self.final_conv = EqualizedConv2d(d0 + (1 if self.mbstd else 0), d0, 3, padding=1, scale_bias=sb)
        self.final_linear = EqualizedLinear(16 * d0, d0, scale_bias=sb)
        self.decision = EqualizedLinear(d0, 1, scale_bias=sb)
        self.embed = nn.Embedding(cfg.num_classes, d0) if cfg.num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight)  # equalized too: scaled by 1/sqrt(d0) at run time
        self.register_buffer("alpha", torch.tensor(1.0))
        self.set_scale(scale)

    def _make_from_rgb(self, scale: int) -> EqualizedConv2d:
        cfg = self.config
        return EqualizedConv2d(cfg.channels, cfg.depths[scale], 1, scale_bias=cfg.scale_bias)

    def _add_scale(self, scale: int, ref: torch.Tensor) -> None:
        cfg = self.config
        block = _DBlock(cfg.depths[scale], cfg.depths[scale - 1], cfg.leaky_slope, cfg.scale_bias)
        self.blocks.append(block.to(device=ref.device, dtype=ref.dtype))
        self.from_rgb.append(self._make_from_rgb(scale).to(device=ref.device, dtype=ref.dtype))

    def _drop_scale(self) -> None:
        del self.blocks[-1]
        del self.from_rgb[-1]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.channels or x.shape[-2:] != (self.image_size,) * 2:
            raise ValueError(
                f"D at scale {self.scale} takes (B, {self.config.channels}, {self.image_size}, {self.image_size}) "
                f"images, got {tuple(x.shape)}"
            )
        slope = self.config.leaky_slope
        h = F.leaky_relu(self.from_rgb[-1](x), slope)
        if self.blocks:
            h = self.blocks[-1](h)
            alpha = self._fading()
            if alpha is not None:
                old = F.leaky_relu(self.from_rgb[-2](downscale2d(x)), slope)
                h = alpha * h + (1.0 - alpha) * old
            for block in reversed(self.blocks[:-1]):
                h = block(h)
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = F.leaky_relu(self.final_conv(h), slope)
        h = F.leaky_relu(self.final_linear(h.flatten(1)), slope)
        out = self.decision(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: call D(x, y)")
            out = out + (self.embed(y) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return out


__all__ = [
    "SQRT2",
    "ZOO_DEPTHS",
    "ZOO_STEPS_PER_SCALE",
    "PGANConfig",
    "ProgressiveDiscriminator",
    "ProgressiveGenerator",
    "scale_of_state_dict",
    "zoo_steps_per_scale",
]
