"""The biggan family: BigGAN-PyTorch's spectral-norm rule, the hierarchical latent and its latent map, the
conditioning modes, the config checks and the presets (the source reproductions are in tests/compat)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.config import resolve_config
from gankit.errors import UserError
from gankit.models.biggan import BigGANConfig, BigGANDiscriminator, BigGANGenerator
from gankit.nn.biggan_spectral import biggan_spectral_norm
from gankit.nn.spectral import maybe_spectral_norm


def small(**changes) -> BigGANConfig:
    base = dict(image_size=16, channels=1, z_dim=12, num_classes=4, g_ch=4, d_ch=4, shared_dim=6,
                g_attention_blocks=(0,), d_attention_blocks=(0,))  # fmt: skip
    return BigGANConfig(**{**base, **changes})


def test_biggan_spectral_norm_runs_one_power_iteration_in_eval_mode_without_storing_it():
    torch.manual_seed(0)
    layer = biggan_spectral_norm(nn.Linear(6, 5), eps=1e-12)
    sn = layer.parametrizations.weight[0]
    w = layer.parametrizations.weight.original.detach()
    layer.eval()
    u0 = sn.u.clone()
    v = F.normalize(u0 @ w, dim=1)
    u = F.normalize(v @ w.t(), dim=1)
    sigma = (v @ w.t() @ u.t()).item()
    torch.testing.assert_close(layer.weight, w / sigma)
    assert torch.equal(sn.u, u0)  # eval mode: the stored u stays
    torch.testing.assert_close(layer.weight, w / sigma)  # so the same weight again
    # PyTorch's rule (u^T W v of the stored pair, no iteration in eval) gives another sigma on the same state
    torch_rule = (u0.reshape(-1) @ w @ F.normalize(u0 @ w, dim=1).reshape(-1)).item()
    assert abs(torch_rule - sigma) > 1e-4
    layer.train()
    layer.weight  # noqa: B018  (a training-mode forward stores the iterated u and sigma)
    torch.testing.assert_close(sn.u, u)
    torch.testing.assert_close(sn.sv, torch.tensor([sigma]))


def test_biggan_spectral_norm_converges_to_the_largest_singular_value_and_has_the_right_gradient():
    torch.manual_seed(1)
    layer = biggan_spectral_norm(nn.Conv2d(3, 4, 3))
    for _ in range(50):
        layer.weight  # noqa: B018
    w = layer.parametrizations.weight.original
    top = torch.linalg.matrix_norm(w.detach().reshape(4, -1), ord=2)
    torch.testing.assert_close(layer.parametrizations.weight[0].sv, top.reshape(1), rtol=1e-4, atol=0)
    # gradient through sigma(W) as autograd computes it for W / (u^T W v) with u, v constants
    layer.eval()
    sn = layer.parametrizations.weight[0]
    u0 = sn.u
    v = F.normalize(u0 @ w.detach().reshape(4, -1), dim=1)
    u = F.normalize(v @ w.detach().reshape(4, -1).t(), dim=1)
    g = torch.randn(4, 3, 3, 3)
    (grad,) = torch.autograd.grad((layer.weight * g).sum(), w)
    w2 = w.detach().clone().requires_grad_(True)
    ref = w2 / (u @ w2.reshape(4, -1) @ v.t())
    (expected,) = torch.autograd.grad((ref * g).sum(), w2)
    torch.testing.assert_close(grad, expected)


def test_hierarchical_latent_chunks_and_latent_weight():
    cfg = small(z_dim=13)  # 2 blocks + 1: chunks of 4, the first linear takes the remainder (5)
    assert cfg.z_chunks() == [5, 4, 4]
    assert small(z_dim=12).z_chunks() == [4, 4, 4] and small(hierarchical=False).z_chunks() == [12]
    torch.manual_seed(0)
    G = BigGANGenerator(cfg).train()  # latent_weight is the eval-mode weight whatever the mode
    A = G.latent_weight()
    assert A.shape == (4 * 4 * 16, 13) and torch.count_nonzero(A[:, 5:]) == 0
    assert G.training and G.linear.training
    z = torch.randn(3, 13)
    G.eval()
    with torch.no_grad():
        torch.testing.assert_close(G.linear(z[:, :5]), z @ A.t() + G.linear.bias)
        base = G(z, torch.tensor([0, 1, 2]))
        late = z.clone()
        late[:, 9:] += 1  # the last chunk enters only the last block's batch norms
        assert not torch.allclose(G(late, torch.tensor([0, 1, 2])), base)


def test_conditioning_modes():
    torch.manual_seed(0)
    shared = BigGANGenerator(small())
    assert shared.blocks[0].bn1.mode == "linear" and shared.blocks[0].bn1.gain.in_features == 6 + 4
    per_layer = BigGANGenerator(small(shared_dim=0, hierarchical=False))
    assert per_layer.shared is None and isinstance(per_layer.blocks[0].bn1.gain, nn.Embedding)
    plain = BigGANGenerator(small(num_classes=0, hierarchical=False))
    assert plain.blocks[0].bn1.mode == "none" and plain.blocks[0].bn1.bn.affine
    uncond_hier = BigGANGenerator(small(num_classes=0))
    assert uncond_hier.blocks[0].bn1.gain.in_features == 4  # the z chunk alone
    z = torch.randn(2, 12)
    for G, y in ((per_layer, torch.tensor([0, 3])), (plain, None), (uncond_hier, None)):
        assert G.eval()(z, y).shape == (2, 1, 16, 16)


def test_relu_shortcut_changes_only_pre_activation_blocks():
    torch.manual_seed(0)
    a = BigGANDiscriminator(small()).eval()
    b = BigGANDiscriminator(small(d_relu_shortcut=True)).eval()
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(3, 1, 16, 16), torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert not torch.allclose(a(x, y), b(x, y))
        torch.testing.assert_close(a.blocks[0](x), b.blocks[0](x))  # the first block has no pre-activation


def test_sn_variant_torch_uses_pytorch_rule_with_the_given_eps():
    torch.manual_seed(0)
    G = BigGANGenerator(small(sn_variant="torch", sn_eps=1e-6))
    sn = G.linear.parametrizations.weight[0]
    assert sn.eps == 1e-6 and hasattr(sn, "_u") and hasattr(sn, "_v")
    reference = maybe_spectral_norm(nn.Linear(4, 4))  # the other families' spectral norm is untouched
    assert reference.parametrizations.weight[0].eps == 1e-12


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(g_attention_blocks=(2,)), "g_attention_blocks has 2"),
        (dict(d_attention_blocks=(0,), d_ch=1), "needs >= 8 channels"),
        (dict(shared_dim=0), "hierarchical needs a shared class embedding"),
        (dict(z_dim=2), "too small for the hierarchical latent"),
        (dict(g_ch_mults=(4, 4)), "g_ch_mults needs 3 entries"),
        (dict(d_ch_mults=(1, 1), d_downsample=(True,)), "one entry per D block"),
        (dict(d_downsample=(True, True, True)), "pools 3 times"),
        (dict(sn_variant="spectral"), "sn_variant must be one of"),
        (dict(init="he"), "init must be one of"),
        (dict(image_size=24), "image_size"),
        (dict(bn_eps=0.0), "bn_eps"),
    ],
)
def test_config_refusals(changes, message):
    fields = {**dataclasses.asdict(small()), **changes}
    with pytest.raises(UserError, match=message):
        BigGANConfig.from_dict(fields)


@pytest.mark.parametrize("preset", ["biggan-cifar10", "biggan-digits"])
def test_presets_build(preset):
    cfg = resolve_config(preset)
    torch.manual_seed(0)
    G, D = BigGANGenerator(cfg.model).eval(), BigGANDiscriminator(cfg.model).eval()
    z = torch.randn(2, cfg.model.z_dim)
    y = torch.tensor([1, 2])
    with torch.no_grad():
        x = G(z, y)
        assert x.shape == (2, cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
        assert D(x, y).shape == (2,)
    assert cfg.training.loss == "hinge"
    if preset == "biggan-cifar10":  # BigGAN-PyTorch's launch_cifar_ema.sh
        t = cfg.training
        assert (t.batch_size, t.n_critic, t.g_lr, t.d_lr) == (50, 4, 2e-4, 2e-4)
        assert cfg.model.g_widths() == [256] * 4 and cfg.training.ema_decay == 0.9999
