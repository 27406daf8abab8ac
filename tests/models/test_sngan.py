import dataclasses
import math

import pytest
import torch
from torch import nn

from gankit.config import load_preset
from gankit.errors import UserError
from gankit.models import SNGANConfig, SNGANDiscriminator, SNGANGenerator, model_config_from_dict
from gankit.models.blocks import DResBlock, GResBlock
from gankit.nn import ConditionalBatchNorm2d, has_spectral_norm
from tests.tiny import sngan_config

SIZES = list(range(16, 129, 8))  # every size arch cnn / resnet accepts


def _trace(blocks: nn.ModuleList, h: torch.Tensor, y=None, gen: bool = True) -> list[tuple[int, ...]]:
    out = []
    for b in blocks:
        h = b(h, y) if gen else b(h)
        out.append(tuple(h.shape))
    return out


def test_mnist_preset_is_the_article_model_and_makes_28x28():
    cfg = model_config_from_dict(load_preset("sngan-mnist")["model"])
    assert (cfg.arch, cfg.image_size, cfg.channels, cfg.z_dim) == ("mnist", 28, 1, 64)
    assert not cfg.g_spectral_norm and cfg.d_spectral_norm and cfg.d_batch_norm and cfg.d_leaky_slope == 0.2
    assert cfg.d_conv_dim == 64  # the preset widens D (documented departure); 16 gives the article's widths
    cfg = dataclasses.replace(cfg, d_conv_dim=16)
    G, D = SNGANGenerator(cfg), SNGANDiscriminator(cfg)
    # G: z -> 256 (k3 s2) -> 128 (k4 s1) -> 64 (k3 s2) -> 1 (k4 s2), no padding: 1 -> 3 -> 6 -> 13 -> 28
    assert _trace(G.blocks, torch.randn(2, 64, 1, 1)) == [(2, 256, 3, 3), (2, 128, 6, 6), (2, 64, 13, 13)]
    convs = [b.conv for b in G.blocks] + [G.to_image]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (3, 2, 0),
        (4, 1, 0),
        (3, 2, 0),
        (4, 2, 0),
    ]
    x = G(torch.randn(2, 64))
    assert x.shape == (2, 1, 28, 28) and x.abs().max() <= 1
    # D: 1 -> 16 -> 32 -> 1, k4 s2 p1: 28 -> 14 -> 7, then k7 -> 1 (the article's unpadded 28 -> 13 -> 5 -> 1
    # never looked at the last 6 rows and columns)
    assert _trace(D.blocks, x, gen=False) == [(2, 16, 14, 14), (2, 32, 7, 7)]
    assert D(x).shape == (2,)
    assert (D.to_logit.kernel_size, D.to_logit.padding) == ((7, 7), (0, 0))
    assert all(isinstance(b.norm, nn.BatchNorm2d) and b.slope == 0.2 for b in D.blocks)
    # the article's parameter counts (weights + biases + BN affine)
    assert sum(p.numel() for p in G.parameters()) == 747_841
    assert sum(p.numel() for p in D.parameters()) == 10_161  # 272 + 32 + 8224 + 64 + (32 * 49 + 1)


def test_mnist_discriminator_sees_every_pixel():
    torch.manual_seed(0)
    D = SNGANDiscriminator(sngan_config("mnist", d_batch_norm=False)).eval()
    x = torch.zeros(1, 1, 28, 28, requires_grad=True)
    D(x).sum().backward()
    assert bool((x.grad[0, 0] != 0).all())  # each of the 784 pixels moves the logit, the bottom-right corner too


def test_normal_init_is_dcgan_n0_002():
    torch.manual_seed(0)
    G = SNGANGenerator(model_config_from_dict(load_preset("sngan-mnist")["model"]))
    w = G.blocks[1].conv.weight.detach()  # 256 x 128 x 4 x 4 = 524k draws
    assert abs(float(w.mean())) < 1e-3 and float(w.std()) == pytest.approx(0.02, rel=0.01)
    assert float(G.blocks[1].norm.norm.weight.detach().mean()) == pytest.approx(1.0, abs=0.01)
    assert float(G.blocks[1].conv.bias.detach().abs().max()) == 0.0


def test_resnet_presets_match_the_paper_layout():
    cfg = model_config_from_dict(load_preset("sngan-cifar10-resnet")["model"])
    assert cfg == SNGANConfig()  # the dataclass defaults are the paper's CIFAR-10 ResNet
    G, D = SNGANGenerator(cfg), SNGANDiscriminator(cfg)
    assert G.stem.out_features == 256 * 4 * 4
    assert _trace(G.blocks, torch.randn(2, 256, 4, 4)) == [(2, 256, 8, 8), (2, 256, 16, 16), (2, 256, 32, 32)]
    assert all(isinstance(b, GResBlock) for b in G.blocks)
    assert G(torch.randn(2, 128)).shape == (2, 3, 32, 32)
    x = torch.randn(2, 3, 32, 32)
    assert _trace(D.blocks, x, gen=False) == [(2, 128, 16, 16), (2, 128, 8, 8), (2, 128, 8, 8), (2, 128, 8, 8)]
    assert [(b.optimized, b.downsample) for b in D.blocks] == [(True, True), (False, True), (False, False)] + [
        (False, False)
    ]
    assert all(isinstance(b, DResBlock) for b in D.blocks) and D.to_logit.in_features == 128
    # Xavier init, gain sqrt(2) inside residual branches: std = gain * sqrt(2 / (fan_in + fan_out))
    w = G.blocks[0].conv1.weight.detach()
    assert float(w.std()) == pytest.approx(math.sqrt(2) * math.sqrt(2 / (256 * 9 * 2)), rel=0.02)

    proj = model_config_from_dict(load_preset("sngan-cifar10-proj")["model"])
    assert proj == dataclasses.replace(cfg, num_classes=10)
    Gp, Dp = SNGANGenerator(proj), SNGANDiscriminator(proj)
    assert all(isinstance(b.norm1.norm, ConditionalBatchNorm2d) for b in Gp.blocks)
    assert Dp.embed.num_embeddings == 10 and has_spectral_norm(Dp.embed)


def test_standard_cnn_preset_layout():
    cfg = model_config_from_dict(load_preset("sngan-cifar10")["model"])
    G, D = SNGANGenerator(cfg), SNGANDiscriminator(cfg)
    assert G.stem.out_features == 512 * 4 * 4
    assert _trace(G.blocks, torch.randn(2, 512, 4, 4)) == [(2, 256, 8, 8), (2, 128, 16, 16), (2, 64, 32, 32)]
    x = torch.randn(2, 3, 32, 32)
    assert [s[1:] for s in _trace(D.blocks, x, gen=False)] == [
        (64, 32, 32),
        (64, 16, 16),
        (128, 16, 16),
        (128, 8, 8),
        (256, 8, 8),
        (256, 4, 4),
        (512, 4, 4),
    ]
    assert D.to_logit.in_features == 512 * 4 * 4
    assert all(b.norm is None and b.slope == 0.1 for b in D.blocks)


def test_mnist_arch_conditional_and_unconditional():
    for k in (0, 10):
        cfg = sngan_config("mnist", num_classes=k)
        y = torch.tensor([1, 7]) if k else None
        x = SNGANGenerator(cfg)(torch.randn(2, 8), y)
        assert x.shape == (2, 1, 28, 28)
        assert SNGANDiscriminator(cfg)(x, y).shape == (2,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "mnist", "image_size": 32}, "28x28 images only"),
        ({"arch": "cnn", "image_size": 20}, "multiple of 8"),
        ({"arch": "resnet", "image_size": 136}, "multiple of 8 from 16 to 128"),
        ({"arch": "resnet", "d_batch_norm": True}, "no batch norm"),
        ({"arch": "vgg"}, "mnist, cnn, resnet"),
        ({"init": "ortho"}, "normal, xavier, default"),
        ({"channels": 2}, "1 or 3"),
        ({"num_classes": -1}, "num_classes"),
    ],
)
def test_impossible_configs_are_clear_errors(changes, message):
    with pytest.raises(UserError, match=message):
        SNGANConfig.from_dict(changes)


def test_unknown_key_is_an_error_with_a_suggestion():
    with pytest.raises(UserError, match="did you mean 'd_batch_norm'"):
        SNGANConfig.from_dict({"d_batchnorm": True})


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


@pytest.mark.parametrize("arch", ["mnist", "cnn", "resnet"])
@pytest.mark.parametrize(("g_sn", "d_sn", "emb_sn"), [(False, True, True), (True, False, True), (True, True, False)])
def test_spectral_norm_exactly_where_configured(arch, g_sn, d_sn, emb_sn):
    cfg = sngan_config(arch, num_classes=4, g_spectral_norm=g_sn, d_spectral_norm=d_sn, embedding_spectral_norm=emb_sn)
    G, D = SNGANGenerator(cfg), SNGANDiscriminator(cfg)
    g_layers = [m for m in _layers(G) if m is not G.to_image]
    assert len(g_layers) >= 3
    assert all(has_spectral_norm(m) == g_sn for m in g_layers)
    assert not has_spectral_norm(G.to_image)  # never on G's last layer
    assert all(has_spectral_norm(m) == d_sn for m in _layers(D))  # D's last layer included (paper, article)
    assert has_spectral_norm(D.embed) == (d_sn and emb_sn)
    # nothing else is parametrized (norms, CBN embeddings)
    expected = g_sn * len(g_layers)
    assert sum(has_spectral_norm(m) for m in G.modules()) == expected


def test_projection_discriminator_formula():
    torch.manual_seed(0)
    D = SNGANDiscriminator(sngan_config("resnet", num_classes=5)).eval()
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([0, 4, 4])
    h = x
    for block in D.blocks:
        h = block(h)
    phi = torch.relu(h).sum((2, 3))
    expected = D.to_logit(phi).flatten() + (D.embed.weight[y] * phi).sum(1)
    torch.testing.assert_close(D(x, y), expected)
    assert not torch.allclose(D(x, y), D(x, torch.tensor([1, 1, 1])))
    with pytest.raises(ValueError, match="class-conditional"):
        D(x)


def test_residual_blocks_shortcuts():
    torch.manual_seed(0)
    from gankit.models.blocks import LayerMaker

    make = LayerMaker(init="xavier", sn=False)
    same = DResBlock(4, 4, downsample=False, optimized=False, make=make)
    assert same.shortcut is None  # identity shortcut when width and size are kept
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        same.conv2.weight.zero_()
        same.conv2.bias.zero_()
    torch.testing.assert_close(same(x), x)  # zero residual branch: the block is the identity
    opt = DResBlock(1, 4, downsample=True, optimized=True, make=make)
    assert opt(torch.randn(2, 1, 8, 8)).shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match="always downsamples"):
        DResBlock(1, 4, downsample=False, optimized=True, make=make)
