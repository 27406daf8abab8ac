"""Progressive GAN networks: equalized layers, pixel norm, minibatch stddev, growing, fade-in, state at any scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gankit.errors import UserError
from gankit.models import build_discriminator, build_generator, model_config_from_dict
from gankit.models.pgan import ProgressiveDiscriminator, ProgressiveGenerator
from gankit.nn import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm
from tests.tiny import pgan_config

# ------------------------------------------------------------------------------------------ layers


def test_equalized_layers_scale_at_run_time_in_both_conventions():
    torch.manual_seed(0)
    conv = EqualizedConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 6, 6)
    c = math.sqrt(2 / (3 * 3 * 3))
    assert conv.scale == pytest.approx(c) and conv.weight.std().item() == pytest.approx(1.0, abs=0.3)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * c, conv.bias, padding=1))
    conv.scale_bias = True  # the zoo's convention: the scale multiplies the bias too
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1) * c)
    lin = EqualizedLinear(4, 2, gain=1.0, scale_bias=True)
    with torch.no_grad():
        lin.bias.fill_(1.0)
    v = torch.randn(3, 4)
    torch.testing.assert_close(lin(v), (v @ lin.weight.T + 1.0) * 0.5)


def test_pixel_norm_and_minibatch_stddev():
    x = torch.randn(8, 6, 4, 4)
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(8, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(PixelNorm()(3 * x), y)  # scale invariant: G(k z) = G(z)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 7, 4, 4)
    torch.testing.assert_close(out[:, :6], x)
    for rows in (slice(0, 4), slice(4, 8)):  # consecutive samples form a group
        expected = (x[rows].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[rows, 6], expected.expand(4, 4, 4))
    unbiased = MinibatchStdDev(group_size=4, unbiased=True)(x)
    torch.testing.assert_close(unbiased[:4, 6, 0, 0], ((x[:4].var(dim=0) + 1e-8).sqrt().mean()).expand(4))
    odd = MinibatchStdDev(group_size=4)(x[:6])  # 6 is not divisible by 4: one group of 6 (the zoo's rule)
    torch.testing.assert_close(odd[:, 6, 0, 0], ((x[:6].var(0, unbiased=False) + 1e-8).sqrt().mean()).expand(6))
    assert MinibatchStdDev()(x[:1])[:, 6].abs().max() == 0


# ------------------------------------------------------------------------------------------ networks


def test_generator_and_discriminator_grow_one_scale_at_a_time():
    cfg = pgan_config(num_classes=3)
    G, D = ProgressiveGenerator(cfg), ProgressiveDiscriminator(cfg)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    for scale, size in enumerate((4, 8, 16)):
        if scale:
            before = {k: v.clone() for k, v in G.state_dict().items() if k != "alpha"}
            G.grow()
            D.grow()
            assert float(G.alpha) == 0.0 and float(D.alpha) == 0.0  # a new scale starts invisible
            for k, v in before.items():  # growing keeps every trained weight
                assert torch.equal(G.state_dict()[k], v)
        assert G.scale == D.scale == scale and G.image_size == D.image_size == size
        images = G(z, y)
        assert images.shape == (4, 1, size, size)
        assert D(images, y).shape == (4,)
    with pytest.raises(ValueError, match="final scale"):
        G.grow()
    with pytest.raises(ValueError, match="takes \\(B, 1, 16, 16\\)"):
        D(torch.randn(2, 1, 8, 8), y[:2])


def test_fade_in_blends_old_and_new_paths():
    torch.manual_seed(0)
    G = ProgressiveGenerator(pgan_config(), scale=1)
    D = ProgressiveDiscriminator(pgan_config(), scale=1)
    with torch.no_grad():
        for p in (*G.to_rgb.parameters(), *D.from_rgb.parameters()):
            p.normal_()
    z = torch.randn(3, 8)
    G.set_alpha(1.0)
    new = G(z)
    G.set_alpha(0.0)
    old = G(z)  # alpha 0: exactly the previous scale's image, nearest-upsampled
    torch.testing.assert_close(old[..., 0::2, 0::2], old[..., 1::2, 1::2])
    G4 = ProgressiveGenerator(pgan_config())
    G4.load_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith(("blocks.", "to_rgb.1"))})
    torch.testing.assert_close(old, F.interpolate(G4(z), scale_factor=2.0, mode="nearest"))
    G.set_alpha(0.3)
    torch.testing.assert_close(G(z), 0.3 * new + 0.7 * old)
    x = torch.randn(3, 1, 8, 8)
    D4 = ProgressiveDiscriminator(pgan_config())
    D4.load_state_dict({k: v for k, v in D.state_dict().items() if not k.startswith(("blocks.", "from_rgb.1"))})
    D.set_alpha(0.0)  # alpha 0: the previous scale's D on the average-pooled image
    torch.testing.assert_close(D(x), D4(F.avg_pool2d(x, 2)))
    h_old = F.leaky_relu(D.from_rgb[0](F.avg_pool2d(x, 2)), 0.2)
    h_new = D.blocks[0](F.leaky_relu(D.from_rgb[1](x), 0.2))  # two convs, then 2x2 average pooling
    h = D.mbstd(0.3 * h_new + 0.7 * h_old)
    h = F.leaky_relu(D.final_linear(F.leaky_relu(D.final_conv(h), 0.2).flatten(1)), 0.2)
    D.set_alpha(0.3)
    torch.testing.assert_close(D(x), D.decision(h).squeeze(1))


def test_state_dict_round_trip_at_any_scale_and_alpha():
    G = ProgressiveGenerator(pgan_config(), scale=2)
    G.set_alpha(0.6)
    fresh = build_generator(pgan_config())  # built at 4x4: loading grows it to the saved scale
    fresh.load_state_dict(G.state_dict())
    z = torch.randn(2, 8)
    assert fresh.scale == 2 and float(fresh.alpha) == pytest.approx(0.6)
    torch.testing.assert_close(fresh(z), G(z))
    fresh.set_scale(0)
    assert fresh.image_size == 4 and len(fresh.to_rgb) == 1
    assert isinstance(build_discriminator(pgan_config()), ProgressiveDiscriminator)


def test_config_validation_is_specific():
    cfg = model_config_from_dict({"family": "pgan", **pgan_config().to_dict()})
    assert cfg == pgan_config() and cfg.num_scales == 3
    with pytest.raises(UserError, match=r"model.depths must hold 3 positive integers, one per scale \(4, 8, 16\)"):
        pgan_config(depths=(8, 8)).validate()
    with pytest.raises(UserError, match="fade_steps \\(7\\) is longer"):
        pgan_config(fade_steps=7).validate()
    with pytest.raises(UserError, match="batch_per_scale must hold 3"):
        ProgressiveGenerator(pgan_config(batch_per_scale=(4, 4)))
    with pytest.raises(UserError, match=r"unknown config key model.depth \(did you mean 'depths'\?\)"):
        model_config_from_dict({"family": "pgan", "depth": [1]})


# ------------------------------------------------------------------------------------------ conditioning


def _first_layer_input(G: ProgressiveGenerator, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = G.input_layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        G(z, y)
    finally:
        hook.remove()
    return seen[0]


def _rms_normalised(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)


@torch.no_grad()
def test_the_zoo_form_normalises_the_one_hot_together_with_the_latent():
    torch.manual_seed(0)
    G = ProgressiveGenerator(pgan_config(num_classes=3))
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    expected = _rms_normalised(torch.cat([z, F.one_hot(y, 3).float()], dim=1))
    torch.testing.assert_close(_first_layer_input(G, z, y), expected)
    assert G.class_embed is None and G.input_layer.weight.shape[1] == 8 + 3


@torch.no_grad()
def test_class_embedding_normalises_the_class_on_its_own():
    torch.manual_seed(0)
    G = ProgressiveGenerator(pgan_config(num_classes=3, class_embedding=True))
    z, y = torch.randn(4, 8) * 3, torch.tensor([0, 1, 2, 1])
    embed = G.class_embed
    e = F.linear(F.one_hot(y, 3).float(), embed.weight * embed.scale, embed.bias)  # plain equalized dense layer
    got = _first_layer_input(G, z, y)
    assert got.shape == (4, 16) and G.input_layer.weight.shape[1] == 16
    torch.testing.assert_close(got, torch.cat([_rms_normalised(z), _rms_normalised(e)], dim=1))
    # the class half carries as much of the input as the latent half: unit RMS each
    torch.testing.assert_close(got[:, 8:].square().mean(1), torch.ones(4), atol=1e-5, rtol=0)
    # the raw zoo-style input (z, one-hot) still drives it
    torch.testing.assert_close(G.synthesize(torch.cat([z, F.one_hot(y, 3).float()], 1)), G(z, y))
    # an unconditional model ignores the flag
    assert ProgressiveGenerator(pgan_config(class_embedding=True)).class_embed is None
    with pytest.raises(UserError, match="class_embedding must be true or false"):
        pgan_config(num_classes=3, class_embedding="yes").validate()


def test_class_embedding_round_trips_through_an_export(tmp_path):
    import gankit

    torch.manual_seed(0)
    G = ProgressiveGenerator(pgan_config(num_classes=3, class_embedding=True), scale=2).eval()
    loaded = gankit.load_generator(G.save_export(tmp_path / "g.safetensors"))
    assert loaded.config == G.config and "class_embed.weight" in loaded.state_dict()
    z, y = torch.randn(3, 8), torch.tensor([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, y), G(z, y), rtol=0, atol=0)
