"""The interface every augmentation kind offers the trainer, and the random-draw helpers they share.

An :class:`Augment` maps a batch ``(B, C, H, W)`` to a batch of the same shape. The base class is the
identity (kind ``"none"``) so the trainer can call every hook unconditionally instead of branching on the kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class Augment:
    """Identity augmentation; subclasses override what they need.

    - ``aug(x, generator=None)``: ``x`` is ``(B, C, H, W)``; returns a tensor of the same shape. All randomness comes
      from ``generator`` (or torch's global RNG when it is None), so a run restored with the same generator state
      draws the same augmentations.
    - ``observe(real_logits)``: D's logits on (augmented) reals, for adaptive kinds; a no-op here.
    - ``step(batch_size)``: once per training step, after the D update; adaptive kinds adjust ``p`` here.
    - ``p``: the current augmentation probability (0 for kinds without one); ``r_t``: the last overfitting statistic
      (None for kinds without one, and for ADA before its first update).
    - ``state_dict()`` / ``load_state_dict()``: plain Python numbers only (safe for ``torch.load(weights_only=True)``).
    """

    kind: str = "none"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x

    def observe(self, real_logits: torch.Tensor) -> None:
        return None

    def step(self, batch_size: int | None = None) -> None:
        return None

    @property
    def p(self) -> float:
        return 0.0

    @property
    def r_t(self) -> float | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# Random draws happen on the generator's device (a CPU generator cannot fill a CUDA tensor) and then move to the
# data's device and dtype: the same generator gives the same augmentations whatever device the images live on.


def _draw_device(like: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else like.device


def uniform(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) of ``shape`` in float32 on ``like``'s device."""
    out = torch.rand(tuple(shape), generator=generator, device=_draw_device(like, generator))
    return out.to(like.device)


def normal(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) of ``shape`` in float32 on ``like``'s device."""
    out = torch.randn(tuple(shape), generator=generator, device=_draw_device(like, generator))
    return out.to(like.device)


def integers(
    low: int, high: int, shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Integers uniform in ``[low, high)`` (int64) of ``shape`` on ``like``'s device."""
    out = torch.randint(low, high, tuple(shape), generator=generator, device=_draw_device(like, generator))
    return out.to(like.device)


def check_images(x: torch.Tensor, who: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{who} expects images of shape (B, C, H, W), got {tuple(x.shape)}")
