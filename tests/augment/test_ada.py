import math

import pytest
import torch

from gankit.augment.ada import (
    ADA_OPS,
    COLOR_OPS,
    RGB_ONLY_OPS,
    AdaPipeline,
    apply_affine,
    apply_color_matrix,
    brightness3d,
    contrast3d,
    hue3d,
    lumaflip3d,
    quarter_turns2d,
    rotate2d,
    saturation3d,
    scale2d,
    translate2d,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b=8, c=3, h=16, w=16, seed=0):
    return torch.rand(b, c, h, w, generator=gen(seed)) * 2 - 1


def only(op: str) -> AdaPipeline:
    return AdaPipeline(p=1.0, ops=(op,))


# ------------------------------------------------------------------------------------------------ p = 0


@pytest.mark.parametrize("channels", [1, 3])
def test_p_zero_is_the_identity_bit_for_bit(channels):
    x = images(c=channels)
    g = gen(1)
    before = g.get_state()
    out = AdaPipeline(p=0.0)(x, g)
    assert torch.equal(out, x)
    assert torch.equal(g.get_state(), before)  # nothing drawn


# ------------------------------------------------------------------------------------------------ explicit matrices


def test_resampling_with_the_identity_matrix_returns_the_input():
    x = images(4, 3, 16, 32)
    assert torch.equal(apply_affine(x, torch.eye(3).expand(4, 3, 3)), x)  # power-of-two sizes: exact
    x = images(4, 1, 28, 28)
    assert torch.allclose(apply_affine(x, torch.eye(3).expand(4, 3, 3)), x, rtol=0, atol=1e-5)  # one ulp in 2/28


def test_explicit_geometric_matrices_flip_rotate_and_translate_exactly():
    x = images(4, 3, 16, 16)
    ones = torch.ones(4)
    assert torch.equal(apply_affine(x, scale2d(-ones, ones)), x.flip(-1))
    for k in range(4):
        assert torch.equal(apply_affine(x, quarter_turns2d(torch.full((4,), k))), torch.rot90(x, k, dims=(-2, -1)))
    # a whole-pixel translation moves a marked pixel (the matrix maps output to input: content moves by -t)
    marked = torch.zeros(4, 1, 16, 16)
    marked[:, :, 5, 9] = 1.0
    out = apply_affine(marked, translate2d(torch.full((4,), -3.0), torch.full((4,), 2.0)))
    expected = torch.zeros(4, 1, 16, 16)
    expected[:, :, 3, 12] = 1.0
    assert torch.equal(out, expected)


def test_reflection_padding_leaves_no_constant_border():
    x = torch.full((4, 3, 16, 16), 0.7)  # a rotated/shrunk constant image must stay constant: no black corners
    m = rotate2d(torch.tensor([0.3, 1.0, 2.0, 3.0])) @ scale2d(torch.full((4,), 1.7), torch.full((4,), 1.7))
    assert torch.allclose(apply_affine(x, m), x, rtol=0, atol=1e-6)


def test_explicit_colour_matrices_match_hand_computation():
    pixel = torch.tensor([0.5, 0.1, -0.3]).reshape(1, 3, 1, 1)
    m = torch.ones(1)

    def apply(matrix):
        return apply_color_matrix(pixel, matrix).flatten()

    assert torch.allclose(apply(brightness3d(0.2 * m)), torch.tensor([0.7, 0.3, -0.1]))
    assert torch.allclose(apply(contrast3d(2.0 * m)), torch.tensor([1.0, 0.2, -0.6]))
    assert torch.allclose(apply(lumaflip3d(m)), torch.tensor([0.3, -0.1, -0.5]))  # x - 2 * mean(x), mean 0.1
    assert torch.equal(apply(lumaflip3d(0 * m)), pixel.flatten())
    assert torch.allclose(apply(hue3d(2 * math.pi / 3 * m)), torch.tensor([-0.3, 0.5, 0.1]), atol=1e-6)  # r->g->b
    assert torch.allclose(apply(saturation3d(0 * m)), torch.full((3,), 0.1))
    assert torch.allclose(apply(saturation3d(2 * m)), torch.tensor([0.9, 0.1, -0.7]))
    grey = torch.full((1, 1, 2, 2), 0.4)  # one channel: gain * x + offset
    out = apply_color_matrix(grey, contrast3d(2.0 * m) @ brightness3d(0.1 * m))
    assert torch.allclose(out, torch.full((1, 1, 2, 2), 1.0))


# ------------------------------------------------------------------------------------------------ each op at p = 1


def test_xflip_flips_some_samples_and_leaves_the_rest():
    x = images(16)
    out = only("xflip")(x, gen(2))
    flipped = [torch.equal(out[n], x[n].flip(-1)) for n in range(16)]
    kept = [torch.equal(out[n], x[n]) for n in range(16)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_rotate90_gives_quarter_turns():
    x = images(16)
    out = only("rotate90")(x, gen(3))
    turns = []
    for n in range(16):
        match = [k for k in range(4) if torch.equal(out[n], torch.rot90(x[n], k, dims=(-2, -1)))]
        assert len(match) == 1
        turns.append(match[0])
    assert len(set(turns)) == 4


def test_integer_translation_moves_a_marked_pixel_by_whole_pixels():
    b, size = 32, 16
    x = torch.zeros(b, 1, size, size)
    x[:, :, 8, 8] = 1.0
    out = only("xint")(x, gen(4))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(b)) and torch.equal(out.amax(dim=(1, 2, 3)), torch.ones(b))
    pos = out[:, 0].flatten(1).argmax(dim=1)
    dy, dx = pos // size - 8, pos % size - 8
    limit = round(0.125 * size)
    assert dy.abs().max() <= limit and dx.abs().max() <= limit
    assert (dy != 0).any() and (dx != 0).any()


@pytest.mark.parametrize("op", ["scale", "rotate", "aniso", "xfrac"])
def test_continuous_geometric_ops_change_images_but_keep_constants(op):
    x = images(8)
    out = only(op)(x, gen(5))
    assert out.shape == x.shape
    assert all(not torch.equal(out[n], x[n]) for n in range(8))
    flat = torch.full((8, 3, 16, 16), -0.2)
    assert torch.allclose(only(op)(flat, gen(5)), flat, rtol=0, atol=1e-6)


def test_brightness_adds_one_shift_per_sample():
    x = images(64)
    shift = only("brightness")(x, gen(6)) - x
    per_sample = shift.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6)
    assert 0.1 < float(per_sample[:, 0].std()) < 0.3  # brightness_std 0.2


def test_contrast_scales_about_zero():
    x = images(64, c=1)
    out = only("contrast")(x, gen(7))
    factor = (out / x).flatten(1)
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), rtol=1e-4)
    assert (factor > 0).all()
    assert 0.3 < float(torch.log2(factor[:, 0]).std()) < 0.7  # contrast_std 0.5 in log2


def test_lumaflip_either_keeps_or_mirrors_the_grey_component():
    x = images(16)
    out = only("lumaflip")(x, gen(8))
    mirrored = x - 2 * x.mean(dim=1, keepdim=True)
    flips = [torch.allclose(out[n], mirrored[n], atol=1e-6) for n in range(16)]
    kept = [torch.equal(out[n], x[n]) for n in range(16)]
    assert all(f or k for f, k in zip(flips, kept, strict=True)) and any(flips) and any(kept)


@pytest.mark.parametrize("op", ["hue", "saturation"])
def test_hue_and_saturation_keep_each_pixels_grey_level(op):
    x = images(16)
    out = only(op)(x, gen(9))
    assert torch.allclose(out.mean(dim=1), x.mean(dim=1), atol=1e-5)
    chroma_in = (x - x.mean(dim=1, keepdim=True)).norm(dim=1)
    chroma_out = (out - out.mean(dim=1, keepdim=True)).norm(dim=1)
    ratio = (chroma_out / chroma_in).flatten(1)
    if op == "hue":  # a rotation about the grey axis
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4)
        assert not torch.allclose(out, x, atol=1e-3)
    else:  # one scale factor per sample
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-3)
        assert float(ratio[:, 0].min()) < 0.9 and float(ratio[:, 0].max()) > 1.1


def test_one_channel_skips_rgb_only_ops_but_not_brightness_and_contrast():
    x = images(8, c=1)
    assert torch.equal(AdaPipeline(p=1.0, ops=RGB_ONLY_OPS)(x, gen(10)), x)
    out = AdaPipeline(p=1.0, ops=("brightness", "contrast"))(x, gen(10))
    assert all(not torch.equal(out[n], x[n]) for n in range(8))


def test_the_full_pipeline_is_reproducible_and_fires_about_p_of_the_time():
    x = images(64)
    pipe = AdaPipeline(p=0.2)
    a, b = pipe(x, gen(11)), pipe(x, gen(11))
    assert torch.equal(a, b) and a.shape == x.shape
    untouched = sum(torch.equal(a[n], x[n]) for n in range(64))
    # 12 ops (rotation counted once) each firing with p = 0.2: P(untouched) = 0.8^11 ~ 0.086 (an identity draw
    # such as "no flip" also leaves a sample untouched, so a little more)
    assert 1 <= untouched <= 20


@pytest.mark.parametrize(
    ("op", "channels"), [(op, 3) for op in ADA_OPS] + [(op, 1) for op in ADA_OPS if op not in RGB_ONLY_OPS]
)
def test_gradients_reach_the_input_through_every_op(op, channels):
    x = images(8, c=channels).requires_grad_(True)
    weights = torch.rand(8, channels, 16, 16, generator=gen(12))
    out = only(op)(x, gen(13))
    assert any(not torch.equal(out[n], x[n]) for n in range(8))  # the op really ran on some sample
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum(dim=(1, 2, 3)).min() > 0  # every sample


def test_colour_ops_need_one_or_three_channels():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        AdaPipeline(p=0.5, ops=COLOR_OPS)(images(2, c=2), gen(14))
    out = AdaPipeline(p=0.5, ops=("xflip", "rotate90"))(images(2, c=2), gen(14))  # geometry works on any C
    assert out.shape == (2, 2, 16, 16)
