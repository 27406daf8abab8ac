"""Resampling folded into the 3x3 convolution next to it: the same function with less arithmetic.

The ResNet blocks of SN-GAN, SAGAN-lineage and BigGAN generators upsample by nearest neighbour and then apply a
3x3 convolution; their discriminators apply a 3x3 convolution and then a 2x2 average pool. Both pairs are one
linear map each, and that map is a cheaper convolution:

- nearest x2 then conv3x3 (padding 1) is a transposed convolution with stride 2, padding 1 and a 4x4 kernel whose
  rows and columns are sums of the 3x3 kernel's (each output pixel of the upsampled map sees only 2x2 distinct
  input pixels): 16 multiply-adds per input pixel instead of 36, a 2.25x cut;
- conv3x3 (padding 1) then avg-pool 2 is a convolution with stride 2, padding 1 and a 4x4 kernel (the 3x3 kernel
  averaged over the four pooled positions): 16 multiply-adds per output pixel instead of 36;
- the shortcuts' 1x1 convolutions commute with both resamplings, so they run on the smaller map: after the
  upsampling is moved to their output (:func:`upsample_conv1x1`), before it the pooling is moved to their input
  (:func:`conv1x1_avgpool`), 4x fewer multiply-adds each.

The folded kernels are built from the layer's weight on every call (so spectral norm, read once through
``conv.weight``, and gradients go through them; the cost is a few adds on the weight), and the results equal the
two-step form up to float rounding (summation order). The weight's gradient is the one the two-step form gives.

:func:`two_step_resampling` switches all four back to the two-step form, for counting a model's FLOPs as the network
defines them (``gankit bench``'s GFLOP/s are that work per second). ``benchmarks/peer_step.py``
measures what this buys on a whole training step; ``tests/nn/test_resample.py`` checks both against the two-step
reference, forward and backward, in fp32 and under bf16 autocast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gankit.device import is_channels_last

_TWO_STEP = False  # set by two_step_resampling()


@contextlib.contextmanager
def two_step_resampling() -> Iterator[None]:
    """Within this context :func:`upsample_conv3x3` and :func:`conv3x3_avgpool` run the two-step form they fold
    (nearest x2 then the convolution; the convolution then the pool): for counting the FLOPs of the network as
    it is defined, not of the cheaper evaluation, and for checking a model against the plain formulation."""
    global _TWO_STEP
    previous, _TWO_STEP = _TWO_STEP, True
    try:
        yield
    finally:
        _TWO_STEP = previous


def _check_plain(conv: nn.Conv2d, kernel: int) -> None:
    """The folds hold for a plain ``kernel`` x ``kernel`` convolution with "same" padding (3x3 with padding 1,
    or 1x1 without): stride 1, no dilation or groups, zero padding."""
    pad = kernel // 2
    plain = (
        conv.kernel_size == (kernel, kernel)
        and conv.stride == (1, 1)
        and conv.padding == (pad, pad)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and (pad == 0 or conv.padding_mode == "zeros")
    )
    if not plain:
        padding = f"padding {pad}" if pad else "no padding"
        shape = f"{kernel}x{kernel} convolution with stride 1 and {padding}"
        raise ValueError(f"resampling folds need a {shape}, got {conv}")


def _like(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``kernel`` in the memory format of ``x``: oneDNN reorders a weight whose format differs on every call."""
    if is_channels_last(x):
        return kernel.contiguous(memory_format=torch.channels_last)
    return kernel.contiguous()


def _upsample_taps(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The 3 taps of ``w`` along ``dim`` -> the 4 taps of the stride-2 transposed convolution that equals
    nearest x2 then the 3-tap convolution: output row ``2i`` reads input rows ``i-1`` (tap 0) and ``i`` (taps
    1 + 2); row ``2i+1`` reads ``i`` (taps 0 + 1) and ``i+1`` (tap 2). A transposed convolution with padding 1
    applies its tap ``k`` from input row ``i`` to output row ``2i - 1 + k``, hence this order."""
    t0, t1, t2 = w.unbind(dim)
    return torch.stack((t2, t1 + t2, t0 + t1, t0), dim)


def _pool_taps(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The 3 taps of ``w`` along ``dim`` -> the 4 taps of the stride-2 convolution that equals the 3-tap
    convolution then a 2-wide average: output row ``i`` averages rows ``2i`` and ``2i+1``, which read input
    rows ``2i-1 .. 2i+2``."""
    t0, t1, t2 = w.unbind(dim)
    return torch.stack((t0, t0 + t1, t1 + t2, t2), dim) * 0.5


def upsample_conv3x3(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3, padding-1 ``conv``, as one stride-2
    transposed convolution: ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``."""
    _check_plain(conv, 3)
    if _TWO_STEP:
        return conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    w = conv.weight  # (C_out, C_in, 3, 3); read once: a spectral-norm parametrization computes it here
    # elementwise folds, outside autocast's reach: the kernel is summed in the weight's precision and rounded
    # once, when the transposed convolution casts it, as the two-step form rounds the 3x3 weight
    kernel = _upsample_taps(_upsample_taps(w, 2), 3).transpose(0, 1)  # (C_in, C_out, 4, 4)
    return F.conv_transpose2d(x, _like(kernel, x), conv.bias, stride=2, padding=1)


def conv3x3_avgpool(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``avg_pool2d(conv(x), 2)`` for a 3x3, padding-1 ``conv``, as one stride-2 4x4 convolution:
    ``(B, C_in, H, W) -> (B, C_out, H // 2, W // 2)``."""
    _check_plain(conv, 3)
    if _TWO_STEP:
        return F.avg_pool2d(conv(x), 2)
    w = conv.weight  # (C_out, C_in, 3, 3)
    kernel = _pool_taps(_pool_taps(w, 2), 3)  # (C_out, C_in, 4, 4)
    return F.conv2d(x, _like(kernel, x), conv.bias, stride=2, padding=1)


def upsample_conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(interpolate(x, scale_factor=2, mode="nearest"))`` for a 1x1 ``conv``, evaluated as the
    upsampling of ``conv(x)`` (a per-pixel map commutes with copying pixels): 4x fewer multiply-adds.
    ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``."""
    _check_plain(conv, 1)
    if _TWO_STEP:
        return conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    return F.interpolate(conv(x), scale_factor=2, mode="nearest")


def conv1x1_avgpool(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``avg_pool2d(conv(x), 2)`` for a 1x1 ``conv``, evaluated as ``conv`` of the pooled ``x`` (a linear
    per-pixel map commutes with averaging pixels): 4x fewer multiply-adds. ``(B, C_in, H, W) -> (B, C_out, H // 2,
    W // 2)``."""
    _check_plain(conv, 1)
    if _TWO_STEP:
        return F.avg_pool2d(conv(x), 2)
    return conv(F.avg_pool2d(x, 2))
