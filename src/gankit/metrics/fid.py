"""FID, KID and the Inception score from precomputed features.

gankit extracts features once (real ones are cached). FID and KID hand them to torchmetrics' metrics through a
pass-through ``feature=`` module, so those formulas are torchmetrics' own and the feature network is gankit's.
The Inception score is computed here as torch-fidelity computes it (torchmetrics' differs in its shuffling, its
split sizes and its standard deviation, which is the sample one, 5% larger with 10 splits).
The metric classes are imported from their submodules: without torch-fidelity, ``torchmetrics.image`` does not
export them (and torch-fidelity / torchvision must not be installed next to a CPU-only torch).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn


class _Precomputed(nn.Module):
    """The identity, posing as torchmetrics' feature network: ``update`` receives features, not images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between feature sets ``real (N, d)`` and ``fake (M, d)`` (Gaussian fit, float64; N, M >= 2).

    ``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), reset_real_features=True)
    metric.set_dtype(torch.float64)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return max(float(metric.compute()), 0.0)  # tiny negative values are round-off of a zero distance


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID ``(mean, std)`` over ``subsets`` random subsets of ``min(subset_size, N, M)`` features each.

    Unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3`` (Binkowski et al. 2018). Values can be
    slightly negative when the two sets come from one distribution.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits: torch.Tensor, *, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """IS ``(mean, std)`` over ``splits`` parts of ``logits (N, k)``: ``exp(E_x KL(p(y|x) || p(y)))``.

    torch-fidelity's computation: rows shuffled by ``np.random.RandomState(seed).permutation(N)``, part ``i`` is
    rows ``[N i / splits, N (i + 1) / splits)``, float64 throughout, and the std is the population one (numpy's
    ``np.std``, divisor ``splits``), so with torch-fidelity's seed (2020) the numbers are the same. 1 when every
    prediction is the same (or uniform); ``k`` for confident predictions spread evenly over ``k`` classes. The std
    is 0 with one split.
    """
    n = len(logits)
    splits = max(1, min(splits, n))
    order = torch.from_numpy(np.random.RandomState(seed).permutation(n))
    x = logits.detach().cpu().double()[order]
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        p_part, log_q = p[part], p[part].mean(dim=0, keepdim=True).log()
        scores.append(float((p_part * (log_p[part] - log_q)).sum(dim=1).mean().exp()))
    mean, std = float(np.mean(scores)), float(np.std(scores))
    return mean, (std if math.isfinite(std) else 0.0)
