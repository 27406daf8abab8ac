"""Every family trains with every loss, SN on or off per network; one registry finds families and presets."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from gankit.cli import main
from gankit.config import RunConfig, load_preset, preset_descriptions, preset_names, resolve_config
from gankit.errors import UserError
from gankit.models import (
    FAMILIES,
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
    SNGANConfig,
    build_discriminator,
    build_generator,
    get_family,
    model_config_from_dict,
)
from gankit.nn import has_spectral_norm
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import TINY_MODELS, family_run, synthetic_batches

NEW_PRESETS = ["dcgan-digits", "sngan-cifar10", "sngan-cifar10-proj", "sngan-cifar10-resnet", "sngan-mnist"]

def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def one_iteration(tmp_path, cfg: RunConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False, batches=synthetic_batches(cfg))
    g0, d0 = copy.deepcopy(trainer.G.state_dict()), copy.deepcopy(trainer.D.state_dict())
    stats = trainer.train_step()
    assert all(torch.isfinite(v).all() for v in stats.values()), stats
    assert _changed(g0, trainer.G.state_dict()) and _changed(d0, trainer.D.state_dict())
    return stats


@pytest.mark.parametrize("loss", ["hinge", "ns", "wgan-gp"])
@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_one_training_iteration_per_family_and_loss(tmp_path, name, loss):
    stats = one_iteration(tmp_path, family_run(name, loss))
    assert ("gp" in stats) == (loss == "wgan-gp")
    if loss == "wgan-gp":
        assert float(stats["gp"]) > 0


@pytest.mark.parametrize("name", list(TINY_MODELS))
@pytest.mark.parametrize(("g_sn", "d_sn"), [(True, False), (False, False), (True, True)])
def test_spectral_norm_on_or_off_per_network_trains(tmp_path, name, g_sn, d_sn):
    cfg = family_run(name, "hinge", g_spectral_norm=g_sn, d_spectral_norm=d_sn)
    G, D = build_generator(cfg.model), build_discriminator(cfg.model)
    assert any(has_spectral_norm(m) for m in G.modules()) == g_sn
    assert any(has_spectral_norm(m) for m in D.modules()) == d_sn
    one_iteration(tmp_path, cfg)


def test_registry_finds_every_family_and_rejects_unknown():
    assert list(FAMILIES) == ["sagan", "pgan", "sngan", "dcgan"]
    for name in FAMILIES:
        assert get_family(name).config.family == name
    with pytest.raises(UserError, match="did you mean 'sngan'"):
        get_family("sngn")
    with pytest.raises(UserError, match="unknown model family 'stylegan'") as err:
        model_config_from_dict({"family": "stylegan"})
    assert all(name in str(err.value) for name in ("sagan", "sngan", "dcgan"))


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_every_new_preset_resolves_and_builds(preset):
    assert preset in preset_names() and preset_descriptions()[preset]
    cfg = resolve_config(preset)
    assert cfg.preset == preset
    with torch.no_grad():
        G, D = build_generator(cfg.model).eval(), build_discriminator(cfg.model).eval()
        y = torch.tensor([3, 1]) if cfg.model.num_classes else None
        x = G(torch.randn(2, G.z_dim), y)
        assert x.shape == (2, cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
        assert D(x, y).shape == (2,)


def test_preset_training_settings():
    mnist = resolve_config("sngan-mnist", overrides={"data": {"path": "MNIST_DIR"}})
    t = mnist.training
    assert (t.loss, t.g_lr, t.d_lr, t.g_betas, t.d_betas, t.batch_size) == ("ns", 2e-4, 2e-4, (0.5, 0.999),
                                                                             (0.5, 0.999), 128)  # fmt: skip
    assert (mnist.data.dataset, mnist.data.path) == ("mnist", "MNIST_DIR")
    for name in ("sngan-cifar10", "sngan-cifar10-resnet", "sngan-cifar10-proj"):
        cfg = resolve_config(name)
        t = cfg.training
        assert (t.loss, t.g_lr, t.d_betas, t.n_critic, cfg.data.dataset) == ("hinge", 2e-4, (0.0, 0.9), 5, "cifar10")
        assert cfg.model.d_spectral_norm and not cfg.model.g_spectral_norm
    dc = resolve_config("dcgan-digits")
    assert dc.model.family == "dcgan" and not dc.model.d_spectral_norm and not dc.model.g_spectral_norm
    assert (dc.training.loss, dc.training.g_betas, dc.data.dataset) == ("ns", (0.5, 0.999), "digits")


def test_presets_command_lists_new_presets(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    for preset in NEW_PRESETS:
        assert preset in lines and len(lines[preset]) > len(preset) + 10


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256])
@torch.no_grad()
def test_dcgan_every_supported_size(size):
    cfg = DCGANConfig(image_size=size, channels=3, z_dim=8, g_conv_dim=2, d_conv_dim=2)
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
    base = DCGANConfig(image_size=32, channels=1, z_dim=8, g_conv_dim=4, d_conv_dim=4)
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
