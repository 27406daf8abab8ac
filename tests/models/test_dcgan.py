"""The DCGAN family: every supported size, the layout of Radford et al. in the dcgan-digits preset, the extra 3x3
layers, and the block options it shares with SN-GAN."""

import dataclasses

import pytest
import torch
from torch import nn

from gankit.config import load_preset
from gankit.errors import UserError
from gankit.models import DCGANConfig, DCGANDiscriminator, DCGANGenerator, SNGANConfig, model_config_from_dict
from gankit.nn import has_spectral_norm
from tests.tiny import dcgan_config


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256])
@torch.no_grad()
def test_dcgan_every_supported_size(size):
    cfg = dcgan_config(image_size=size, channels=3, g_conv_dim=2, d_conv_dim=2)
    G, D = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert D(x).shape == (2,)
    assert len(G.blocks) == len(D.blocks) == size.bit_length() - 3  # 4, 8, ..., S/2


def test_dcgan_layout_matches_radford():
    cfg = model_config_from_dict(load_preset("dcgan-digits")["model"])
    G, D = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    # 16x16: widths at 4x4 and 8x8, then the preset's two extra 3x3 layers at 8x8 (after D's first conv in D)
    assert [b.conv.out_channels for b in G.blocks] == [128, 64, 64, 64]
    assert [b.conv.out_channels for b in D.blocks] == [64, 64, 64, 128]
    assert [b.conv.kernel_size for b in D.blocks] == [(4, 4), (3, 3), (3, 3), (4, 4)]
    assert D.blocks[0].norm is None and isinstance(D.blocks[1].norm, nn.BatchNorm2d)  # no BN on D's first layer
    assert all(b.slope == 0.2 for b in D.blocks)
    assert not any(has_spectral_norm(m) for m in [*G.modules(), *D.modules()])
    with pytest.raises(UserError, match="power of two"):
        DCGANConfig.from_dict({"image_size": 28})


def test_dcgan_extra_layers_are_3x3_layers_at_half_resolution():
    base = dcgan_config(image_size=32, g_conv_dim=4, d_conv_dim=4)
    cfg = dataclasses.replace(base, extra_layers=2)
    G, D = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    plain_g, plain_d = DCGANGenerator(base), DCGANDiscriminator(base)
    assert len(G.blocks) == len(plain_g.blocks) + 2 and len(D.blocks) == len(plain_d.blocks) + 2
    sizes_g, h = [], torch.randn(3, 8, 1, 1)
    for block in G.blocks:
        h = block(h, None)
        sizes_g.append(h.shape[1:])
    sizes_d, h = [], torch.randn(3, 1, 32, 32)
    for block in D.blocks:
        h = block(h)
        sizes_d.append(h.shape[1:])
    # G: 4 -> 8 -> 16 (= S/2), then two 16x16 layers; D: 32 -> 16 first, two 16x16 layers right after it
    assert sizes_g == [(16, 4, 4), (8, 8, 8), (4, 16, 16), (4, 16, 16), (4, 16, 16)]
    assert sizes_d == [(4, 16, 16), (4, 16, 16), (4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert all(b.conv.kernel_size == (3, 3) for b in [*G.blocks[3:], *D.blocks[1:3]])
    assert D.blocks[1].norm is not None  # BN like every D layer but the first
    x = G(torch.randn(3, 8))
    assert x.shape == (3, 1, 32, 32) and D(x).shape == (3,)
    with pytest.raises(UserError, match="model.extra_layers must be an integer >= 0"):
        dataclasses.replace(base, extra_layers=-1).validate()


@pytest.mark.parametrize("config", [DCGANConfig, SNGANConfig])
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"d_leaky_slope": -0.1}, "model.d_leaky_slope must be a number >= 0, got -0.1"),
        ({"init": "he"}, "model.init must be one of normal"),
    ],
)
def test_block_options_are_checked_for_both_conv_families(config, bad, message):
    kwargs = {"arch": "mnist", "image_size": 28} if config is SNGANConfig else {"image_size": 16}
    with pytest.raises(UserError, match=message):
        config(**kwargs, **bad).validate()


def test_dcgan_round_trips_through_plain_data_and_refuses_impossible_settings():
    cfg = dcgan_config(extra_layers=1, num_classes=0)
    assert model_config_from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["family"] == "dcgan"
    for changes, message in [({"channels": 2}, "model.channels must be 1 or 3, got 2"),
                             ({"g_conv_dim": 0}, "model.g_conv_dim must be an integer >= 1, got 0"),
                             ({"image_size": 512}, "model.image_size must be a power of two from 16 to 256")]:
        with pytest.raises(UserError, match=message):
            DCGANConfig.from_dict({**cfg.to_dict(), **changes})
