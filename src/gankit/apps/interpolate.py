"""``gankit interpolate``: latent walks, linear (lerp) and spherical (slerp) interpolation between seeded endpoints.

The seed tutorial's walk is ``z = (1 - lam) * z1 + lam * z2`` for ``lam`` in ``[0, 1)``, each point rendered
by the generator: :func:`lerp` with ``endpoint=False`` steps. Spherical interpolation keeps the norm of
Gaussian latents closer to that of real samples (a straight line between two latents passes nearer the
origin, where a generator sees few latents during training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gankit.apps.outputs import claim_outputs, save_npz, targets_for
from gankit.errors import ParameterError
from gankit.images import save_grid

Mode = Literal["lerp", "slerp"]
MODES: tuple[str, ...] = ("lerp", "slerp")

MAX_WALK_IMAGES = 10_000  # a strip is made in memory and drawn as one picture, like a sample grid


def walk_positions(steps: int, *, endpoint: bool = True) -> torch.Tensor:
    """``(steps,)`` float64 positions in [0, 1] (``endpoint=False``: ``[0, 1)``, the tutorial's ``arange``)."""
    if steps < 1:
        raise ParameterError("steps", f"must be >= 1 for a walk, got {steps}")
    if endpoint:
        return torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    return torch.arange(steps, dtype=torch.float64) / steps


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(1 - t) * a + t * b``: ``a``, ``b`` ``(B, D)``, ``t`` ``(T,)`` -> ``(B, T, D)`` in ``a``'s dtype."""
    t64 = t.to(torch.float64)[None, :, None]
    out = (1.0 - t64) * a.to(torch.float64)[:, None, :] + t64 * b.to(torch.float64)[:, None, :]
    return out.to(a.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, *, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake), the usual GAN slerp: ``sin((1 - t) w) / sin(w) * a +
    sin(t w) / sin(w) * b`` with ``w`` the angle between ``a`` and ``b``. ``a``, ``b`` ``(B, D)``, ``t``
    ``(T,)`` -> ``(B, T, D)``; (anti)parallel pairs fall back to :func:`lerp`."""
    a64, b64, t64 = a.to(torch.float64), b.to(torch.float64), t.to(torch.float64)
    cos = (a64 / a64.norm(dim=1, keepdim=True) * b64 / b64.norm(dim=1, keepdim=True)).sum(1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)  # (B,)
    sin = torch.sin(omega)
    safe = sin.abs() > eps
    denom = torch.where(safe, sin, torch.ones_like(sin))[:, None]
    w_a = torch.sin((1.0 - t64)[None, :] * omega[:, None]) / denom  # (B, T)
    w_b = torch.sin(t64[None, :] * omega[:, None]) / denom
    out = w_a[..., None] * a64[:, None, :] + w_b[..., None] * b64[:, None, :]
    out = torch.where(safe[:, None, None], out, lerp(a64, b64, t64))
    return out.to(a.dtype)


def interpolate(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, mode: str = "lerp") -> torch.Tensor:
    """:func:`lerp` or :func:`slerp` by name: ``(B, D), (B, D), (T,) -> (B, T, D)``."""
    if mode == "lerp":
        return lerp(a, b, t)
    if mode == "slerp":
        return slerp(a, b, t)
    raise ParameterError("mode", f"{mode!r} is unknown; choose lerp or slerp")


@dataclass
class LatentWalk:
    """``images (rows, steps, C, H, W)`` raw generator outputs (never clamped), ``latents (rows, steps, z_dim)``,
    ``positions (steps,)`` and ``labels (rows,)`` (-1 when unconditional)."""

    images: torch.Tensor
    latents: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def latent_walks(
    generator,
    *,
    rows: int = 4,
    steps: int = 8,
    mode: str = "lerp",
    seed: int = 0,
    class_id: int | None = None,
    truncation: float | None = None,
    endpoint: bool = True,
    batch_size: int = 64,
) -> LatentWalk:
    """``rows`` walks of ``steps`` images between seeded endpoint latents (the class fixed along a walk).

    Endpoints come from ``generator.sample_latents(2 * rows, seed, truncation)``: row ``i`` walks from latent
    ``2i`` to ``2i + 1``. Conditional models use ``class_id`` for every row, else a seeded class per row.
    """
    if rows < 1:
        raise ParameterError("rows", f"must be >= 1, got {rows}")
    if mode not in MODES:
        raise ParameterError("mode", f"{mode!r} is unknown; choose lerp or slerp")
    k = generator.num_classes
    generator.check_class_id(class_id)
    g = torch.Generator().manual_seed(seed)
    ends = generator.sample_latents(2 * rows, generator=g, truncation=truncation).cpu()
    positions = walk_positions(steps, endpoint=endpoint)
    latents = interpolate(ends[0::2], ends[1::2], positions, mode)  # (rows, steps, z_dim)
    drawn = generator.class_labels(rows, class_id=class_id, generator=g)
    labels = torch.full((rows,), -1, dtype=torch.long) if drawn is None else drawn
    flat_z = latents.reshape(rows * steps, -1)
    flat_y = labels.repeat_interleave(steps)
    chunks = []
    for start in range(0, len(flat_z), batch_size):
        z = flat_z[start : start + batch_size].to(generator.device)
        y = flat_y[start : start + batch_size].to(generator.device) if k else None
        chunks.append(generator(z, y).float().cpu())
    images = torch.cat(chunks)
    return LatentWalk(images.reshape(rows, steps, *images.shape[1:]), latents, positions, labels)


def write_walks(generator, out: str | Path, *, overwrite: bool = False, **walk) -> list[Path]:
    """:func:`latent_walks` (``walk`` are its arguments) into ``OUT.png`` (one row per walk, clamped to [-1, 1]
    for display), ``OUT.npz`` (raw images ``(rows, steps, C, H, W)``, latents, positions, labels) or both."""
    rows, steps = walk.get("rows", 4), walk.get("steps", 8)
    return write_strip(generator, out, rows, steps, lambda: latent_walks(generator, **walk), overwrite=overwrite)


def write_strip(generator, out: str | Path, rows: int, steps: int, make: Callable[[], LatentWalk], *,
                overwrite: bool = False) -> list[Path]:
    """The strip ``make()`` returns (``rows`` x ``steps`` images: walks or edits) into ``OUT.png``, ``OUT.npz`` or
    both, the outputs checked and claimed before any work."""
    if str(out).endswith(("/", "\\")) or Path(out).is_dir():
        raise ParameterError("out", f"{out} is a folder; give STRIP.png, FILE.npz, or a name OUT for both")
    if rows * steps > MAX_WALK_IMAGES:
        raise ParameterError("rows", f"{rows} walks of {steps} images are {rows * steps} images, more than one strip "
                             f"holds (at most {MAX_WALK_IMAGES}: they are made in memory); lower --rows or --steps")
    targets = targets_for(out)
    with claim_outputs(targets.values(), overwrite=overwrite):
        _write_walks(generator, targets, make())
    return list(targets.values())


@torch.no_grad()
def edit_strips(
    generator,
    vector: torch.Tensor,
    *,
    strength: tuple[float, float] = (-3.0, 3.0),
    rows: int = 4,
    steps: int = 7,
    seed: int = 0,
    class_id: int | None = None,
    truncation: float | None = None,
    projection=None,
) -> LatentWalk:
    """Edits along a latent direction ``vector`` ``(z_dim,)``: row ``i`` is ``z_i + s * vector`` for ``steps``
    strengths ``s`` evenly from ``strength[0]`` to ``strength[1]`` (``positions``). The rows are seeded latents
    (``generator.sample_latents(rows, seed)``; the class: ``class_id``, else seeded per row), or, with a
    :class:`~gankit.apps.project.ProjectionFile` ``projection``, its projected images (rendered as it renders
    them: feature maps and weight deltas of the other modes included)."""
    if rows < 1:
        raise ParameterError("rows", f"must be >= 1, got {rows}")
    positions = torch.linspace(strength[0], strength[1], steps, dtype=torch.float64)
    if projection is not None:
        base, labels = projection.latents.float(), projection.classes.long()
    else:
        generator.check_class_id(class_id)
        g = torch.Generator().manual_seed(seed)
        base = generator.sample_latents(rows, generator=g, truncation=truncation).cpu()
        drawn = generator.class_labels(rows, class_id=class_id, generator=g)
        labels = torch.full((rows,), -1, dtype=torch.long) if drawn is None else drawn
    latents = (base.double()[:, None, :] + positions[None, :, None] * vector.double().cpu()[None, None, :]).float()
    images = []
    for i in range(len(base)):
        if projection is not None:
            images.append(projection.render(generator, i, latents[i]).float().cpu())
        else:
            y = labels[i].repeat(steps).to(generator.device) if generator.num_classes else None
            images.append(generator(latents[i].to(generator.device), y).float().cpu())
    return LatentWalk(torch.stack(images), latents, positions, labels)


@torch.no_grad()
def projected_walks(generator, projection, *, steps: int = 8, mode: str = "lerp") -> LatentWalk:
    """Walks between consecutive projected images of a :class:`~gankit.apps.project.ProjectionFile` (row ``i``:
    image ``i`` to ``i + 1``; at least two images). The first half of a walk is rendered as image ``i`` is (its
    class, feature map or weight delta), the second half as image ``i + 1``: both ends are the reconstructions."""
    n = len(projection)
    if n < 2:
        raise ParameterError("latents", "a walk between projected images needs a file of at least two images")
    positions = walk_positions(steps)
    latents = interpolate(projection.latents[:-1].float(), projection.latents[1:].float(), positions, mode)
    rows = []
    for i in range(n - 1):
        first = positions < 0.5
        parts = [projection.render(generator, i, latents[i][first]).float().cpu() if first.any() else None,
                 projection.render(generator, i + 1, latents[i][~first]).float().cpu() if (~first).any() else None]
        rows.append(torch.cat([p for p in parts if p is not None]))
    return LatentWalk(torch.stack(rows), latents, positions, projection.classes[:-1].long())


def _write_walks(generator, targets: dict[str, Path], result: LatentWalk) -> None:
    if "png" in targets:
        labels = [str(int(c)) for c in result.labels] if generator.num_classes else None
        save_grid(result.images.flatten(0, 1), targets["png"], result.images.shape[1], row_labels=labels)
    if "npz" in targets:
        save_npz(
            targets["npz"],
            images=result.images.numpy().astype(np.float32),  # raw: never clamped
            latents=result.latents.numpy().astype(np.float32),
            positions=result.positions.numpy(),
            labels=result.labels.numpy().astype(np.int64),
        )


__all__ = ["MODES", "LatentWalk", "edit_strips", "interpolate", "latent_walks", "lerp", "projected_walks", "slerp",
           "walk_positions", "write_strip", "write_walks"]
