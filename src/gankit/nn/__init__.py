"""Layers: self-attention, spectral-norm helpers, conditional norms, Progressive GAN layers."""

from gankit.nn.attention import SelfAttention2d, blocked_attention
from gankit.nn.equalized import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm
from gankit.nn.norms import ConditionalBatchNorm2d
from gankit.nn.resample import conv1x1_avgpool, conv3x3_avgpool, upsample_conv1x1, upsample_conv3x3
from gankit.nn.spectral import (
    fold_spectral_norm,
    has_spectral_norm,
    maybe_spectral_norm,
    spectral_norm_all,
    weight_matrix,
)

__all__ = [
    "ConditionalBatchNorm2d",
    "EqualizedConv2d",
    "EqualizedLinear",
    "MinibatchStdDev",
    "PixelNorm",
    "SelfAttention2d",
    "blocked_attention",
    "conv1x1_avgpool",
    "conv3x3_avgpool",
    "fold_spectral_norm",
    "has_spectral_norm",
    "maybe_spectral_norm",
    "spectral_norm_all",
    "upsample_conv1x1",
    "upsample_conv3x3",
    "weight_matrix",
]
