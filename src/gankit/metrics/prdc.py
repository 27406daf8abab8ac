"""Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al. 2020).

Both estimate the real and generated manifolds in feature space with k-nearest-neighbour balls: around each
real feature ``x_i`` the ball of radius ``r_i`` = distance to its k-th nearest other real feature (likewise
for generated features ``y_j``).

- precision: share of generated samples inside some real ball (fidelity: "do samples look real?");
- recall: share of real samples inside some generated ball (diversity: "is every mode produced?");
- density: ``1 / (k M) * sum_j #{i : y_j in ball_i}``, how many real balls hold each sample on average,
  divided by k; ~1 for matching distributions, above 1 when samples crowd dense real regions. Less fooled by
  real outliers than precision;
- coverage: share of real balls that hold at least one generated sample; robust to generated outliers.

Precision and recall use k = 3 (Kynkaanniemi et al.), density and coverage k = 5 (Naeem et al.'s
recommendation). The values depend on the sample counts: gankit uses equally many real and generated samples.
"""

from __future__ import annotations

import torch

PR_K = 3
DC_K = 5


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a.double(), b.double())


def knn_radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """``(N,)`` distance of each row of ``x (N, d)`` to its k-th nearest other row."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {len(x)}")
    radii = []
    for block in x.split(chunk):
        d = _pairwise(block, x)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # column 0 is the point itself
    return torch.cat(radii)


def _inside_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024):
    """For each point: how many balls ``(centres, radii)`` hold it; for each ball: whether any point is in it."""
    counts = torch.zeros(len(points), dtype=torch.long)
    any_in = torch.zeros(len(centres), dtype=torch.bool)
    for start in range(0, len(points), chunk):
        inside = _pairwise(points[start : start + chunk], centres) <= radii[None, :]
        counts[start : start + chunk] = inside.sum(1).cpu()
        any_in |= inside.any(0).cpu()
    return counts, any_in


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall of ``fake (M, d)`` against ``real (N, d)`` with k-NN balls."""
    real_counts, _ = _inside_counts(real, fake, knn_radii(fake, k))
    fake_counts, _ = _inside_counts(fake, real, knn_radii(real, k))
    return float((fake_counts > 0).double().mean()), float((real_counts > 0).double().mean())


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = DC_K) -> tuple[float, float]:
    """Density and coverage of ``fake (M, d)`` against ``real (N, d)`` (balls around real samples only)."""
    counts, covered = _inside_counts(fake, real, knn_radii(real, k))
    return float(counts.double().sum() / (k * len(fake))), float(covered.double().mean())
