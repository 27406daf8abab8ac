"""Building blocks shared by the SN-GAN and DCGAN families.

- :class:`LayerMaker`: initialise a fresh layer (DCGAN's ``N(0, 0.02)``, Xavier, or PyTorch's default) and
  then, when asked, put spectral norm on it. Initialising first matters: spectral norm's persistent power
  iteration vectors ``u``, ``v`` are started from the weight at registration.
- :class:`Norm2d`: batch norm, or conditional batch norm (per-class gain and bias) for class-conditional models.
- :class:`GConvBlock` / :class:`DConvBlock`: (transposed) convolution, optional (conditional) batch norm,
  activation, the DCGAN-style layers.
- :class:`GResBlock` / :class:`DResBlock`: the residual blocks of the SN-GAN paper's ResNets (Miyato et al.
  2018, appendix; after Gulrajani et al.'s WGAN-GP ResNet).
- :func:`projection`: the projection discriminator term ``<embed(y), sum_hw phi(x)>`` (Miyato & Koyama 2018).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from gankit.device import is_channels_last
from gankit.errors import UserError, check_number
from gankit.nn import (
    ConditionalBatchNorm2d,
    conv1x1_avgpool,
    conv3x3_avgpool,
    maybe_spectral_norm,
    upsample_conv1x1,
    upsample_conv3x3,
)

INIT_SCHEMES = ("normal", "xavier", "default")


class BlockOptions(Protocol):
    """The config fields of the options these blocks take (SN-GAN's and DCGAN's configs)."""

    d_leaky_slope: float
    init: str


class ProjectionOptions(Protocol):
    """The config fields the projection embedding reads (every conv family's config)."""

    num_classes: int
    d_spectral_norm: bool
    embedding_spectral_norm: bool
    sn_power_iterations: int


def check_block_options(cfg: BlockOptions) -> None:
    """The config checks of the options these blocks take (SN-GAN and DCGAN): ``d_leaky_slope``, ``init``."""
    check_number("model.d_leaky_slope", cfg.d_leaky_slope, low=0)
    if cfg.init not in INIT_SCHEMES:
        raise UserError(f"model.init must be one of {', '.join(INIT_SCHEMES)}, got {cfg.init!r}")


def init_layer(module: nn.Module, scheme: str, gain: float = 1.0) -> nn.Module:
    """Initialise one fresh layer in place and return it.

    ``normal``: convolution, linear and embedding weights ``N(0, 0.02)``, batch-norm gains ``N(1, 0.02)``, all
    biases 0 (DCGAN, Radford et al. 2016). ``xavier``: Xavier-uniform weights with ``gain`` (the SN-GAN
    ResNets use ``sqrt(2)`` inside residual branches and 1 elsewhere), biases 0. ``default``: PyTorch's own.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; use one of {INIT_SCHEMES}")
    if scheme == "default":
        return module
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        if scheme == "normal":
            nn.init.normal_(module.weight, 0.0, 0.02)
        else:
            nn.init.xavier_uniform_(module.weight, gain)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine and scheme == "normal":
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    return module


class LayerMaker:
    """``make(layer, gain=1.0)``: initialise ``layer`` with ``init`` and wrap it in spectral norm when ``sn``
    (``sn_eps``: the power iteration's epsilon)."""

    def __init__(self, *, init: str, sn: bool, n_power_iterations: int = 1, sn_eps: float = 1e-12) -> None:
        self.init, self.sn, self.n_power_iterations, self.sn_eps = init, sn, n_power_iterations, sn_eps

    def __call__(self, layer: nn.Module, gain: float = 1.0) -> nn.Module:
        return maybe_spectral_norm(init_layer(layer, self.init, gain), self.sn, self.n_power_iterations, self.sn_eps)


class Norm2d(nn.Module):
    """``BatchNorm2d`` (``num_classes == 0``) or :class:`ConditionalBatchNorm2d`; ``forward(x (B, C, H, W),
    y (B,) | None) -> (B, C, H, W)``; ``eps`` is batch norm's (PyTorch's 1e-5; StudioGAN's 1e-4)."""

    def __init__(self, channels: int, num_classes: int, init: str, eps: float = 1e-5) -> None:
        super().__init__()
        self.conditional = num_classes > 0
        self.norm = (
            ConditionalBatchNorm2d(channels, num_classes, eps=eps)
            if self.conditional
            else init_layer(nn.BatchNorm2d(channels, eps=eps), init)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.norm(x, y) if self.conditional else self.norm(x)


class GConvBlock(nn.Module):
    """``conv`` (usually transposed), (conditional) batch norm, ReLU: ``(B, C_in, H, W) -> (B, C_out, H', W')``."""

    def __init__(self, conv: nn.Module, out_channels: int, num_classes: int, init: str) -> None:
        super().__init__()
        self.conv = conv
        self.norm = Norm2d(out_channels, num_classes, init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = project_point(self.conv, x) if _is_point_projection(self.conv, x) else self.conv(x)
        # in place: the norm's output is not needed by any backward (batch norm saves its input), so the
        # activation overwrites it instead of allocating and page-faulting in one more full-size map
        return F.relu(self.norm(h, y), inplace=True)


def _is_point_projection(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` is a plain transposed convolution (no padding, groups or dilation) applied to a 1x1
    map: the first layer of the DCGAN-style generators, which is a matmul in disguise."""
    return (
        isinstance(conv, nn.ConvTranspose2d)
        and x.shape[-2:] == (1, 1)
        and conv.padding == (0, 0)
        and conv.output_padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def project_point(conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1x1 map ``x (B, C_in, 1, 1)`` as one matmul ``(B, C_in) @ (C_in, C_out k k)`` ->
    ``(B, C_out, k, k)``.

    oneDNN runs this shape as a convolution at ~35 GFLOP/s on a CPU (10 ms forward + backward at batch 64 in
    SAGAN-64); as a GEMM it is under a millisecond. The output keeps the weight's memory format (channels_last
    weights give a channels_last map, as the convolution would).
    """
    w = conv.weight  # (C_in, C_out, kh, kw); read once: a spectral-norm parametrization computes it here
    c_in, c_out, kh, kw = w.shape
    channels_last = is_channels_last(w)
    bias = conv.bias
    if channels_last:  # columns ordered (kh, kw, C_out): the product is the NHWC map
        columns = w.permute(0, 2, 3, 1).reshape(c_in, -1)
        bias = bias.repeat(kh * kw) if bias is not None else None
    else:
        columns = w.reshape(c_in, -1)
        bias = bias.repeat_interleave(kh * kw) if bias is not None else None
    # addmm, not mm + bias: under autocast both run in the low precision, as the convolution with its bias does
    out = x.flatten(1) @ columns if bias is None else torch.addmm(bias, x.flatten(1), columns)
    if channels_last:
        return out.view(-1, kh, kw, c_out).permute(0, 3, 1, 2)
    return out.view(-1, c_out, kh, kw)


class DConvBlock(nn.Module):
    """``conv``, optional batch norm, LeakyReLU(``slope``): ``(B, C_in, H, W) -> (B, C_out, H', W')``."""

    def __init__(self, conv: nn.Module, out_channels: int, *, batch_norm: bool, slope: float, init: str) -> None:
        super().__init__()
        self.conv = conv
        self.norm = init_layer(nn.BatchNorm2d(out_channels), init) if batch_norm else None
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.norm is not None:
            h = self.norm(h)
        # in place, like GConvBlock: conv and batch norm backward need their inputs, not h. PyTorch's in-place
        # backward needs slope >= 0 (it inverts through the sign of the result), so a negative slope stays out of place
        return F.leaky_relu(h, self.slope, inplace=self.slope >= 0)


class GResBlock(nn.Module):
    """SN-GAN generator block: ``BN, ReLU, up x2 (nearest), conv3x3, BN, ReLU, conv3x3`` plus the shortcut
    ``up x2, conv1x1``. ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``; batch norms are conditional when
    ``num_classes > 0``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, num_classes: int, make: LayerMaker, bn_eps: float = 1e-5
    ) -> None:
        super().__init__()
        root2 = math.sqrt(2)
        self.norm1 = Norm2d(in_channels, num_classes, make.init, bn_eps)
        self.conv1 = make(nn.Conv2d(in_channels, out_channels, 3, 1, 1), root2)
        self.norm2 = Norm2d(out_channels, num_classes, make.init, bn_eps)
        self.conv2 = make(nn.Conv2d(out_channels, out_channels, 3, 1, 1), root2)
        self.shortcut = make(nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        # the upsampling folded into conv1, the shortcut's 1x1 conv run before it: the same function with 2.25x
        # and 4x fewer multiply-adds (gankit.nn.resample)
        # ReLUs in place: a norm's output is needed by no backward (batch norm saves its input; the conditional
        # gain's product saves the normalised map, not the sum), so the activation takes its memory
        h = upsample_conv3x3(self.conv1, F.relu(self.norm1(x, y), inplace=True))
        h = self.conv2(F.relu(self.norm2(h, y), inplace=True))
        return h + upsample_conv1x1(self.shortcut, x)


class DResBlock(nn.Module):
    """SN-GAN discriminator block: ``ReLU, conv3x3, ReLU, conv3x3[, avg-pool 2]`` plus a shortcut (a 1x1 conv
    when the width changes or it downsamples). The ``optimized`` first block takes the image directly: no
    leading ReLU, and the shortcut pools before its 1x1 conv. ``(B, C_in, H, W) -> (B, C_out, H', W')`` with
    ``H' = H / 2`` when downsampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        downsample: bool,
        optimized: bool,
        make: LayerMaker,
        shortcut_relu: bool = False,
    ) -> None:
        super().__init__()
        if optimized and not downsample:
            raise ValueError("the optimized first block always downsamples")
        root2 = math.sqrt(2)
        self.downsample, self.optimized = downsample, optimized
        # StudioGAN's D block applies an in-place ReLU to its input before keeping it for the shortcut, so its
        # shortcut reads ReLU(x); shortcut_relu reproduces that
        self.shortcut_relu = shortcut_relu
        self.conv1 = make(nn.Conv2d(in_channels, out_channels, 3, 1, 1), root2)
        self.conv2 = make(nn.Conv2d(out_channels, out_channels, 3, 1, 1), root2)
        learnable = in_channels != out_channels or downsample
        self.shortcut = make(nn.Conv2d(in_channels, out_channels, 1)) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.optimized else F.relu(x)
        if self.shortcut_relu and not self.optimized:
            x = h
        h = F.relu(self.conv1(h), inplace=True)  # a convolution's backward needs its input, not its output
        # the pooling folded into conv2, and the shortcut's 1x1 conv run after it: the same function with 2.25x
        # and 4x fewer multiply-adds (gankit.nn.resample)
        h = conv3x3_avgpool(self.conv2, h) if self.downsample else self.conv2(h)
        if self.optimized:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        if self.shortcut is None:
            return h + x
        return h + (conv1x1_avgpool(self.shortcut, x) if self.downsample else self.shortcut(x))


def projection_embedding(cfg: ProjectionOptions, features: int, init: str) -> nn.Module | None:
    """The projection discriminator's class embedding ``(num_classes -> features)``, with spectral norm when the
    config puts it on D and on the embedding (``d_spectral_norm`` and ``embedding_spectral_norm``); None for an
    unconditional model."""
    if not cfg.num_classes:
        return None
    sn = cfg.d_spectral_norm and cfg.embedding_spectral_norm
    sn_eps = getattr(cfg, "sn_eps", 1e-12)  # SN-GAN's config has it
    make = LayerMaker(init=init, sn=sn, n_power_iterations=cfg.sn_power_iterations, sn_eps=sn_eps)
    return make(nn.Embedding(cfg.num_classes, features))


def projection(embed: nn.Module | None, y: torch.Tensor | None, features: torch.Tensor) -> torch.Tensor:
    """``<embed(y), sum_hw features>`` per sample ``(B,)``, or 0 for an unconditional discriminator.

    ``features`` is ``(B, C, H, W)`` (or already pooled ``(B, C)``); ``embed`` maps class ids to ``C``.
    """
    if embed is None:
        return features.new_zeros(())
    if y is None:
        raise ValueError("this discriminator is class-conditional: call D(x, y)")
    pooled = features.sum(dim=(2, 3)) if features.dim() == 4 else features
    return (embed(y) * pooled).sum(dim=1)
