"""Adversarial losses on discriminator logits, and the WGAN-GP gradient penalty.

- Hinge (SAGAN, SN-GAN): ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``, ``L_G = -E[D(G(z))]``.
- Non-saturating (the original GAN with BCE on logits): ``L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))]``,
  ``L_G = E[softplus(-D(G(z)))]``. At the optimal D the minimax game minimises the Jensen-Shannon divergence
  between data and model; the non-saturating G loss keeps gradients alive when D wins early.
- WGAN (Arjovsky et al.): ``L_D = E[D(G(z))] - E[D(x)]``, ``L_G = -E[D(G(z))]``, an estimate of the
  Wasserstein-1 distance when D is 1-Lipschitz. WGAN-GP (Gulrajani et al.) enforces that softly with
  ``lambda * E[(|grad D(x_hat)| - 1)^2]`` on random interpolates ``x_hat`` (instead of weight clipping), taken
  inside the D step; Progressive GAN adds a drift term ``epsilon * E[D(x)^2]``.
- LeCam (Tseng et al. 2021, :class:`gankit.augment.LeCam`): ``E[relu(D(x) - ema_fake)^2] + E[relu(ema_real -
  D(G(z)))^2]`` keeps D's outputs near their moving averages, which curbs a D that memorises a small dataset.

With differentiable augmentation the trainer passes augmented images: every term is then about ``D o T``, the
critic that sees augmented images only. In particular WGAN-GP's interpolates are taken between the *augmented*
reals and fakes, so the penalty holds ``D`` 1-Lipschitz exactly on the inputs it is evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gankit.augment import LeCam
from gankit.errors import UserError
from gankit.nn.attention import reference_attention

Critic = Callable[..., torch.Tensor]


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def ns_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """BCE with logits: real labelled 1, fake labelled 0."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def ns_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: BCE of fakes labelled real."""
    return F.softplus(-fake_logits).mean()


def wgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return fake_logits.mean() - real_logits.mean()


def wgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def gradient_penalty(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``E[(|grad_x critic(x_hat)|_2 - 1)^2]`` with ``x_hat = eps * real + (1 - eps) * fake``, eps ~ U(0, 1).

    Built with ``create_graph=True`` so that backpropagating the returned scalar trains the critic.
    ``real`` and ``fake`` are ``(B, C, H, W)``; ``labels`` ``(B,)`` is passed to a conditional critic.
    """
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=device).to(real)
    x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_(True)
    # The penalty is differentiated twice; fused attention kernels have no double backward, so the critic
    # runs its attention in the explicit (differentiable twice) formulation here, and in float32 even in a
    # mixed-precision step: a bf16 double backward makes the gradient norm, the penalty's subject, noisy.
    with reference_attention(), torch.autocast(x_hat.device.type, enabled=False):
        out = critic(x_hat) if labels is None else critic(x_hat, labels)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


_LOSSES = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "ns": (ns_d_loss, ns_g_loss),
    "wgan": (wgan_d_loss, wgan_g_loss),
}
LOSS_NAMES = ("hinge", "ns", "wgan-gp")


@dataclass(frozen=True)
class AdversarialLoss:
    """A named loss (``hinge``, ``ns`` or ``wgan-gp``) with its regularisers.

    ``gp_weight`` defaults to 10 for ``wgan-gp`` and 0 otherwise (it may be set for any loss);
    ``drift`` is Progressive GAN's ``epsilon`` on ``E[D(x)^2]``; ``lecam`` (with ``lecam_weight`` > 0) adds the
    LeCam regulariser, whose moving averages it keeps.
    """

    name: str = "hinge"
    gp_weight: float | None = None
    drift: float = 0.0
    lecam_weight: float = 0.0
    lecam: LeCam | None = None

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise UserError(f"unknown loss {self.name!r}; choose one of: {', '.join(LOSS_NAMES)}")

    @property
    def gp(self) -> float:
        if self.gp_weight is not None:
            return self.gp_weight
        return 10.0 if self.name == "wgan-gp" else 0.0

    def _pair(self):
        return _LOSSES["wgan" if self.name == "wgan-gp" else self.name]

    def discriminator_loss(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        real_labels: torch.Tensor | None = None,
        fake_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        step: int = 0,
        observe: Callable[[torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The whole D-step loss (adversarial + penalty + drift + LeCam) and its parts (detached scalars).

        ``observe`` receives D's detached logits on the reals (ADA's overfitting statistic); ``step`` is the
        training step LeCam's schedule follows. The parts stay tensors so the hot loop never waits for the device.
        """

        def call(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:  # float32 logits, even under autocast
            return (critic(x) if y is None else critic(x, y)).float()

        if getattr(critic, "batch_independent", False) and real.shape == fake.shape:
            # One pass over reals and fakes together: each logit sees its own sample only, so the logits are the
            # two passes' (up to float rounding), with one spectral-norm power iteration per D step (the paper's
            # one per update) and GEMMs twice as tall. A critic that mixes samples keeps two passes.
            labels = None if real_labels is None else torch.cat([real_labels, fake_labels])
            real_logits, fake_logits = call(torch.cat([real, fake.detach()]), labels).split(len(real))
        else:
            real_logits = call(real, real_labels)
            fake_logits = call(fake.detach(), fake_labels)
        if observe is not None:
            observe(real_logits.detach())
        loss = self._pair()[0](real_logits, fake_logits)
        stats = {"d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}
        if self.lecam is not None and self.lecam_weight > 0:
            reg = self.lecam(real_logits, fake_logits, step)
            loss = loss + self.lecam_weight * reg
            stats["lecam"] = reg.detach()
        if self.gp > 0:
            penalty = gradient_penalty(critic, real, fake, real_labels, generator)
            loss = loss + self.gp * penalty
            stats["gp"] = penalty.detach()
        if self.drift > 0:
            loss = loss + self.drift * (real_logits**2).mean()
        return loss, stats

    def generator_loss(
        self, critic: Critic, fake: torch.Tensor, fake_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = critic(fake) if fake_labels is None else critic(fake, fake_labels)
        return self._pair()[1](logits.float())
