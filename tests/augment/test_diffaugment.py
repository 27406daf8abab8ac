import pytest
import torch

from gankit.augment.diffaugment import (
    DIFFAUGMENT_OPS,
    DiffAugment,
    brightness,
    contrast,
    cutout,
    cutout_size,
    diff_augment,
    parse_policy,
    rand_brightness,
    rand_color,
    rand_contrast,
    rand_cutout,
    rand_saturation,
    rand_translation,
    saturation,
    translate,
    translation_range,
)
from gankit.errors import UserError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def naive_translate(x, shift_y, shift_x):
    out = torch.zeros_like(x)
    b, _, h, w = x.shape
    for n in range(b):
        for i in range(h):
            for j in range(w):
                si, sj = i - int(shift_y[n]), j - int(shift_x[n])
                if 0 <= si < h and 0 <= sj < w:
                    out[n, :, i, j] = x[n, :, si, sj]
    return out


# ------------------------------------------------------------------------------------------------ translation


def test_translate_moves_a_marked_pixel_by_exactly_k_and_zero_fills():
    x = torch.ones(2, 1, 8, 8)
    x[:, :, 3, 3] = 5.0
    out = translate(x, torch.tensor([2, -1]), torch.tensor([1, -3]))
    # sample 0: 2 rows down, 1 column right; vacated rows 0-1 and column 0 are 0, the rest still 1
    expected0 = torch.ones(8, 8)
    expected0[:2, :] = 0
    expected0[:, :1] = 0
    expected0[5, 4] = 5.0
    assert torch.equal(out[0, 0], expected0)
    # sample 1: 1 row up, 3 columns left; vacated last row and last 3 columns are 0
    expected1 = torch.ones(8, 8)
    expected1[7:, :] = 0
    expected1[:, 5:] = 0
    expected1[2, 0] = 5.0
    assert torch.equal(out[1, 0], expected1)


def test_translate_matches_a_naive_loop_for_every_shift():
    x = torch.randn(9, 2, 5, 6, generator=gen(1))
    shifts = torch.arange(-4, 5)
    out = translate(x, shifts, shifts.flip(0))
    assert torch.equal(out, naive_translate(x, shifts, shifts.flip(0)))


def test_translation_range_is_the_papers_rounding():
    assert translation_range(32) == 4
    assert translation_range(64) == 8
    assert translation_range(28) == 4  # int(3.5 + 0.5)
    assert translation_range(16) == 2


def test_rand_translation_shifts_are_uniform_integers_within_range():
    b, size = 400, 32
    x = torch.zeros(b, 1, size, size)
    x[:, :, 16, 16] = 1.0
    out = rand_translation(x, generator=gen(2))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(b))  # shift <= 4 keeps the marker inside: moved, not lost
    pos = out[:, 0].flatten(1).argmax(dim=1)
    dy, dx = pos // size - 16, pos % size - 16
    s = translation_range(size)
    assert set(dy.tolist()) == set(range(-s, s + 1))
    assert set(dx.tolist()) == set(range(-s, s + 1))


# ------------------------------------------------------------------------------------------------ cutout


def zeros_at(out):
    return {tuple(idx) for idx in (out[0, 0] == 0).nonzero().tolist()}


def test_cutout_zeroes_exactly_the_square_around_the_centre():
    x = torch.ones(1, 2, 8, 8)
    out = cutout(x, torch.tensor([4]), torch.tensor([4]), (4, 4))
    expected = {(i, j) for i in range(2, 6) for j in range(2, 6)}
    assert zeros_at(out) == expected
    assert torch.equal(out[0, 0], out[0, 1])  # every channel
    assert int((out == 0).sum()) == 2 * 16


def test_cutout_near_the_edge_is_clipped():
    x = torch.ones(1, 1, 8, 8)
    out = cutout(x, torch.tensor([0]), torch.tensor([7]), (4, 4))
    assert zeros_at(out) == {(i, j) for i in range(0, 2) for j in range(5, 8)}  # rows [-2, 2), cols [5, 9) clipped
    out = cutout(x, torch.tensor([0]), torch.tensor([0]), (3, 5))  # odd size: rows [-1, 2), cols [-2, 3)
    assert zeros_at(out) == {(i, j) for i in range(0, 2) for j in range(0, 3)}
    out = cutout(x, torch.tensor([8]), torch.tensor([8]), (4, 4))  # the centre the paper allows at H for even sizes
    assert zeros_at(out) == {(i, j) for i in range(6, 8) for j in range(6, 8)}


def test_cutout_size_is_the_papers_rounding():
    assert cutout_size(32, 32) == (16, 16)
    assert cutout_size(28, 28) == (14, 14)
    assert cutout_size(7, 5) == (4, 3)


def test_rand_cutout_cuts_one_clipped_rectangle_per_sample_covering_the_whole_image():
    b = 300
    x = torch.ones(b, 3, 8, 8)
    out = rand_cutout(x, generator=gen(3))
    cut = out[:, 0] == 0
    assert torch.equal(cut.unsqueeze(1).expand_as(out), out == 0)
    for n in range(b):
        rows, cols = cut[n].any(dim=1), cut[n].any(dim=0)
        assert 0 < int(rows.sum()) <= 4 and 0 < int(cols.sum()) <= 4
        assert torch.equal(cut[n], rows[:, None] & cols[None, :])  # a rectangle
    assert int(cut.sum(dim=(1, 2)).max()) == 16  # some fully inside
    assert int(cut.sum(dim=(1, 2)).min()) < 16  # some clipped
    assert bool(cut.any(dim=0).all())  # every pixel is cut by some sample


# ------------------------------------------------------------------------------------------------ colour


def test_colour_ops_on_known_inputs():
    x = torch.tensor([0.6, 0.0, -0.3]).reshape(1, 3, 1, 1).repeat(2, 1, 1, 1)
    bright = brightness(x, torch.tensor([0.5, -0.25])).flatten(1)
    assert torch.allclose(bright, torch.tensor([[1.1, 0.5, 0.2], [0.35, -0.25, -0.55]]))
    sat = saturation(x, torch.tensor([0.0, 2.0])).flatten(1)
    assert torch.allclose(sat[0], torch.tensor([0.1, 0.1, 0.1]))
    assert torch.allclose(sat[1], torch.tensor([1.1, -0.1, -0.7]))
    img = torch.tensor([[1.0, 0.0], [0.5, -0.5]]).reshape(1, 1, 2, 2)  # mean 0.25
    con = contrast(img, torch.tensor([0.5]))
    assert torch.allclose(con.flatten(), torch.tensor([0.625, 0.125, 0.375, -0.125]))


def test_random_colour_parameters_stay_in_the_papers_ranges():
    b = 2000
    shift = rand_brightness(torch.zeros(b, 1, 1, 1), gen(4)).flatten()
    assert shift.min() >= -0.5 and shift.max() < 0.5
    assert shift.min() < -0.45 and shift.max() > 0.45
    x = torch.tensor([1.0, -1.0, 0.0]).reshape(1, 3, 1, 1).repeat(b, 1, 1, 1)  # channel mean 0: out = factor * x
    factor = rand_saturation(x, gen(5))[:, 0].flatten()
    assert factor.min() >= 0 and factor.max() < 2
    assert factor.min() < 0.05 and factor.max() > 1.95
    x = torch.tensor([1.0, -1.0]).reshape(1, 1, 1, 2).repeat(b, 1, 1, 1)  # image mean 0: out = factor * x
    factor = rand_contrast(x, gen(6))[:, 0, 0, 0]
    assert factor.min() >= 0.5 and factor.max() < 1.5
    assert factor.min() < 0.55 and factor.max() > 1.45


def test_colour_skips_saturation_on_one_channel():
    x = torch.randn(4, 1, 5, 5, generator=gen(7))
    g1, g2 = gen(8), gen(8)
    assert torch.equal(rand_color(x, g1), rand_contrast(rand_brightness(x, g2), g2))
    assert torch.equal(g1.get_state(), g2.get_state())  # no draw was spent on saturation


# ------------------------------------------------------------------------------------------------ policy, gradients


def test_parse_policy_keeps_order_and_rejects_unknown_ops():
    assert parse_policy("cutout, color") == ("cutout", "color")
    assert parse_policy(["translation"]) == ("translation",)
    with pytest.raises(UserError) as err:
        parse_policy("color,colour")
    message = str(err.value)
    assert "'colour'" in message and "\n" not in message
    assert all(op in message for op in DIFFAUGMENT_OPS)
    with pytest.raises(UserError):
        parse_policy(" , ")


def test_diff_augment_is_reproducible_from_the_generator_and_keeps_the_shape():
    x = torch.rand(6, 3, 16, 16, generator=gen(9)) * 2 - 1
    a = DiffAugment()(x, gen(10))
    b = diff_augment(x, "color,translation,cutout", gen(10))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, generator=gen(11)))


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_gradients_reach_the_input_through_every_policy(policy):
    x = (torch.rand(4, 3, 16, 16, generator=gen(12)) * 2 - 1).requires_grad_(True)
    weights = torch.rand(4, 3, 16, 16, generator=gen(13))
    (diff_augment(x, policy, gen(14)) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum(dim=(1, 2, 3)).min() > 0  # every sample


def test_cutout_and_translation_gradients_are_exact_masks():
    x = torch.ones(1, 1, 8, 8, requires_grad=True)
    cutout(x, torch.tensor([4]), torch.tensor([4]), (4, 4)).sum().backward()
    assert int((x.grad == 0).sum()) == 16 and int((x.grad == 1).sum()) == 48
    x.grad = None
    translate(x, torch.tensor([2]), torch.tensor([0])).sum().backward()
    assert torch.equal(x.grad[0, 0, 6:], torch.zeros(2, 8)) and torch.equal(x.grad[0, 0, :6], torch.ones(6, 8))
