import dataclasses

import pytest
import torch
from torch import nn

from gankit.config import load_preset
from gankit.errors import UserError
from gankit.models import SAGANConfig, SAGANDiscriminator, SAGANGenerator, model_config_from_dict
from gankit.models.base import truncated_normal_std
from gankit.nn import ConditionalBatchNorm2d, SelfAttention2d, has_spectral_norm
from tests.tiny import sagan_config


def _trace(model: nn.Module, *inputs) -> list[tuple[str, tuple[int, ...]]]:
    """(module kind, output shape) for every block, attention and last layer, in execution order."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, m in model.named_modules():
        if name.count(".") == 1 and name.split(".")[0] in ("blocks", "attention") or name in ("to_image", "to_logit"):
            hooks.append(
                m.register_forward_hook(lambda mod, i, o, n=name: shapes.append((n.split(".")[0], tuple(o.shape))))
            )
    model(*inputs)
    for h in hooks:
        h.remove()
    return shapes


def test_sagan_celeba64_matches_reference_layer_shapes():
    cfg = model_config_from_dict(load_preset("sagan-celeba64")["model"])
    assert cfg == SAGANConfig()  # the preset is the seed defaults exactly
    G, D = SAGANGenerator(cfg), SAGANDiscriminator(cfg)
    z = torch.randn(2, 128)
    assert _trace(G, z) == [
        ("blocks", (2, 512, 4, 4)),
        ("blocks", (2, 256, 8, 8)),
        ("blocks", (2, 128, 16, 16)),
        ("attention", (2, 128, 16, 16)),
        ("blocks", (2, 64, 32, 32)),
        ("attention", (2, 64, 32, 32)),
        ("to_image", (2, 3, 64, 64)),
    ]
    x = torch.randn(2, 3, 64, 64)
    assert _trace(D, x) == [
        ("blocks", (2, 64, 32, 32)),
        ("blocks", (2, 128, 16, 16)),
        ("blocks", (2, 256, 8, 8)),
        ("attention", (2, 256, 8, 8)),
        ("blocks", (2, 512, 4, 4)),
        ("attention", (2, 512, 4, 4)),
        ("to_logit", (2, 1, 1, 1)),
    ]
    assert D(x).shape == (2,)
    # kernel / stride / padding of each layer, as in the port
    convs = [b.conv for b in G.blocks] + [G.to_image]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((4, 4), (1, 1), (0, 0))] + [
        ((4, 4), (2, 2), (1, 1))
    ] * 4
    dconvs = [b.conv for b in D.blocks] + [D.to_logit]
    assert [(c.kernel_size, c.stride, c.padding) for c in dconvs] == [((4, 4), (2, 2), (1, 1))] * 4 + [
        ((4, 4), (1, 1), (0, 0))
    ]
    assert all(b.norm is None and b.slope == 0.1 for b in D.blocks)  # LeakyReLU(0.1), no batch norm in D
    assert all(isinstance(b.norm.norm, nn.BatchNorm2d) for b in G.blocks)
    assert [a.channels for a in G.attention.values()] == [128, 64]
    assert [a.value.out_channels for a in G.attention.values()] == [128, 64]  # port: value has C channels
    assert [a.query.out_channels for a in G.attention.values()] == [16, 8]  # C / 8


def test_spectral_norm_exactly_where_configured():
    cfg = SAGANConfig()
    G, D = SAGANGenerator(cfg), SAGANDiscriminator(cfg)
    assert all(has_spectral_norm(b.conv) for b in G.blocks) and not has_spectral_norm(G.to_image)
    assert all(has_spectral_norm(b.conv) for b in D.blocks) and not has_spectral_norm(D.to_logit)
    assert not any(has_spectral_norm(m) for a in [*G.attention.values(), *D.attention.values()] for m in a.modules())
    cfg2 = dataclasses.replace(cfg, g_spectral_norm=False, attention_spectral_norm=True)
    G2, D2 = SAGANGenerator(cfg2), SAGANDiscriminator(cfg2)
    assert not any(has_spectral_norm(b.conv) for b in G2.blocks)
    assert all(has_spectral_norm(a.query) and has_spectral_norm(a.value) for a in G2.attention.values())
    assert all(has_spectral_norm(b.conv) for b in D2.blocks)


def test_non_power_of_two_and_impossible_attention_are_clear_errors():
    with pytest.raises(UserError, match="power of two"):
        SAGANConfig.from_dict({"image_size": 48})
    with pytest.raises(UserError, match=r"feature maps \[4, 8\]"):
        SAGANConfig.from_dict({"image_size": 16, "g_attention_resolutions": [16]})
    with pytest.raises(UserError, match="did you mean 'z_dim'"):
        SAGANConfig.from_dict({"zdim": 3})


@pytest.mark.parametrize("value", [-5, 0])
def test_max_channels_is_checked_itself_not_blamed_on_conv_dim(value):
    with pytest.raises(UserError) as info:
        SAGANConfig.from_dict({"image_size": 16, "g_attention_resolutions": [8], "max_channels": value})
    assert str(info.value).startswith(f"model.max_channels must be an integer >= 1, got {value!r}")
    assert "conv_dim" not in str(info.value)


def test_a_cap_below_attention_width_names_max_channels():
    with pytest.raises(UserError, match=r"attention at 8x8 in G needs >= 8 channels; raise max_channels$"):
        SAGANConfig.from_dict({"image_size": 16, "g_attention_resolutions": [8], "max_channels": 4})
    with pytest.raises(UserError, match=r"attention at 8x8 in G needs >= 8 channels; raise g_conv_dim$"):
        SAGANConfig.from_dict({"image_size": 16, "g_attention_resolutions": [8], "g_conv_dim": 2})
    capped = SAGANConfig.from_dict({"image_size": 32, "g_conv_dim": 64, "max_channels": 32,
                                    "g_attention_resolutions": [16], "d_attention_resolutions": [8]})
    assert capped.max_channels == 32 and SAGANGenerator(capped).blocks[0].conv.out_channels == 32


def test_projection_discriminator_formula():
    torch.manual_seed(0)
    D = SAGANDiscriminator(sagan_config()).eval()
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 3, 3, 9])
    h = x
    for block in D.blocks:
        h = block(h)
        if str(h.shape[-1]) in D.attention:
            h = D.attention[str(h.shape[-1])](h)
    psi = D.to_logit(h).flatten()
    expected = psi + (D.embed.weight[y] * h.sum((2, 3))).sum(1)
    torch.testing.assert_close(D(x, y), expected)
    assert not torch.allclose(D(x, y), D(x, torch.tensor([1, 1, 1, 1])))
    with pytest.raises(ValueError, match="class-conditional"):
        D(x)


def test_conditional_generator_uses_cbn_and_labels():
    torch.manual_seed(0)
    G = SAGANGenerator(sagan_config())
    assert all(isinstance(b.norm.norm, ConditionalBatchNorm2d) for b in G.blocks)
    with torch.no_grad():
        for b in G.blocks:
            b.norm.norm.gain.weight.normal_(1, 0.5)
    G.eval()
    z = torch.randn(3, 16)
    a = G(z, torch.tensor([0, 0, 0]))
    b = G(z, torch.tensor([5, 5, 5]))
    assert a.shape == (3, 1, 16, 16) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


def test_sample_with_generator_is_reproducible_and_truncation_bounds_latents():
    G = SAGANGenerator(sagan_config()).eval()
    a = G.sample(5, labels=3, generator=torch.Generator().manual_seed(1))
    b = G.sample(5, labels=[3] * 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    z = G.sample_latents(2000, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5 / truncated_normal_std(0.5) + 1e-6 and 0.9 < z.std() < 1.1  # truncated, scale kept
    assert len(list(G.attention.values())) == 1 and isinstance(G.attention["8"], SelfAttention2d)


def test_full_resolution_layers_add_a_block_at_image_size():
    cfg = sagan_config(z_dim=8, g_conv_dim=32, d_conv_dim=32, g_attention_resolutions=(16,),
                       d_attention_resolutions=(16,), full_resolution_layers=True, num_classes=0)
    G, D = SAGANGenerator(cfg), SAGANDiscriminator(cfg)
    assert _trace(G, torch.randn(2, 8)) == [
        ("blocks", (2, 64, 4, 4)),
        ("blocks", (2, 32, 8, 8)),
        ("blocks", (2, 16, 16, 16)),
        ("attention", (2, 16, 16, 16)),
        ("to_image", (2, 1, 16, 16)),
    ]
    assert (G.to_image.kernel_size, G.to_image.stride) == ((3, 3), (1, 1)) and not has_spectral_norm(G.to_image)
    assert _trace(D, torch.randn(2, 1, 16, 16)) == [
        ("blocks", (2, 16, 16, 16)),
        ("attention", (2, 16, 16, 16)),
        ("blocks", (2, 32, 8, 8)),
        ("blocks", (2, 64, 4, 4)),
        ("to_logit", (2, 1, 1, 1)),
    ]
    assert D.blocks[0].conv.stride == (1, 1) and has_spectral_norm(D.blocks[0].conv)
