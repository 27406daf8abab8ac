"""gankit's SpectralNorm against PyTorch's parametrization: same draws, same u / v, same weight, same gradient,
same state-dict keys, in every memory layout gankit uses; its fused gradient against autograd in float64."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from gankit.nn import maybe_spectral_norm
from gankit.nn.spectral import SpectralNorm, _DivideBySigma, _MatrixLayout

LAYERS = {
    "conv": lambda: nn.Conv2d(6, 10, 3),
    "conv1x1": lambda: nn.Conv2d(12, 5, 1),
    "conv_transpose": lambda: nn.ConvTranspose2d(10, 6, 4, 2, 1),
    "linear": lambda: nn.Linear(7, 9),
    "embedding": lambda: nn.Embedding(5, 8),
}


def pair(name: str, channels_last: bool, seed: int = 0):
    torch.manual_seed(seed)
    ours = maybe_spectral_norm(LAYERS[name]())
    torch.manual_seed(seed)
    theirs = torch_spectral_norm(LAYERS[name]())
    if channels_last:
        ours.to(memory_format=torch.channels_last)
        theirs.to(memory_format=torch.channels_last)
    return ours, theirs


def cases():
    for name in LAYERS:
        yield name, False
        if name.startswith("conv"):
            yield name, True


def state(m: nn.Module):
    p = m.parametrizations.weight
    return p.original, p[0]._u, p[0]._v


@pytest.mark.parametrize(("name", "channels_last"), list(cases()))
def test_matches_pytorch_spectral_norm_forward_backward_and_iterations(name, channels_last):
    ours, theirs = pair(name, channels_last)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for a, b in zip(state(ours), state(theirs), strict=True):  # same draws and the same 15 warm-up iterations
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    original = state(ours)[0]
    torch.manual_seed(1)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    grad_out = torch.randn(original.shape).to(memory_format=layout)
    for _ in range(3):  # training mode: each forward is one more power iteration
        w_ours, w_theirs = ours.weight, theirs.weight
        assert w_ours.stride() == original.stride()  # the weight keeps its memory format
        torch.testing.assert_close(w_ours, w_theirs, rtol=1e-5, atol=1e-6)
        w_ours.backward(grad_out)
        w_theirs.backward(grad_out)
    torch.testing.assert_close(original.grad, state(theirs)[0].grad, rtol=1e-4, atol=1e-6)
    for a, b in zip(state(ours)[1:], state(theirs)[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # eval: frozen u and v, the same weight twice
    ours.eval()
    u = state(ours)[1].clone()
    torch.testing.assert_close(ours.weight, ours.weight, rtol=0, atol=0)
    assert torch.equal(u, state(ours)[1])


def test_state_dicts_load_across_implementations():
    ours, theirs = pair("conv", True, seed=0)
    _, other = pair("conv", True, seed=3)
    ours.load_state_dict(other.state_dict())
    for a, b in zip(state(ours), state(other), strict=True):
        assert torch.equal(a, b)
    ours.eval()
    other.eval()
    torch.testing.assert_close(ours.weight, other.weight, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed_conv_contiguous"])
def test_fused_gradient_equals_autograd_in_float64(layout):
    """The one-formula gradient of W / (u^T W v) against gradcheck, for a view layout and a copying one."""
    torch.manual_seed(0)
    if layout == "transposed_conv_contiguous":  # dim 1 in the middle of memory order: the copying path
        weight, dim = torch.randn(4, 3, 2, 2, dtype=torch.float64), 1
    else:
        weight, dim = torch.randn(3, 4, 2, 2, dtype=torch.float64), 0
        if layout == "channels_last":
            weight = weight.to(memory_format=torch.channels_last)
    lay = _MatrixLayout(weight, dim)
    assert lay.copies == (layout == "transposed_conv_contiguous")
    h = weight.shape[dim]
    u = torch.nn.functional.normalize(torch.randn(h, dtype=torch.float64), dim=0)
    v_natural = torch.nn.functional.normalize(torch.randn(weight.numel() // h, dtype=torch.float64), dim=0)
    v = lay.to_memory(v_natural)
    weight.requires_grad_(True)

    def fused(w):
        return _DivideBySigma.apply(w, lay.matrix(w.detach()), u, v, lay)

    def plain(w):
        natural = w.movedim(dim, 0).flatten(1)
        return w / torch.dot(u, natural @ v_natural)

    torch.testing.assert_close(fused(weight), plain(weight), rtol=1e-12, atol=1e-12)
    g = torch.randn(weight.shape, dtype=torch.float64)
    (a,) = torch.autograd.grad(fused(weight), weight, g)
    (b,) = torch.autograd.grad(plain(weight), weight, g)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fused, (weight,))


def test_gradient_penalty_through_spectral_norm_matches_pytorch():
    """A penalty on d D / d x backpropagates to the raw weight through the parametrization (WGAN-GP with SN)."""
    grads = []
    for make in (maybe_spectral_norm, torch_spectral_norm):
        torch.manual_seed(0)
        d = make(nn.Conv2d(3, 4, 3))
        x = torch.randn(2, 3, 5, 5, requires_grad=True)
        (gx,) = torch.autograd.grad(torch.tanh(d(x)).sum(), x, create_graph=True)
        gx.square().sum().backward()
        grads.append(d.parametrizations.weight.original.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_runs_in_float32_under_bf16_autocast():
    conv = maybe_spectral_norm(nn.Conv2d(4, 8, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = conv.weight
        y = conv(torch.randn(1, 4, 6, 6))
    assert w.dtype == torch.float32 and conv.parametrizations.weight[0]._u.dtype == torch.float32
    assert y.dtype == torch.bfloat16


def test_parametrization_is_gankits_and_rejects_bad_iterations():
    conv = maybe_spectral_norm(nn.Conv2d(2, 3, 3), n_power_iterations=2)
    assert isinstance(conv.parametrizations.weight[0], SpectralNorm)
    assert parametrize.is_parametrized(conv, "weight")
    with pytest.raises(ValueError, match="n_power_iterations"):
        SpectralNorm(torch.randn(3, 2), n_power_iterations=0)
