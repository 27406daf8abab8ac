import io

import pytest
import torch

from gankit.augment.ada import AdaAugment, AdaController
from gankit.errors import UserError

BATCH, INTERVAL, KIMG = 32, 4, 500
DELTA = BATCH * INTERVAL / (KIMG * 1000)


def confident(n=BATCH):  # every real logit positive: r_t = 1 > target
    return torch.ones(n)


def unsure(n=BATCH):  # every real logit negative: r_t = -1 < target
    return -torch.ones(n)


def run(controller, logits, steps):
    ps = []
    for _ in range(steps):
        controller.observe(logits)
        controller.step()
        ps.append(controller.p)
    return ps


def roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_p_rises_by_exactly_one_delta_every_interval_when_d_is_confident():
    c = AdaController(target=0.6, interval=INTERVAL, kimg=KIMG, batch_size=BATCH)
    ps = run(c, confident(), 12)
    assert ps[:3] == [0.0, 0.0, 0.0]  # only every `interval` steps
    assert ps[3:8] == [DELTA] * 4 + [DELTA + DELTA]
    assert ps[11] == DELTA + DELTA + DELTA
    assert c.r_t == 1.0


def test_p_falls_when_d_is_unsure_and_never_goes_below_zero():
    c = AdaController(batch_size=BATCH, p=1.5 * DELTA)
    ps = run(c, unsure(), 12)
    assert ps[3] == 1.5 * DELTA - DELTA
    assert ps[7] == 0.0 and ps[11] == 0.0  # clamped at 0 rather than 0.5 * DELTA - DELTA
    assert c.r_t == -1.0


def test_r_t_is_the_mean_sign_over_the_interval():
    c = AdaController(batch_size=4)
    for logits in ([3.0, -1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0], [-2.0, 5.0, 5.0, 5.0], [0.5, 0.5, 0.5, -0.5]):
        c.observe(torch.tensor(logits).reshape(4, 1))
        c.step()
    assert c.r_t == (1 + 4 + 2 + 2) / 16  # 0.5625 < 0.6: p would fall, and stays at 0
    assert c.p == 0.0


def test_r_t_equal_to_the_target_leaves_p_unchanged():
    c = AdaController(target=0.5, interval=1, batch_size=4, p=0.25)
    c.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # mean sign 0.5
    assert c.step() is True
    assert c.p == 0.25 and c.r_t == 0.5


def test_an_interval_without_observations_keeps_p():
    c = AdaController(interval=2, batch_size=8, p=0.3)
    assert c.step() is False and c.step() is False
    assert c.p == 0.3 and c.r_t is None


def test_the_step_uses_the_images_actually_seen_when_the_batch_size_changes():
    c = AdaController(interval=2, kimg=1)
    c.observe(confident(16))
    c.step(16)
    c.observe(confident(48))
    c.step(48)
    assert c.p == 64 / 1000


def test_p_is_clamped_at_one():
    c = AdaController(interval=1, kimg=0.001, batch_size=64, p=0.99)
    run(c, confident(), 3)
    assert c.p == 1.0


def test_state_dict_round_trip_continues_the_same_p_sequence():
    mixed = torch.cat([torch.ones(20), -torch.ones(12)])  # mean sign 0.25
    logits = [confident()] * 10 + [mixed] * 2 + [confident()] * 12 + [unsure()] * 16
    a = AdaController(batch_size=BATCH, kimg=1)
    for k in range(10):  # stop mid-interval: the partial sums must carry over
        a.observe(logits[k])
        a.step()
    state = roundtrip(a.state_dict())
    assert all(v is None or type(v) in (int, float) for v in state.values())
    b = AdaController(batch_size=BATCH, kimg=1)
    b.load_state_dict(state)
    seq_a, seq_b = [], []
    for k in range(10, 40):
        for c, seq in ((a, seq_a), (b, seq_b)):
            c.observe(logits[k])
            c.step()
            seq.append((c.p, c.r_t))
    assert seq_a == seq_b
    # the interval across the save: (1 + 1 + 0.25 + 0.25) / 4 = 0.625 > 0.6, so p rose (without the carried-over
    # half it would have been 0.25 and p would have fallen)
    assert seq_b[1] == (3 * 0.128, 0.625)
    assert max(p for p, _ in seq_b) == 6 * 0.128 and seq_b[-1][0] < seq_b[-5][0]


def test_ada_augment_resumes_with_the_same_p_and_the_same_augmentations():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    a = AdaAugment(channels=3, batch_size=8, kimg=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(9):
        a(x, g)
        a.observe(confident(8))
        a.step()
    assert a.p > 0
    state, g_state = roundtrip(a.state_dict()), roundtrip(g.get_state())
    b = AdaAugment(channels=3, batch_size=8, kimg=0.1)
    b.load_state_dict(state)
    g_b = torch.Generator()
    g_b.set_state(g_state)
    for k in range(8):
        out_a, out_b = a(x, g), b(x, g_b)
        assert torch.equal(out_a, out_b)
        logits = confident(8) if k % 2 else unsure(8)
        a.observe(logits)
        b.observe(logits)
        a.step()
        b.step()
        assert (a.p, a.r_t) == (b.p, b.r_t)


def test_loading_a_state_without_ada_statistics_is_a_user_error():
    with pytest.raises(UserError, match="no ADA statistics"):
        AdaAugment(channels=3, batch_size=8).load_state_dict({"kind": "diffaugment"})


@pytest.mark.parametrize("kwargs", [{"target": 0.0}, {"target": 1.0}, {"interval": 0}, {"kimg": 0}, {"batch_size": 0}])
def test_controller_rejects_bad_settings(kwargs):
    with pytest.raises(UserError):
        AdaController(**kwargs)
