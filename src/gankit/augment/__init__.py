"""Differentiable augmentation of D's inputs for data-efficient GAN training.

Layer 3: imports only torch, the standard library and :mod:`gankit.errors`.

The trainer builds one :class:`Augment` with :func:`build_augment` and, per training step::

    d_real = D(aug(real, generator))      # and D(aug(fake, generator)) in the D and G steps: gradients flow through
    aug.observe(d_real)                   # ADA's overfitting statistic; a no-op for the other kinds
    ...
    aug.step(batch_size)                  # once per step: ADA adjusts p every ada_interval steps

and saves ``aug.state_dict()`` in checkpoints. :class:`LeCam` is independent of the kind (a D-loss regulariser).
Images are ``(B, C, H, W)`` in [-1, 1] throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

from gankit.augment.ada import ADA_OPS, AdaAugment, AdaController, AdaPipeline
from gankit.augment.base import Augment
from gankit.augment.diffaugment import DEFAULT_POLICY, DIFFAUGMENT_OPS, DiffAugment, diff_augment, parse_policy
from gankit.augment.lecam import LeCam, lecam_reg
from gankit.errors import UserError

AUGMENT_KINDS = ("none", "diffaugment", "ada")

__all__ = [
    "ADA_OPS",
    "AUGMENT_KINDS",
    "DEFAULT_POLICY",
    "DIFFAUGMENT_OPS",
    "AdaAugment",
    "AdaController",
    "AdaPipeline",
    "Augment",
    "DiffAugment",
    "LeCam",
    "build_augment",
    "diff_augment",
    "lecam_reg",
    "parse_policy",
]


def build_augment(
    kind: str,
    *,
    policy: str | Sequence[str] = DEFAULT_POLICY,
    channels: int,
    ada_target: float = 0.6,
    ada_interval: int = 4,
    ada_kimg: float = 500,
    batch_size: int,
) -> Augment:
    """The augmentation of ``kind`` (one of :data:`AUGMENT_KINDS`) for ``channels``-channel images.

    ``policy`` is used by ``diffaugment`` only, ``ada_*`` and ``batch_size`` (the default for ``step()``) by ``ada``
    only. Raises :class:`UserError` for an unknown kind, an unknown policy op, ``ada_target`` outside (0, 1) (checked
    for every kind, so a bad config fails before ADA is switched on), or a bad ADA interval/kimg/batch size.
    """
    if kind not in AUGMENT_KINDS:
        raise UserError(f"unknown augment kind {kind!r}; valid kinds: {', '.join(AUGMENT_KINDS)}")
    if not 0 < ada_target < 1:
        raise UserError(f"ada_target must be in (0, 1) (stylegan2-ada uses 0.6), got {ada_target}")
    if kind == "diffaugment":
        return DiffAugment(policy)
    if kind == "ada":
        return AdaAugment(
            channels=channels, target=ada_target, interval=ada_interval, kimg=ada_kimg, batch_size=batch_size
        )
    return Augment()
