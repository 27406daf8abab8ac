import math

import pytest
import torch
from torch import nn

from gankit.nn import (
    ConditionalBatchNorm2d,
    SelfAttention2d,
    fold_spectral_norm,
    has_spectral_norm,
    maybe_spectral_norm,
    weight_matrix,
)
from gankit.nn import attention as attention_module


def _attention(channels=16, variant="port", gamma=0.7, seed=0):
    torch.manual_seed(seed)
    block = SelfAttention2d(channels, variant=variant)
    with torch.no_grad():
        block.gamma.fill_(gamma)
    return block


def _plain_reference(block: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """SAGAN's formula written out with einsum, independent of the module's code paths."""
    b, c, h, w = x.shape
    q = block.query(x).flatten(2)  # (B, d, N)
    k = block.key(x)
    v = block.value(x)
    if block.variant == "biggan":
        k, v = nn.functional.max_pool2d(k, 2), nn.functional.max_pool2d(v, 2)
    k, v = k.flatten(2), v.flatten(2)
    energy = torch.einsum("bdi,bdj->bij", q, k)  # s_ij = q_i . k_j, no scaling
    beta = torch.exp(energy - energy.amax(-1, keepdim=True))
    beta = beta / beta.sum(-1, keepdim=True)
    o = torch.einsum("bij,bcj->bci", beta, v).reshape(b, -1, h, w)
    if block.out is not None:
        o = block.out(o)
    return block.gamma * o + x


@pytest.mark.parametrize("variant", ["port", "biggan"])
@pytest.mark.parametrize("hw", [(8, 8), (4, 6), (6, 10)])
def test_fast_path_equals_explicit_outputs_and_gradients(variant, hw):
    block = _attention(32, variant)
    x = torch.randn(3, 32, *hw, requires_grad=True)
    fast = block(x)
    grads_fast = torch.autograd.grad(fast.pow(2).sum(), [x, *block.parameters()])
    slow, attn = block(x, return_attention=True)
    grads_slow = torch.autograd.grad(slow.pow(2).sum(), [x, *block.parameters()])
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    n_keys = hw[0] * hw[1] // (4 if variant == "biggan" else 1)
    assert attn.shape == (3, hw[0] * hw[1], n_keys)


@pytest.mark.parametrize("variant", ["port", "biggan"])
def test_explicit_path_matches_written_out_formula(variant):
    block = _attention(16, variant)
    x = torch.randn(2, 16, 6, 4)
    y, _ = block(x, return_attention=True)
    torch.testing.assert_close(y, _plain_reference(block, x), atol=1e-5, rtol=1e-5)


def test_attention_rows_sum_to_one_and_are_nonnegative():
    block = _attention(16)
    _, attn = block(torch.randn(2, 16, 5, 7), return_attention=True)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 35))


def test_gamma_zero_is_identity_at_init():
    block = SelfAttention2d(16)
    assert block.gamma.item() == 0.0
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(block(x), x)


def test_attention_uses_no_sqrt_d_scaling():
    """With q = k = a one-hot direction, energies are exactly the dot products: scaling would change beta."""
    block = _attention(8, gamma=1.0)
    with torch.no_grad():
        for conv in (block.query, block.key):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, 0] = 3.0
        block.value.weight.copy_(torch.eye(8)[:, :, None, None])
        block.value.bias.zero_()
    x = torch.zeros(1, 8, 1, 2)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 1.0, 0.0
    _, attn = block(x, return_attention=True)
    # query at position 0: q = 3, keys (3, 0) -> energies (9, 0) -> softmax
    expected = torch.softmax(torch.tensor([9.0, 0.0]), 0)
    torch.testing.assert_close(attn[0, 0], expected)


def test_attention_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expected"):
        SelfAttention2d(16)(torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize(
    "make",
    [lambda: nn.Conv2d(6, 12, 3), lambda: nn.ConvTranspose2d(12, 6, 4, 2, 1), lambda: nn.Linear(20, 7),
     lambda: nn.Embedding(10, 16)],
    ids=["conv", "convT", "linear", "embedding"],
)
def test_spectral_norm_largest_singular_value_is_one(make):
    torch.manual_seed(0)  # the weights too: a layer made at collection would depend on what was imported before
    layer = make()
    sn = maybe_spectral_norm(layer, True, n_power_iterations=1)
    assert has_spectral_norm(sn)
    sn.train()
    for _ in range(200):  # power iterations accumulate across forwards because u persists
        _ = sn.weight
    sn.eval()
    sigma = torch.linalg.matrix_norm(weight_matrix(sn).detach(), ord=2)
    assert abs(sigma.item() - 1.0) < 1e-3
    # and the raw weight really had a different scale: the normalisation did something
    raw = sn.parametrizations.weight.original
    raw_sigma = torch.linalg.matrix_norm(
        raw.transpose(0, 1).reshape(raw.shape[1], -1)
        if isinstance(layer, nn.ConvTranspose2d)
        else raw.reshape(raw.shape[0], -1),
        ord=2,
    )
    assert abs(raw_sigma.item() - 1.0) > 1e-2


def test_spectral_norm_frozen_in_eval():
    torch.manual_seed(0)
    conv = maybe_spectral_norm(nn.Conv2d(3, 8, 3), True)
    x = torch.randn(2, 3, 8, 8)
    conv.train()
    conv(x)
    conv.eval()
    u = conv.parametrizations.weight[0]._u.clone()
    v = conv.parametrizations.weight[0]._v.clone()
    a, b = conv(x), conv(x)
    assert torch.equal(a, b)
    assert torch.equal(u, conv.parametrizations.weight[0]._u)
    assert torch.equal(v, conv.parametrizations.weight[0]._v)
    conv.train()
    conv(x)
    assert not torch.equal(u, conv.parametrizations.weight[0]._u)  # training mode does iterate


def test_spectral_norm_off_leaves_module_plain():
    conv = nn.Conv2d(3, 8, 3)
    assert maybe_spectral_norm(conv, False) is conv and not has_spectral_norm(conv)


def test_fold_spectral_norm_keeps_eval_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(maybe_spectral_norm(nn.Conv2d(3, 8, 3)), nn.ReLU(), maybe_spectral_norm(nn.Conv2d(8, 4, 3)))
    x = torch.randn(2, 3, 10, 10)
    net.train()
    net(x)
    net.eval()
    before = net(x)
    fold_spectral_norm(net)
    assert not any(has_spectral_norm(m) for m in net.modules())
    torch.testing.assert_close(net(x), before, atol=1e-6, rtol=1e-6)


def test_conditional_batchnorm_equals_bn_then_class_gain_and_bias():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, 3)
    torch.testing.assert_close(cbn.gain.weight, torch.ones(3, 4))
    torch.testing.assert_close(cbn.bias.weight, torch.zeros(3, 4))
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.randn(3, 4))
        cbn.bias.weight.copy_(torch.randn(3, 4))
    x = torch.randn(6, 4, 5, 5)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    bn = nn.BatchNorm2d(4, affine=False)
    expected = bn(x) * cbn.gain.weight[y][:, :, None, None] + cbn.bias.weight[y][:, :, None, None]
    torch.testing.assert_close(cbn(x, y), expected)
    # running statistics follow plain BN too
    torch.testing.assert_close(cbn.bn.running_mean, bn.running_mean)
    # under bf16 autocast the output stays bf16 (float32 tables would promote every map to a float32 copy), equal
    # to the float32 formula to bf16 rounding
    xb = x.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cbn(xb, y)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("variant", ["port", "biggan"])
def test_fast_path_really_uses_a_fused_kernel(variant):
    """fp32 with a backward on a large map (32x32: at least FUSED_MIN_ENERGIES energies per sample) takes the
    fused kernel: no bmm / softmax in the forward and backward, so the N x N map is never materialised."""
    block = _attention(64, variant)
    x = torch.randn(2, 64, 32, 32, requires_grad=True)
    keys = 32 * 32 // (4 if variant == "biggan" else 1)
    assert 32 * 32 * keys >= attention_module.FUSED_MIN_ENERGIES
    with torch.profiler.profile() as prof:
        block(x).square().sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert "aten::bmm" not in names and "aten::_softmax" not in names
    assert any("scaled_dot_product" in n and "math" not in n for n in names)


@pytest.mark.parametrize(
    ("size", "grad"), [(16, True), (32, False)], ids=["small-map-with-backward", "large-map-no-backward"]
)
def test_fp32_cpu_takes_the_blocked_path_where_it_is_faster(size, grad):
    """Small maps, and any map without a backward (G's forward in D's step), run block by block in fp32 on the
    CPU: no fused kernel, energies only in blocks of BLOCK_ENERGIES, and the reference formulation's output
    and gradients."""
    block = _attention(64, "port")
    x = torch.randn(2, 64, size, size, requires_grad=grad)
    with torch.profiler.profile(record_shapes=True) as prof, torch.set_grad_enabled(grad):
        out = block(x)
        if grad:
            out.square().sum().backward()
    events = prof.key_averages(group_by_input_shape=True)
    assert not any("scaled_dot_product" in e.key for e in events)
    softmaxes = [e for e in events if e.key == "aten::_softmax"]
    assert softmaxes and all(math.prod(e.input_shapes[0]) <= attention_module.BLOCK_ENERGIES for e in softmaxes)
    reference = x.detach().clone().requires_grad_(grad)
    with attention_module.reference_attention(), torch.set_grad_enabled(grad):
        expected = block(reference)
        if grad:
            expected.square().sum().backward()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if grad:
        torch.testing.assert_close(x.grad, reference.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("queries", "keys", "budget"),
    [(10, 10, 1000), (10, 10, 25), (10, 10, 1), (12, 3, 7), (12, 3, 36)],
    ids=["whole-batch", "rows-of-one-sample", "one-row", "fewer-keys", "one-sample"],
)
def test_blocked_attention_equals_the_formula_and_passes_gradcheck(queries, keys, budget):
    """Every way of cutting the work into blocks gives softmax(q k^T) v, with exact gradients (float64)."""
    g = torch.Generator().manual_seed(queries * keys + budget)
    q, k, v = (torch.randn(3, n, d, generator=g, dtype=torch.float64, requires_grad=True)
               for n, d in ((queries, 4), (keys, 4), (keys, 6)))  # fmt: skip
    expected = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
    out = attention_module.blocked_attention(q, k, v, budget)
    assert out.shape == (3, queries, 6)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda *t: attention_module.blocked_attention(*t, budget), (q, k, v))


def test_blocked_attention_bf16_is_as_close_to_the_formula_as_the_fused_kernel():
    """bf16 error of the blocked path, relative to a float64 reference, within 2x the fused kernel's."""
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(4, 256, 8, generator=g) * 0.5 for _ in range(2))
    v, grad = (torch.randn(4, 256, 32, generator=g) for _ in range(2))
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    ref = torch.softmax(q64 @ k64.transpose(1, 2), dim=-1) @ v64
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), grad.double())

    def rel_errors(fn):
        qb, kb, vb = (t.bfloat16().requires_grad_() for t in (q, k, v))
        out = fn(qb, kb, vb)
        grads = torch.autograd.grad(out, (qb, kb, vb), grad.bfloat16())
        pairs = zip((out, *grads), (ref, *ref_grads), strict=True)
        return [((a.double() - b).norm() / b.norm()).item() for a, b in pairs]

    def fused(qb, kb, vb):
        pad = vb.shape[-1] - qb.shape[-1]
        qb, kb = (nn.functional.pad(t, (0, pad)).unsqueeze(1) for t in (qb, kb))
        return nn.functional.scaled_dot_product_attention(qb, kb, vb.unsqueeze(1), scale=1.0).squeeze(1)

    blocked, fused_errors = rel_errors(attention_module.blocked_attention), rel_errors(fused)
    assert all(e < 0.02 for e in blocked)
    assert all(b < 2 * f + 1e-3 for b, f in zip(blocked, fused_errors, strict=True))


def test_blocked_attention_rejects_mixed_dtypes_and_empty_blocks():
    q = torch.randn(1, 4, 2)
    with pytest.raises(ValueError, match="one dtype"):
        attention_module.blocked_attention(q, q, q.double())
    with pytest.raises(ValueError, match="at least 1"):
        attention_module.blocked_attention(q, q, q, 0)
