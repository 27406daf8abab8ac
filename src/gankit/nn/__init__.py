"""Layers: self-attention, spectral-norm helpers, conditional norms, Progressive GAN layers."""

from gankit.nn.attention import SelfAttention2d, blocked_attention
from gankit.nn.equalized import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm
from gankit.nn.norms import ConditionalBatchNorm2d
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
    "fold_spectral_norm",
    "has_spectral_norm",
    "maybe_spectral_norm",
    "spectral_norm_all",
    "weight_matrix",
]
