"""ADA (Karras et al., 2020, "Training Generative Adversarial Networks with Limited Data") in pure PyTorch.

:class:`AdaPipeline` is the ``bgc`` pipe of stylegan2-ada: "blit" (x-flip, 90-degree rotations, integer translation),
"geom" (isotropic scaling, arbitrary rotation, anisotropic scaling, fractional translation) and "color" (brightness,
contrast, luma flip, hue rotation, saturation), each applied per sample with probability ``p`` and with
stylegan2-ada's default strengths. :class:`AdaController` adapts ``p`` from the sign of D's logits on reals.

Differences from stylegan2-ada's ``AugmentPipe``, all for a dependency-free, device-agnostic implementation:

- Geometry is resampled once per sample with ``F.grid_sample`` (bilinear, ``align_corners=False``) and
  ``padding_mode="reflection"``, instead of reflect-padding, 2x upsampling and the ``Hz_geom`` low-pass filter through
  custom ``upfirdn2d``/``grid_sample_gradfix`` ops. Reflection (stylegan2-ada reflects too) fills uncovered areas with
  image content rather than constant borders, which D could otherwise learn to detect and which would leak into G's
  samples. Torch's reflection mirrors about the pixel edges (the edge pixel repeats) where stylegan2-ada's ``reflect``
  pad does not repeat it; without the low-pass filter, strongly shrunk or rotated samples alias slightly more.
- Samples whose composed matrix is exactly the identity (op not fired, or fired with an identity draw such as "no
  flip") are passed through untouched rather than resampled, so they keep their exact values. Flips, quarter turns
  and whole-pixel shifts copy pixels exactly at power-of-two sizes (to ~1e-5 otherwise: 2 / size is inexact).
- On 1-channel images luma flip, hue and saturation are skipped (there is no chroma to act on); brightness and
  contrast still apply.

Coordinates: a geometric matrix maps *output* pixel coordinates to *input* ones (the inverse of how the content
moves), in pixels measured from the image centre with x to the right and y down. Colour matrices are 4x4 homogeneous
maps of (r, g, b, 1), applied to images in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from gankit.augment.base import Augment, check_images, normal, uniform
from gankit.errors import UserError

GEOMETRIC_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
RGB_ONLY_OPS = ("lumaflip", "hue", "saturation")
ADA_OPS = GEOMETRIC_OPS + COLOR_OPS


# ------------------------------------------------------------------------------------------ 2-D matrices (B, 3, 3)


def _stack3(rows: Sequence[Sequence[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """A batch of 3x3 (or 4x4) matrices from rows of per-sample tensors ``(B,)`` or constants."""
    b = like.shape[0]
    entries = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(b) for row in rows for v in row]
    n = len(rows)
    return torch.stack(entries, dim=1).reshape(b, n, n)


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)``: move points by ``(tx, ty)`` pixels."""
    return _stack3([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)``: scale about the image centre."""
    return _stack3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)``: rotate about the image centre by ``theta`` radians (clockwise on screen, since y points down)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _stack3([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def quarter_turns2d(k: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)``: rotate by ``k * 90`` degrees with exact 0/+-1 entries (``cos(pi/2)`` in floating point is not
    0, which would blur a 90-degree rotation by a tiny amount)."""
    k = torch.as_tensor(k).long() % 4
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=k.device)[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=k.device)[k]
    return _stack3([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos)


def apply_affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` ``(B, C, H, W)`` so that ``out[p] = x[matrix[b] @ p]``, ``matrix`` ``(B, 3, 3)`` mapping output to
    input pixel coordinates (centre origin). Bilinear, reflection padding; differentiable w.r.t. ``x``."""
    check_images(x, "apply_affine")
    b, c, h, w = x.shape
    # The sampling grid is built here rather than by F.affine_grid: output pixel centres in centred pixel units
    # (j + 0.5 - W/2) are exact in floating point, an exact matrix (flip, quarter turn, whole-pixel shift) maps them
    # to exact source positions, and 2 / W is exact for power-of-two sizes, so such ops copy pixels bit for bit
    # (affine_grid's own base grid is off by an ulp, which blurs them by ~1e-6). grid_sample's normalised
    # coordinates (align_corners=False) are u = 2 * pixel / size.
    m = matrix.to(device=x.device, dtype=torch.float32)
    ys = torch.arange(h, device=x.device, dtype=torch.float32) + (0.5 - h / 2)
    xs = torch.arange(w, device=x.device, dtype=torch.float32) + (0.5 - w / 2)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)  # (H, W, 3)
    source = torch.einsum("bij,hwj->bhwi", m[:, :2, :], points)  # (B, H, W, 2) source (x, y) in pixels
    norm = torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=torch.float32)
    grid = (source * norm).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ------------------------------------------------------------------------------------------ colour matrices (B, 4, 4)

_LUMA = 1.0 / math.sqrt(3.0)  # the luma axis v = (1, 1, 1) / sqrt(3) of stylegan2-ada: grey pixels lie on it


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(like.shape[0], n, n)


def _luma_projector(like: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)``: v v^T with v = (1, 1, 1, 0) / sqrt(3): projection onto the grey axis."""
    p = torch.zeros(4, 4, dtype=like.dtype, device=like.device)
    p[:3, :3] = 1.0 / 3.0
    return p.expand(like.shape[0], 4, 4)


def brightness3d(b: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)``: add ``b`` to r, g and b."""
    return _stack3([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)


def contrast3d(c: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)``: multiply r, g and b by ``c`` (about 0, the middle of [-1, 1])."""
    return _stack3([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)


def lumaflip3d(flip: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)``: ``I - 2 v v^T`` where ``flip`` is 1 (mirror the grey component: x -> x - 2 * mean_rgb(x)),
    the identity where it is 0."""
    return _eye(4, flip) - 2 * _luma_projector(flip) * flip.reshape(-1, 1, 1)


def hue3d(theta: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)``: rotate colours by ``theta`` radians about the luma axis (Rodrigues' formula); keeps each pixel's
    grey level and its distance from grey."""
    c, s = torch.cos(theta).reshape(-1, 1, 1), torch.sin(theta).reshape(-1, 1, 1)
    k = torch.zeros(4, 4, dtype=theta.dtype, device=theta.device)  # cross-product matrix [v]_x
    k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -_LUMA, _LUMA, _LUMA, -_LUMA, -_LUMA, _LUMA
    vvt = _luma_projector(theta)
    rot = c * (_eye(4, theta) - vvt) + s * k + vvt
    rot[:, 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=theta.dtype, device=theta.device)
    return rot


def saturation3d(s: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)``: scale each pixel's distance from grey by ``s``, keeping its grey level."""
    vvt = _luma_projector(s)
    sat = vvt + (_eye(4, s) - vvt) * s.reshape(-1, 1, 1)
    sat[:, 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=s.dtype, device=s.device)
    return sat


def apply_color_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, 3, H, W)``: each pixel ``(r, g, b)`` -> ``matrix[b, :3, :3] @ (r, g, b) + matrix[b, :3, 3]``.
    ``x`` ``(B, 1, H, W)``: ``gain * x + offset`` with gain the mean row sum of ``matrix[b, :3, :3]`` and offset the
    mean of ``matrix[b, :3, 3]`` (exact for brightness/contrast, the only colour ops used on 1 channel)."""
    check_images(x, "apply_color_matrix")
    b, c, h, w = x.shape
    m = matrix.to(device=x.device, dtype=x.dtype)
    if c == 3:
        out = torch.bmm(m[:, :3, :3], x.reshape(b, 3, h * w)) + m[:, :3, 3:]
        return out.reshape(b, 3, h, w)
    if c == 1:
        gain = m[:, :3, :3].sum(dim=2).mean(dim=1)
        offset = m[:, :3, 3].mean(dim=1)
        return x * gain.reshape(b, 1, 1, 1) + offset.reshape(b, 1, 1, 1)
    raise ValueError(f"colour augmentation needs 1 or 3 channels, got {c}")


def _replace_changed(x: torch.Tensor, matrix: torch.Tensor, apply) -> torch.Tensor:
    """Apply ``apply(x[i], matrix[i])`` only to samples whose matrix is not exactly the identity; the rest of ``x``
    is returned as is (bit for bit). Differentiable w.r.t. ``x`` through ``index_copy``."""
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    changed = (matrix != eye).flatten(1).any(dim=1)
    idx = changed.nonzero().flatten().to(x.device)
    if idx.numel() == 0:
        return x
    if idx.numel() == x.shape[0]:
        return apply(x, matrix)
    return x.index_copy(0, idx, apply(x.index_select(0, idx), matrix.index_select(0, idx.to(matrix.device))))


# ---------------------------------------------------------------------------------------------- the pipeline


class AdaPipeline:
    """The ``bgc`` augmentation pipe; ``pipe(x, generator)`` maps ``(B, C, H, W)`` to the same shape.

    ``p`` (a float attribute) is the probability with which each enabled op fires per sample; ``ops`` restricts the
    enabled ops (default all of :data:`ADA_OPS`, in that order: geometry first, then colour). Strengths default to
    stylegan2-ada's ``AugmentPipe``: ``xint_max`` 0.125 (of the image size), ``scale_std`` 0.2 (log2),
    ``rotate_max`` 1 (full circle), ``aniso_std`` 0.2 (log2), ``xfrac_std`` 0.125 (of the image size),
    ``brightness_std`` 0.2, ``contrast_std`` 0.5 (log2), ``hue_max`` 1 (full circle), ``saturation_std`` 1 (log2).
    Arbitrary rotation is drawn twice (before and after the anisotropic scaling), each with probability
    ``1 - sqrt(1 - p)``, so that some rotation happens with probability ``p``.

    With ``p == 0`` the input tensor itself is returned and no random number is drawn.
    """

    def __init__(
        self,
        p: float = 0.0,
        *,
        ops: Sequence[str] = ADA_OPS,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
    ):
        unknown = [op for op in ops if op not in ADA_OPS]
        if unknown:
            raise UserError(f"unknown ADA op {unknown[0]!r}; valid ops: {', '.join(ADA_OPS)}")
        self.p = float(p)
        self.ops = tuple(op for op in ADA_OPS if op in ops)  # the order is fixed by the pipeline, not the caller
        self.xint_max = xint_max
        self.scale_std = scale_std
        self.rotate_max = rotate_max
        self.aniso_std = aniso_std
        self.xfrac_std = xfrac_std
        self.brightness_std = brightness_std
        self.contrast_std = contrast_std
        self.hue_max = hue_max
        self.saturation_std = saturation_std

    def __repr__(self) -> str:
        return f"AdaPipeline(p={self.p}, ops={self.ops})"

    def _gate(self, like: torch.Tensor, generator: torch.Generator | None, p: float | None = None) -> torch.Tensor:
        """``(B,)`` bool: which samples this op fires on."""
        return uniform((like.shape[0],), like, generator) < (self.p if p is None else p)

    def sample_geometry(
        self,
        batch: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw the composed ``(B, 3, 3)`` output-to-input pixel matrices (float32) for one batch."""
        like = torch.empty(batch, device=device)
        eye = _eye(3, like)
        m = eye

        def compose(m: torch.Tensor, op_inverse: torch.Tensor, fire: torch.Tensor) -> torch.Tensor:
            # Output-to-input matrices compose right to left: appending op k's inverse on the right means op k acts
            # on the content after the ops before it. A sample the op does not fire on gets the exact identity.
            return m @ torch.where(fire.reshape(-1, 1, 1), op_inverse, eye)

        if "xflip" in self.ops:
            flip = torch.floor(uniform((batch,), like, generator) * 2)
            m = compose(m, scale2d(1 - 2 * flip, torch.ones_like(flip)), self._gate(like, generator))
        if "rotate90" in self.ops:
            k = torch.floor(uniform((batch,), like, generator) * 4).long()
            m = compose(m, quarter_turns2d(-k).to(like.device), self._gate(like, generator))
        if "xint" in self.ops:
            t = (uniform((batch, 2), like, generator) * 2 - 1) * self.xint_max
            tx, ty = torch.round(t[:, 0] * width), torch.round(t[:, 1] * height)  # whole pixels: no resampling blur
            m = compose(m, translate2d(-tx, -ty), self._gate(like, generator))
        if "scale" in self.ops:
            s = torch.exp2(normal((batch,), like, generator) * self.scale_std)
            m = compose(m, scale2d(1 / s, 1 / s), self._gate(like, generator))
        # Two rotation chances with p_rot each: P(at least one) = 1 - (1 - p_rot)^2 = p.
        p_rot = 1 - math.sqrt(max(1 - self.p, 0.0))
        if "rotate" in self.ops:
            theta = (uniform((batch,), like, generator) * 2 - 1) * math.pi * self.rotate_max
            m = compose(m, rotate2d(-theta), self._gate(like, generator, p_rot))
        if "aniso" in self.ops:
            s = torch.exp2(normal((batch,), like, generator) * self.aniso_std)
            m = compose(m, scale2d(1 / s, s), self._gate(like, generator))
        if "rotate" in self.ops:
            theta = (uniform((batch,), like, generator) * 2 - 1) * math.pi * self.rotate_max
            m = compose(m, rotate2d(-theta), self._gate(like, generator, p_rot))
        if "xfrac" in self.ops:
            t = normal((batch, 2), like, generator) * self.xfrac_std
            m = compose(m, translate2d(-t[:, 0] * width, -t[:, 1] * height), self._gate(like, generator))
        return m

    def sample_color(
        self,
        batch: int,
        channels: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw the composed ``(B, 4, 4)`` colour matrices (float32) for one batch of ``channels``-channel images."""
        like = torch.empty(batch, device=device)
        eye = _eye(4, like)
        m = eye

        def compose(m: torch.Tensor, op: torch.Tensor, fire: torch.Tensor) -> torch.Tensor:
            # Colour matrices act on pixels, so a later op multiplies on the left.
            return torch.where(fire.reshape(-1, 1, 1), op, eye) @ m

        rgb = channels == 3
        if "brightness" in self.ops:
            b = normal((batch,), like, generator) * self.brightness_std
            m = compose(m, brightness3d(b), self._gate(like, generator))
        if "contrast" in self.ops:
            c = torch.exp2(normal((batch,), like, generator) * self.contrast_std)
            m = compose(m, contrast3d(c), self._gate(like, generator))
        if rgb and "lumaflip" in self.ops:
            flip = torch.floor(uniform((batch,), like, generator) * 2)
            m = compose(m, lumaflip3d(flip), self._gate(like, generator))
        if rgb and "hue" in self.ops:
            theta = (uniform((batch,), like, generator) * 2 - 1) * math.pi * self.hue_max
            m = compose(m, hue3d(theta), self._gate(like, generator))
        if rgb and "saturation" in self.ops:
            s = torch.exp2(normal((batch,), like, generator) * self.saturation_std)
            m = compose(m, saturation3d(s), self._gate(like, generator))
        return m

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(x, "AdaPipeline")
        if self.p <= 0:
            return x  # bit-for-bit identity, and no random draws, so p = 0 costs nothing
        b, c, h, w = x.shape
        device = generator.device if generator is not None else x.device
        if any(op in self.ops for op in GEOMETRIC_OPS):
            geometry = self.sample_geometry(b, h, w, generator, device).to(x.device)
            x = _replace_changed(x, geometry, apply_affine)
        if any(op in self.ops for op in COLOR_OPS):
            if c not in (1, 3):
                raise ValueError(f"ADA colour ops need 1 or 3 channels, got {c}; disable them with ops=")
            color = self.sample_color(b, c, generator, device).to(x.device)
            x = _replace_changed(x, color, apply_color_matrix)
        return x


# ---------------------------------------------------------------------------------------------- the controller


class AdaController:
    """Adapts ``p`` from D's overfitting heuristic ``r_t = E[sign(D(real))]`` (stylegan2-ada's defaults).

    Call :meth:`observe` with D's logits on the (augmented) reals of each D step and :meth:`step` once per training
    step. Every ``interval`` steps, if any logits were observed: ``r_t`` = their mean sign, and
    ``p += sign(r_t - target) * images / (kimg * 1000)`` where ``images`` is the sum of the batch sizes over those
    steps (``batch_size * interval`` for a constant batch, as in stylegan2-ada; the sum stays right when the batch
    size changes, as in progressive training). So p can move by 1 per ``kimg`` thousand real images.

    ``p`` is clamped to [0, 1]. stylegan2-ada only clamps at 0; a probability above 1 means nothing, and without the
    top clamp a long-overfitting D would push p far above 1, from where it would need as long to come back down.
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500,
        batch_size: int | None = None,
        p: float = 0.0,
    ):
        if not 0 < target < 1:
            raise UserError(f"ada_target must be in (0, 1) (stylegan2-ada uses 0.6), got {target}")
        if int(interval) != interval or interval < 1:
            raise UserError(f"ada_interval must be a whole number of steps >= 1, got {interval}")
        if not kimg > 0:
            raise UserError(f"ada_kimg must be > 0 (thousands of real images for p to move by 1), got {kimg}")
        if batch_size is not None and batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.target = float(target)
        self.interval = int(interval)
        self.kimg = kimg
        self.batch_size = batch_size
        self.p = float(p)
        self.r_t: float | None = None
        self._sign_sum: torch.Tensor | int = 0  # a device tensor between updates: no GPU sync per step
        self._sign_count = 0
        self._steps = 0
        self._images = 0

    def __repr__(self) -> str:
        return f"AdaController(p={self.p}, r_t={self.r_t}, target={self.target})"

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate ``sign(real_logits)`` (any shape; detached) towards the next update's ``r_t``."""
        logits = real_logits.detach()
        signs = (logits > 0).sum() - (logits < 0).sum()  # int64, exact; sign(0) = 0 as in stylegan2-ada
        previous = self._sign_sum.to(signs.device) if torch.is_tensor(self._sign_sum) else self._sign_sum
        self._sign_sum = signs + previous
        self._sign_count += logits.numel()

    def step(self, batch_size: int | None = None) -> bool:
        """Count one training step of ``batch_size`` real images (default: the constructor's); returns True when
        this step ended an interval and ``p`` was updated."""
        n = self.batch_size if batch_size is None else batch_size
        if n is None:
            raise ValueError("AdaController.step needs a batch_size (here or in the constructor)")
        self._steps += 1
        self._images += int(n)
        if self._steps < self.interval:
            return False
        updated = self._sign_count > 0  # an interval without observations carries no evidence: p stays
        if updated:
            self.r_t = int(self._sign_sum) / self._sign_count
            direction = (self.r_t > self.target) - (self.r_t < self.target)
            self.p = min(max(self.p + direction * self._images / (self.kimg * 1000), 0.0), 1.0)
        self._sign_sum, self._sign_count, self._steps, self._images = 0, 0, 0, 0
        return updated

    def state_dict(self) -> dict[str, Any]:
        """Plain Python numbers: p, last r_t, and the partial interval (sign sum/count, steps, images)."""
        return {
            "p": self.p,
            "r_t": self.r_t,
            "sign_sum": int(self._sign_sum),
            "sign_count": self._sign_count,
            "steps": self._steps,
            "images": self._images,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])
        self.r_t = None if state["r_t"] is None else float(state["r_t"])
        self._sign_sum = int(state["sign_sum"])
        self._sign_count = int(state["sign_count"])
        self._steps = int(state["steps"])
        self._images = int(state["images"])


class AdaAugment(Augment):
    """ADA as an :class:`Augment`: an :class:`AdaPipeline` whose ``p`` an :class:`AdaController` adapts."""

    kind = "ada"

    def __init__(
        self,
        *,
        channels: int,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500,
        batch_size: int | None = None,
        p: float = 0.0,
        ops: Sequence[str] = ADA_OPS,
        **strengths: float,
    ):
        if channels not in (1, 3) and any(op in ops for op in COLOR_OPS):
            raise UserError(f"ADA colour ops need 1 or 3 channels, got {channels}")
        self.channels = channels
        self.controller = AdaController(target=target, interval=interval, kimg=kimg, batch_size=batch_size, p=p)
        self.pipeline = AdaPipeline(p=p, ops=ops, **strengths)

    def __repr__(self) -> str:
        return f"AdaAugment(p={self.p}, r_t={self.r_t}, target={self.controller.target})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self.pipeline.p = self.controller.p
        return self.pipeline(x, generator)

    def observe(self, real_logits: torch.Tensor) -> None:
        self.controller.observe(real_logits)

    def step(self, batch_size: int | None = None) -> None:
        self.controller.step(batch_size)
        self.pipeline.p = self.controller.p

    @property
    def p(self) -> float:
        return self.controller.p

    @p.setter
    def p(self, value: float) -> None:
        self.controller.p = self.pipeline.p = float(value)

    @property
    def r_t(self) -> float | None:
        return self.controller.r_t

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.controller.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "p" not in state:
            raise UserError(
                f"the saved augment state (kind {state.get('kind', 'unknown')!r}) has no ADA statistics to resume"
            )
        self.controller.load_state_dict(state)
        self.pipeline.p = self.controller.p
