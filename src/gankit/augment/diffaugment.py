"""DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable transform T is applied to every image D sees, real or fake, in the D step and in the
G step: D(T(x)) instead of D(x). Because T is differentiable, G's gradients flow through it; because it is applied to
fakes too, G is not pushed to produce augmented-looking images.

Ops and parameter ranges follow the paper's PyTorch code exactly (images ``(B, C, H, W)`` in [-1, 1], every draw per
sample, every op always applied, no probability gate):

- ``color``: brightness ``x + b``, b ~ U(-0.5, 0.5); saturation ``(x - m) * s + m`` with m the per-pixel channel mean,
  s ~ U(0, 2) (skipped for 1-channel images, where it would be the identity anyway); contrast ``(x - m) * c + m``
  with m the per-image mean over (C, H, W), c ~ U(0.5, 1.5). In that order.
- ``translation``: an integer shift per sample, independent per axis, in ``[-s, s]`` with ``s = int(H * 0.125 + 0.5)``
  rows (``int(W * 0.125 + 0.5)`` columns); vacated pixels become 0 (mid-grey), as the paper's zero padding does.
- ``cutout``: a zero rectangle of ``int(H * 0.5 + 0.5)`` x ``int(W * 0.5 + 0.5)`` whose centre is uniform over the
  image, clipped at the borders (so near an edge less area is cut).

Every op is exposed twice: as a function of explicit per-sample parameters (``brightness``, ``saturation``,
``contrast``, ``translate``, ``cutout``), and as a random wrapper (``rand_*``) that draws them from a
``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gankit.augment.base import Augment, check_images, integers, uniform
from gankit.errors import UserError

DIFFAUGMENT_OPS = ("color", "translation", "cutout")
DEFAULT_POLICY = "color,translation,cutout"
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``, in the given order (ops run in that order;
    repeats are allowed, as in the paper's code). Raises :class:`UserError` for an unknown op or an empty policy."""
    items = text.split(",") if isinstance(text, str) else list(text)
    ops = tuple(str(item).strip() for item in items if str(item).strip())
    valid = ", ".join(DIFFAUGMENT_OPS)
    for op in ops:
        if op not in DIFFAUGMENT_OPS:
            raise UserError(f"unknown DiffAugment op {op!r} in policy {text!r}; valid ops: {valid}")
    if not ops:
        raise UserError(f"empty DiffAugment policy {text!r}; give a comma list of: {valid} (or augment kind 'none')")
    return ops


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A length-B vector (or a Python number) as ``(B, 1, 1, 1)`` in ``x``'s dtype and device, to broadcast."""
    values = torch.as_tensor(values, device=x.device, dtype=x.dtype)
    return values.reshape(-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------- explicit parameters


def brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x + shift[b]`` for each sample b; ``x`` is ``(B, C, H, W)``, ``shift`` is ``(B,)``."""
    return x + _per_sample(shift, x)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by ``factor[b]`` (0: grey, 1: unchanged)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its own mean over (C, H, W) by ``factor[b]``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def translate(x: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor) -> torch.Tensor:
    """Move sample b's content ``shift_y[b]`` rows down and ``shift_x[b]`` columns right (integers, negative moves
    up/left); pixels with no source become 0. ``out[b, :, i, j] = x[b, :, i - shift_y[b], j - shift_x[b]]``.

    Implemented as two gathers with clamped indices plus a validity mask, so it is differentiable w.r.t. ``x``.
    """
    check_images(x, "translate")
    b, c, h, w = x.shape
    shift_y = torch.as_tensor(shift_y, device=x.device).long().reshape(b, 1)
    shift_x = torch.as_tensor(shift_x, device=x.device).long().reshape(b, 1)
    rows = torch.arange(h, device=x.device).reshape(1, h) - shift_y  # (B, H): source row of each output row
    cols = torch.arange(w, device=x.device).reshape(1, w) - shift_x  # (B, W)
    valid = ((rows >= 0) & (rows < h)).reshape(b, 1, h, 1) & ((cols >= 0) & (cols < w)).reshape(b, 1, 1, w)
    out = x.gather(2, rows.clamp(0, h - 1).reshape(b, 1, h, 1).expand(b, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1).reshape(b, 1, 1, w).expand(b, c, h, w))
    return torch.where(valid, out, torch.zeros((), dtype=x.dtype, device=x.device))


def cutout(x: torch.Tensor, center_y: torch.Tensor, center_x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero, in every channel, rows ``[cy - h // 2, cy - h // 2 + h)`` x columns ``[cx - w // 2, cx - w // 2 + w)``
    of sample b (``cy = center_y[b]``, ``cx = center_x[b]``, ``(h, w) = size``), clipped to the image."""
    check_images(x, "cutout")
    b, _, height, width = x.shape
    cut_h, cut_w = size
    top = torch.as_tensor(center_y, device=x.device).long().reshape(b, 1) - cut_h // 2
    left = torch.as_tensor(center_x, device=x.device).long().reshape(b, 1) - cut_w // 2
    rows = torch.arange(height, device=x.device).reshape(1, height)
    cols = torch.arange(width, device=x.device).reshape(1, width)
    in_rows = ((rows >= top) & (rows < top + cut_h)).reshape(b, 1, height, 1)
    in_cols = ((cols >= left) & (cols < left + cut_w)).reshape(b, 1, 1, width)
    return torch.where(in_rows & in_cols, torch.zeros((), dtype=x.dtype, device=x.device), x)


def translation_range(size: int, ratio: float = TRANSLATION_RATIO) -> int:
    """The largest shift along an axis of ``size`` pixels: ``int(size * ratio + 0.5)`` (4 at 32, 8 at 64)."""
    return int(size * ratio + 0.5)


def cutout_size(height: int, width: int, ratio: float = CUTOUT_RATIO) -> tuple[int, int]:
    """The cutout rectangle: ``(int(height * ratio + 0.5), int(width * ratio + 0.5))``."""
    return int(height * ratio + 0.5), int(width * ratio + 0.5)


# ----------------------------------------------------------------------------------------------- random wrappers


def rand_brightness(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness shift ~ U(-0.5, 0.5) per sample."""
    return brightness(x, uniform((x.shape[0],), x, generator) - 0.5)


def rand_saturation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Saturation factor ~ U(0, 2) per sample."""
    return saturation(x, uniform((x.shape[0],), x, generator) * 2)


def rand_contrast(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Contrast factor ~ U(0.5, 1.5) per sample."""
    return contrast(x, uniform((x.shape[0],), x, generator) + 0.5)


def rand_color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The ``color`` policy: brightness, saturation (only with more than one channel), contrast."""
    x = rand_brightness(x, generator)
    if x.shape[1] > 1:  # a 1-channel image is its own channel mean: saturation would be the identity
        x = rand_saturation(x, generator)
    return rand_contrast(x, generator)


def rand_translation(
    x: torch.Tensor, generator: torch.Generator | None = None, *, ratio: float = TRANSLATION_RATIO
) -> torch.Tensor:
    """The ``translation`` policy: integer shifts uniform in ``[-s, s]`` per axis and sample (s from
    :func:`translation_range`)."""
    check_images(x, "rand_translation")
    b, _, h, w = x.shape
    sy, sx = translation_range(h, ratio), translation_range(w, ratio)
    shift_y = integers(-sy, sy + 1, (b,), x, generator)
    shift_x = integers(-sx, sx + 1, (b,), x, generator)
    return translate(x, shift_y, shift_x)


def rand_cutout(
    x: torch.Tensor, generator: torch.Generator | None = None, *, ratio: float = CUTOUT_RATIO
) -> torch.Tensor:
    """The ``cutout`` policy: one zero rectangle of :func:`cutout_size` per sample.

    The centre row is uniform in ``[0, H + (1 - h % 2))`` as in the paper's code: for an even cut height that admits
    the centre ``H``, which makes the cut's coverage symmetric between the top and bottom edges (likewise columns).
    """
    check_images(x, "rand_cutout")
    b, _, h, w = x.shape
    cut_h, cut_w = cutout_size(h, w, ratio)
    center_y = integers(0, h + (1 - cut_h % 2), (b,), x, generator)
    center_x = integers(0, w + (1 - cut_w % 2), (b,), x, generator)
    return cutout(x, center_y, center_x, (cut_h, cut_w))


_POLICY_FNS = {"color": rand_color, "translation": rand_translation, "cutout": rand_cutout}


def diff_augment(
    x: torch.Tensor, policy: str | Sequence[str] = DEFAULT_POLICY, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the ops of ``policy`` in order to ``x`` ``(B, C, H, W)``; same shape out, differentiable w.r.t. ``x``."""
    check_images(x, "diff_augment")
    for op in parse_policy(policy):
        x = _POLICY_FNS[op](x, generator=generator)
    return x


class DiffAugment(Augment):
    """DiffAugment as an :class:`Augment`: no state, no probability (``p`` is 0), the same policy on every call."""

    kind = "diffaugment"

    def __init__(self, policy: str | Sequence[str] = DEFAULT_POLICY):
        self.policy = parse_policy(policy)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return diff_augment(x, self.policy, generator)

    def __repr__(self) -> str:
        return f"DiffAugment(policy={','.join(self.policy)!r})"
