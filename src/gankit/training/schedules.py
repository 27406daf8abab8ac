"""Learning-rate decay (:func:`lr_decay_factor`) and the progressive-growing schedule: which scale, fade-in
weight and batch size each training step uses.

A model whose class sets ``grows_progressively = True`` (Progressive GAN) declares in its config:

- ``steps_per_scale[k]``: the step budget of scale ``k`` (resolution ``4 * 2**k``), its fade-in included;
- ``fade_steps``: at the start of every scale after the first, ``alpha`` rises linearly from 0 (new layers
  invisible) to 1 (fully grown) over this many steps, in jumps every ``fade_every`` steps
  (``alpha = min(1, floor(i / fade_every) * fade_every / fade_steps)`` at step ``i`` of the scale; the zoo's
  default ``fade_steps 19200, fade_every 32`` is its 600 jumps of 1/600 every 32 iterations);
- ``batch_per_scale[k]``: the batch size at scale ``k`` (empty: ``training.batch_size`` everywhere).

The schedule is a pure function of the global step, so a run resumed from a checkpoint written in the middle
of a fade-in continues at the same scale and alpha. Steps past the last budget stay at the last scale.

During a fade-in the real images are faded like the generator's output:
``alpha * x + (1 - alpha) * up2(avgpool2(x))`` at the current resolution (:func:`fade_real_images`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gankit.nn.equalized import downscale2d, upscale2d


def lr_decay_factor(kind: str, step: int, total_steps: int) -> float:
    """The multiplier of the base learning rates at ``step`` (0-based) of ``total_steps``.

    ``constant``: 1. ``linear``: ``1 - step / total_steps``, falling from 1 at the first step towards 0 at the
    end, as in the SN-GAN and WGAN-GP CIFAR-10 ResNet runs. A pure function of the step, so a resumed run
    continues on the same line.
    """
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, 1.0 - step / total_steps)
    raise ValueError(f"unknown learning-rate decay {kind!r}")


@dataclass(frozen=True)
class GrowthPhase:
    """Where step ``step`` stands: ``scale`` (0 = 4x4), ``alpha`` in [0, 1], ``batch_size``, ``resolution``."""

    step: int
    scale: int
    alpha: float
    batch_size: int
    step_in_scale: int

    @property
    def resolution(self) -> int:
        return 4 * 2**self.scale


class ProgressiveSchedule:
    """Per-scale step budgets, fade-in length and batch sizes; ``at(step)`` gives the step's :class:`GrowthPhase`."""

    def __init__(
        self,
        steps_per_scale: tuple[int, ...] | list[int],
        *,
        fade_steps: int,
        fade_every: int = 1,
        batch_per_scale: tuple[int, ...] | list[int] | None = None,
        batch_size: int = 16,
    ) -> None:
        if not steps_per_scale or any(s < 1 for s in steps_per_scale):
            raise ValueError(f"steps_per_scale must be positive integers, got {list(steps_per_scale)}")
        if fade_every < 1 or fade_steps < 0:
            raise ValueError(f"need fade_every >= 1 and fade_steps >= 0, got {fade_every}, {fade_steps}")
        self.steps_per_scale = tuple(int(s) for s in steps_per_scale)
        self.fade_steps, self.fade_every = int(fade_steps), int(fade_every)
        sizes = tuple(batch_per_scale) if batch_per_scale else (batch_size,) * len(self.steps_per_scale)
        if len(sizes) != len(self.steps_per_scale):
            raise ValueError("batch_per_scale needs one entry per scale")
        self.batch_per_scale = sizes
        starts, total = [], 0
        for s in self.steps_per_scale:
            starts.append(total)
            total += s
        self.starts = tuple(starts)
        self.total_steps = total

    @classmethod
    def from_model_config(cls, cfg, batch_size: int) -> ProgressiveSchedule:
        """From a config with ``steps_per_scale``, ``fade_steps``, ``fade_every``, ``batch_per_scale``."""
        return cls(
            cfg.steps_per_scale,
            fade_steps=cfg.fade_steps,
            fade_every=cfg.fade_every,
            batch_per_scale=cfg.batch_per_scale,
            batch_size=batch_size,
        )

    @property
    def num_scales(self) -> int:
        return len(self.steps_per_scale)

    def alpha_at(self, scale: int, step_in_scale: int) -> float:
        if scale == 0 or self.fade_steps == 0:
            return 1.0
        jumped = (step_in_scale // self.fade_every) * self.fade_every
        return min(1.0, jumped / self.fade_steps)

    def at(self, step: int) -> GrowthPhase:
        """The phase of the (0-based) training step ``step``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        scale = self.num_scales - 1
        for k in range(self.num_scales - 1):
            if step < self.starts[k + 1]:
                scale = k
                break
        i = step - self.starts[scale]
        return GrowthPhase(step, scale, self.alpha_at(scale, i), self.batch_per_scale[scale], i)


def fade_real_images(x: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """Real images ``(B, C, S, S)`` shown at ``resolution``: area-downscaled, then, while ``alpha < 1``,
    blended like G's output: ``alpha * x + (1 - alpha) * up2(avgpool2(x))``."""
    size = x.shape[-1]
    if size % resolution or x.shape[-2] != size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} pixels cannot be shown at {resolution}x{resolution}")
    x = downscale2d(x, size // resolution)
    if alpha < 1.0 and resolution > 4:
        x = alpha * x + (1.0 - alpha) * upscale2d(downscale2d(x))
    return x


__all__ = ["GrowthPhase", "ProgressiveSchedule", "fade_real_images", "lr_decay_factor"]
