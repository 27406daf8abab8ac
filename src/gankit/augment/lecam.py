"""LeCam regularisation (Tseng et al., 2021, "Regularizing Generative Adversarial Networks under Limited Data").

``reg = mean(relu(D(real) - ema_fake)^2) + mean(relu(ema_real - D(fake))^2)``, where ``ema_real``/``ema_fake`` are
exponential moving averages of the batch means of D's logits on reals and fakes. The caller adds ``weight * reg`` to
the D loss only (the papers use 0.3 with hinge logits; non-saturating logits are larger and need far smaller weights).
It keeps D's real and fake predictions near each other's running averages, which bounds how far D can overfit.

Schedule as in google/lecam-gan and StudioGAN (``lecam_ema_start_iter``), with the trainer's step number ``step``:

- the EMAs are updated every D step *before* the regulariser is computed, so it already sees this batch;
- while ``step < start_step`` the EMA decay is 0: each EMA is just the latest batch mean;
- the regulariser is applied only when ``step > start_step`` (strictly; :meth:`LeCam.__call__` returns 0 before).

The references start the EMAs at a placeholder (1000 or 7777) that the decay-0 phase overwrites at the first update;
here the first update always sets them to the batch means, which is the same whenever ``start_step >= 1`` and avoids
a meaningless placeholder when ``start_step`` is 0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def lecam_reg(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    ema_real: torch.Tensor | float,
    ema_fake: torch.Tensor | float,
) -> torch.Tensor:
    """The LeCam term for logits of any shape (e.g. ``(B,)`` or ``(B, 1)``); the EMAs are constants (no gradient)."""
    ema_real = torch.as_tensor(ema_real, dtype=real_logits.dtype, device=real_logits.device).detach()
    ema_fake = torch.as_tensor(ema_fake, dtype=fake_logits.dtype, device=fake_logits.device).detach()
    return F.relu(real_logits - ema_fake).pow(2).mean() + F.relu(ema_real - fake_logits).pow(2).mean()


class LeCam:
    """EMA bookkeeping plus the regulariser. Per D step: ``loss_d = loss_d + weight * lecam(real_logits,
    fake_logits, step)``. ``decay`` defaults to StudioGAN's 0.99, ``start_step`` to 1000."""

    def __init__(self, decay: float = 0.99, start_step: int = 1000):
        if not 0 <= decay < 1:
            raise ValueError(f"LeCam decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.start_step = int(start_step)
        # 0-dim float32 tensors on the logits' device: updating them needs no GPU sync.
        self._ema_real: torch.Tensor | None = None
        self._ema_fake: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"LeCam(decay={self.decay}, start_step={self.start_step}, ema_real={self.ema_real})"

    @property
    def ema_real(self) -> float | None:
        return None if self._ema_real is None else float(self._ema_real)

    @property
    def ema_fake(self) -> float | None:
        return None if self._ema_fake is None else float(self._ema_fake)

    def _blend(self, ema: torch.Tensor | None, logits: torch.Tensor, step: int) -> torch.Tensor:
        mean = logits.detach().float().mean()
        if ema is None or step < self.start_step:
            return mean
        return self.decay * ema.to(mean.device) + (1 - self.decay) * mean

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int) -> None:
        """Fold this D step's batch means into the EMAs (decay 0 while ``step < start_step``)."""
        self._ema_real = self._blend(self._ema_real, real_logits, step)
        self._ema_fake = self._blend(self._ema_fake, fake_logits, step)

    def active(self, step: int) -> bool:
        """Whether the regulariser applies at ``step`` (``step > start_step``)."""
        return step > self.start_step

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int) -> torch.Tensor:
        """Update the EMAs, then return the LeCam term (a 0-dim tensor; exactly 0 with no graph before the start)."""
        self.update(real_logits, fake_logits, step)
        if not self.active(step):
            return real_logits.new_zeros(())
        return lecam_reg(real_logits, fake_logits, self._ema_real, self._ema_fake)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python numbers (None before the first update)."""
        return {"ema_real": self.ema_real, "ema_fake": self.ema_fake}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def restore(value: float | None) -> torch.Tensor | None:
            return None if value is None else torch.tensor(float(value), dtype=torch.float32)

        self._ema_real = restore(state["ema_real"])
        self._ema_fake = restore(state["ema_fake"])
