import math

import pytest
import torch

from gankit.errors import UserError
from gankit.losses import (
    AdversarialLoss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    ns_d_loss,
    ns_g_loss,
    wgan_d_loss,
    wgan_g_loss,
)

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def test_hinge_exact_values():
    # real: relu(1-2)=0, relu(0.5)=0.5, relu(2)=2 -> 2.5/3 ; fake: relu(-1)=0, relu(1)=1, relu(2.5)=2.5 -> 3.5/3
    assert hinge_d_loss(REAL, FAKE).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert hinge_g_loss(FAKE).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)


def test_non_saturating_exact_values():
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected_d = (sp(-2.0) + sp(-0.5) + sp(1.0)) / 3 + (sp(-2.0) + sp(0.0) + sp(1.5)) / 3
    assert ns_d_loss(REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert ns_g_loss(FAKE).item() == pytest.approx((sp(2.0) + sp(0.0) + sp(-1.5)) / 3, rel=1e-6)
    # equals BCE with logits, real labelled 1 and fake 0
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.testing.assert_close(ns_d_loss(REAL, FAKE), bce(REAL, torch.ones(3)) + bce(FAKE, torch.zeros(3)))


def test_wgan_exact_values():
    assert wgan_d_loss(REAL, FAKE).item() == pytest.approx((-0.5 / 3) - (1.5 / 3))
    assert wgan_g_loss(FAKE).item() == pytest.approx(0.5 / 3)


def test_gradient_penalty_on_linear_critic_with_known_gradient_norm():
    # critic(x) = <a, x>: gradient a everywhere, so GP = (|a| - 1)^2 exactly, whatever the interpolates
    a = torch.randn(1, 3, 4, 4)
    critic = lambda x: (x * a).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((a.norm().item() - 1) ** 2, rel=1e-5)


def test_gradient_penalty_is_zero_for_unit_norm_gradient_and_trains_the_critic():
    w = torch.zeros(1, 1, 2, 2, requires_grad=True)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    gp = gradient_penalty(critic, torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2))
    assert gp.item() == pytest.approx(1.0)  # |grad| = 0 -> (0 - 1)^2
    gp.backward()  # create_graph=True: the penalty has a gradient w.r.t. the critic's weights
    assert w.grad is not None
    with torch.no_grad():
        w.copy_(torch.full((1, 1, 2, 2), 0.5))  # |w| = 1
    assert gradient_penalty(critic, torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)).item() == pytest.approx(
        0.0, abs=1e-10
    )


def test_adversarial_loss_combines_penalty_and_drift():
    critic = lambda x: x.flatten(1).sum(1)  # noqa: E731  gradient norm sqrt(4) = 2 -> GP 1
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    loss, stats = AdversarialLoss("wgan-gp", drift=0.001).discriminator_loss(critic, real, fake)
    # wgan: 0 - 4 ; gp: 10 * 1 ; drift: 0.001 * 16
    assert loss.item() == pytest.approx(-4 + 10 + 0.016)
    assert stats["gp"].item() == pytest.approx(1.0)
    assert AdversarialLoss("hinge").gp == 0 and AdversarialLoss("wgan-gp").gp == 10


class _CountingCritic(torch.nn.Module):
    """A per-sample linear critic that counts its forward passes and the batch sizes it saw."""

    def __init__(self, batch_independent: bool) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.batch_independent = batch_independent
        self.batches: list[int] = []

    def forward(self, x, y=None):
        self.batches.append(len(x))
        out = self.linear(x.flatten(1)).squeeze(1)
        return out if y is None else out + y.float()


@pytest.mark.parametrize("conditional", [False, True])
def test_batch_independent_critic_sees_reals_and_fakes_in_one_pass(conditional):
    torch.manual_seed(0)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    y_real, y_fake = (torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0])) if conditional else (None, None)
    results = {}
    for joint in (True, False):
        critic = _CountingCritic(joint)
        torch.manual_seed(1)
        critic.linear.reset_parameters()
        loss, stats = AdversarialLoss("hinge").discriminator_loss(critic, real, fake, y_real, y_fake)
        assert critic.batches == ([6] if joint else [3, 3])
        results[joint] = (loss, stats["d_real"], stats["d_fake"])
        # the reference: the hinge loss on the logits of each set alone
        real_logits, fake_logits = critic(real, y_real), critic(fake, y_fake)
        torch.testing.assert_close(loss, hinge_d_loss(real_logits, fake_logits))
        torch.testing.assert_close(stats["d_real"], real_logits.mean())
    for a, b in zip(results[True], results[False], strict=True):
        torch.testing.assert_close(a, b)


def test_unknown_loss_is_user_error():
    with pytest.raises(UserError, match="unknown loss"):
        AdversarialLoss("hinj")
