"""Progressive growing in one place: :class:`GrowthController` moves G, D, the EMA generator and the data through
the schedule a growing model declares (:mod:`gankit.training.schedules`).

At every step the trainer calls :meth:`GrowthController.enter` once: on a new scale G, D and the EMA grow (the
EMA's new layers start as copies of G's, so the average does not begin from random weights), the optimizers are
rebuilt for the new parameters (as pytorch_GAN_zoo does), and the batch size follows the scale; during a fade-in
``alpha`` is set on all three networks and the real images are blended the same way (:meth:`real_images`).
Scale and alpha are saved with the checkpoint, so a resumed run continues inside a fade-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gankit.training.schedules import GrowthPhase, ProgressiveSchedule, fade_real_images


class GrowthController:
    """Drives a growing G / D / EMA generator through ``schedule``.

    ``rebuild_optimizers()`` is called after every change of scale; ``batches`` is the real-image stream (its
    ``batch_size`` follows the schedule's per-scale sizes).
    """

    def __init__(self, schedule: ProgressiveSchedule, G, D, ema_model, batches, rebuild_optimizers: Callable[[], None]):
        self.schedule = schedule
        self.G, self.D, self.ema_model = G, D, ema_model
        self.batches = batches
        self.rebuild_optimizers = rebuild_optimizers

    @classmethod
    def for_model(cls, model_cfg, batch_size: int, G, D, ema_model, batches, rebuild_optimizers):
        """The controller for a model whose config declares a growth schedule."""
        schedule = ProgressiveSchedule.from_model_config(model_cfg, batch_size)
        return cls(schedule, G, D, ema_model, batches, rebuild_optimizers)

    def enter(self, step: int) -> GrowthPhase:
        """Bring the networks and the data to the phase of the (0-based) ``step``; returns that phase."""
        phase = self.schedule.at(step)
        self.grow_to(phase.scale)
        for model in (self.G, self.D, self.ema_model):
            model.set_alpha(phase.alpha)
        if getattr(self.batches, "batch_size", phase.batch_size) != phase.batch_size:
            self.batches.batch_size = phase.batch_size
            close = getattr(self.batches, "close", None)  # a prefetching loader restarts at the consumed position
            if close is not None:
                close()
        return phase

    def grow_to(self, scale: int) -> None:
        """Grow (or, when rolling back, shrink) G, D and the EMA to ``scale`` and rebuild the optimizers.

        The EMA keeps its averages of the existing layers; its new layers start as copies of G's."""
        if scale == self.G.scale:
            return
        self.G.set_scale(scale)
        self.D.set_scale(scale)
        existing = set(self.ema_model.state_dict())
        self.ema_model.set_scale(scale)
        g_state = self.G.state_dict()
        with torch.no_grad():
            for key, value in self.ema_model.state_dict().items():
                if key not in existing:
                    value.copy_(g_state[key])
        self.ema_model.eval().requires_grad_(False)
        self.rebuild_optimizers()

    def real_images(self, real: torch.Tensor) -> torch.Tensor:
        """Real images ``(B, C, S, S)`` at the current resolution, faded like G's output during a fade-in."""
        return fade_real_images(real, self.G.image_size, float(self.G.alpha))

    def log_values(self) -> dict[str, float]:
        return {"resolution": self.G.image_size, "alpha": float(self.G.alpha)}

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.G.scale, "alpha": float(self.G.alpha)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Grow to the saved scale (before the saved weights are loaded into the grown networks)."""
        if state:
            self.grow_to(int(state["scale"]))


LOG_COLUMNS = ["resolution", "alpha"]

__all__ = ["LOG_COLUMNS", "GrowthController"]
