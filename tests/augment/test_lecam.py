import io

import pytest
import torch

from gankit.augment.lecam import LeCam, lecam_reg


def test_lecam_reg_on_hand_computed_inputs():
    real = torch.tensor([1.0, -0.5, 2.0])
    fake = torch.tensor([-1.0, 0.5])
    # relu(real - 0)^2 = [1, 0, 4] -> 5/3; relu(0.5 - fake)^2 = [2.25, 0] -> 1.125
    assert lecam_reg(real, fake, ema_real=0.5, ema_fake=0.0).item() == pytest.approx(5 / 3 + 1.125)
    assert lecam_reg(real, fake, ema_real=-5.0, ema_fake=5.0).item() == 0.0  # both hinges inactive


def test_lecam_gradient_flows_to_the_logits_only():
    real = torch.tensor([1.0, 3.0], requires_grad=True)
    fake = torch.tensor([0.0], requires_grad=True)
    ema_real = torch.tensor(2.0, requires_grad=True)
    lecam_reg(real, fake, ema_real, 2.0).backward()
    assert torch.equal(real.grad, torch.tensor([0.0, 1.0]))  # d/dr mean(relu(r - 2)^2) = (r - 2) for r = 3, /2
    assert torch.equal(fake.grad, torch.tensor([-4.0]))  # d/df (2 - f)^2 = -2 (2 - f)
    assert ema_real.grad is None


def test_ema_tracks_the_last_batch_before_the_start_step_then_decays():
    lecam = LeCam(decay=0.9, start_step=2)
    fake = torch.zeros(4)
    means = [1.0, 3.0, 5.0, 0.0]
    values = []
    for step, mean in enumerate(means):
        real = torch.tensor([mean - 1.0, mean + 1.0])  # batch mean `mean`
        values.append(lecam(real, fake, step))
        if step == 1:
            assert lecam.ema_real == 3.0  # decay 0 before start_step: the last batch mean
    assert lecam.ema_real == pytest.approx(0.9 * (0.9 * 3.0 + 0.1 * 5.0) + 0.1 * 0.0)
    assert lecam.ema_fake == 0.0
    assert [v.item() for v in values[:3]] == [0.0, 0.0, 0.0]  # applied only once step > start_step
    expected = lecam_reg(torch.tensor([-1.0, 1.0]), fake, lecam.ema_real, lecam.ema_fake)
    assert values[3].item() == pytest.approx(expected.item())
    assert values[3].item() > 0


def test_defaults_match_studiogan():
    lecam = LeCam()
    assert (lecam.decay, lecam.start_step) == (0.99, 1000)
    assert lecam.ema_real is None and lecam.ema_fake is None


def test_state_dict_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, generator=gen), torch.randn(8, generator=gen)) for _ in range(12)]
    a = LeCam(decay=0.9, start_step=3)
    for step in range(6):
        a(*batches[step], step)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert all(type(v) is float for v in state.values())
    b = LeCam(decay=0.9, start_step=3)
    b.load_state_dict(state)
    for step in range(6, 12):
        assert torch.equal(a(*batches[step], step), b(*batches[step], step))
    assert (a.ema_real, a.ema_fake) == (b.ema_real, b.ema_fake)
