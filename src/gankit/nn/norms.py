"""Class-conditional normalisation."""

from __future__ import annotations

import torch
from torch import nn


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine, followed by a per-class gain and bias.

    ``y = gain[c] * BN(x) + bias[c]`` with ``gain`` initialised to 1 and ``bias`` to 0, so at
    initialisation it equals plain batch norm. Shapes: ``x`` ``(B, C, H, W)``, ``labels`` ``(B,)`` int64.
    """

    def __init__(self, num_features: int, num_classes: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        # in h's dtype: under bf16 autocast the float32 tables would promote the whole activation to float32 (a
        # float32 copy of every map, cast back by the next convolution); a no-op in float32
        gain = self.gain(labels)[:, :, None, None].to(h.dtype)
        bias = self.bias(labels)[:, :, None, None].to(h.dtype)
        return gain * h + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"
