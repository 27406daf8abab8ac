"""Progressive GAN layers: equalized learning rate, pixel norm, minibatch standard deviation.

Equalized learning rate (Karras et al. 2018): weights are stored ``N(0, 1)`` and multiplied at run time by
He's constant ``c = gain / sqrt(fan_in)`` (``fan_in = in_channels * kh * kw``), so Adam's per-parameter step
sizes act on every layer at the same effective rate. Two conventions exist and both are offered:

- ``scale_bias=False`` (NVIDIA's reference): ``y = conv(x, c * W) + b``;
- ``scale_bias=True`` (facebookresearch/pytorch_GAN_zoo): ``y = conv(x, W, b) * c``, the bias is scaled too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


class EqualizedConv2d(nn.Module):
    """``(B, in_channels, H, W) -> (B, out_channels, H', W')`` conv with run-time He scaling.

    Parameters are named ``weight`` ``(out, in, k, k)`` and ``bias`` ``(out,)`` like ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,  # zero padding on each side, in pixels
        gain: float = SQRT2,  # He's gain; c = gain / sqrt(fan_in)
        scale_bias: bool = False,  # True: pytorch_GAN_zoo's (conv(x, W) + b) * c
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.padding = padding
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.scale_bias = scale_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_bias:
            return F.conv2d(x, self.weight, self.bias, padding=self.padding) * self.scale
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out, inp, k, _ = self.weight.shape
        return f"{inp}, {out}, kernel_size={k}, padding={self.padding}, scale={self.scale:.4g}, " + (
            f"scale_bias={self.scale_bias}"
        )


class EqualizedLinear(nn.Module):
    """``(B, in_features) -> (B, out_features)`` linear layer with run-time He scaling."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        gain: float = SQRT2,  # He's gain; c = gain / sqrt(in_features)
        scale_bias: bool = False,  # True: pytorch_GAN_zoo's (x W^T + b) * c
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)
        self.scale_bias = scale_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_bias:
            return F.linear(x, self.weight, self.bias) * self.scale
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        out, inp = self.weight.shape
        return f"{inp}, {out}, scale={self.scale:.4g}, scale_bias={self.scale_bias}"


class PixelNorm(nn.Module):
    """``x * rsqrt(mean_c(x^2) + eps)`` over dim 1: each pixel's feature vector (or a latent) to unit RMS."""

    def __init__(self, *, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (x.square().mean(dim=1, keepdim=True) + self.eps).rsqrt()


class MinibatchStdDev(nn.Module):
    """Appends one channel: the standard deviation of the features across a group of samples.

    ``(B, C, H, W) -> (B, C + 1, H, W)``. Samples are split into groups of ``min(B, group_size)`` consecutive
    samples (the whole batch when ``B`` is not divisible, as in pytorch_GAN_zoo); per group, the standard
    deviation ``sqrt(var + eps)`` of each feature over the group is averaged over ``C, H, W`` into one scalar,
    broadcast to every sample and pixel of the group. ``unbiased=True`` is the zoo's ``torch.var``; NVIDIA's
    reference uses the biased variance. A group of one sample gives zeros.
    """

    mixes_samples = True  # a sample's output depends on the others in its group (see Discriminator.batch_independent)

    def __init__(self, *, group_size: int = 4, unbiased: bool = False, eps: float = 1e-8) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size, self.unbiased, self.eps = group_size, unbiased, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(b, self.group_size)
        if b % g:
            g = b
        if g == 1:
            return torch.cat([x, x.new_zeros(b, 1, h, w)], dim=1)
        groups = x.reshape(b // g, g, c, h, w)
        std = (groups.var(dim=1, unbiased=self.unbiased) + self.eps).sqrt()  # (B/g, C, H, W)
        stat = std.mean(dim=(1, 2, 3)).repeat_interleave(g)  # (B,)
        return torch.cat([x, stat.reshape(b, 1, 1, 1).expand(b, 1, h, w)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, unbiased={self.unbiased}"


def upscale2d(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling by ``factor``: ``(B, C, H, W) -> (B, C, H/factor, W/factor)``."""
    return F.avg_pool2d(x, factor) if factor > 1 else x


__all__ = ["EqualizedConv2d", "EqualizedLinear", "MinibatchStdDev", "PixelNorm", "downscale2d", "upscale2d"]
