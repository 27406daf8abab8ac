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
    "conv_one_output": lambda: nn.Conv2d(16, 1, 4),  # D's last layer: a single row
    "conv_one_input": lambda: nn.Conv2d(1, 8, 4),
    "conv_transpose": lambda: nn.ConvTranspose2d(10, 6, 4, 2, 1),
    "conv_transpose_one_output": lambda: nn.ConvTranspose2d(8, 1, 4, 2, 1),  # a grayscale to_image layer
    "conv_transpose1x1": lambda: nn.ConvTranspose2d(8, 5, 1),
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
    # eval: frozen u and v, the same weight twice, and PyTorch's
    ours.eval()
    theirs.eval()
    u = state(ours)[1].clone()
    first = ours.weight
    assert torch.equal(first, ours.weight) and torch.equal(u, state(ours)[1])
    torch.testing.assert_close(first, theirs.weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["conv_one_output", "conv_one_input", "conv_transpose_one_output", "conv1x1"])
def test_size_one_axes_read_the_weight_without_a_copy(name):
    """Size-1 axes have arbitrary strides: they must not push the layout onto the copying path."""
    for channels_last in (False, True):
        weight = LAYERS[name]().weight.detach()
        if channels_last:
            weight = weight.to(memory_format=torch.channels_last)
        dim = 1 if "transpose" in name else 0
        lay = _MatrixLayout(weight, dim)
        expect_copy = "transpose" in name and not channels_last and weight.shape[1] > 1 and weight.shape[0] > 1
        assert lay.copies == expect_copy, (name, channels_last)
        if not lay.copies:  # a view of the weight's own memory
            assert lay.matrix(weight).data_ptr() == weight.data_ptr()


@pytest.mark.parametrize("layout", ["columns_first", "permuted", "channels_last"])
def test_odd_layouts_and_expanded_gradients_match_pytorch(layout):
    """Weights in layouts no module makes by itself (the copying path included), and a gradient with zero strides
    (what ``weight.sum()`` sends back), give PyTorch's values and a gradient of the weight's shape."""
    for expanded in (False, True):
        ours, theirs = pair("conv", False)
        for m in (ours, theirs):
            raw = m.parametrizations.weight.original
            perm = {"columns_first": (3, 2, 1, 0), "permuted": (2, 0, 3, 1), "channels_last": (0, 2, 3, 1)}[layout]
            odd = raw.detach().permute(perm).contiguous().permute([perm.index(i) for i in range(4)])
            assert torch.equal(odd, raw) and odd.stride() != raw.stride()
            m.parametrizations.weight.original = nn.Parameter(odd)
        for m in (ours, theirs):
            w = m.weight
            (w.sum() if expanded else (w * torch.arange(w.numel()).reshape(w.shape).sin()).sum()).backward()
        ga, gb = state(ours)[0].grad, state(theirs)[0].grad
        assert ga.shape == gb.shape
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)


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
        return _DivideBySigma.apply(w, lay.matrix(w.detach()), u, v, lay)[0]

    def plain(w):
        natural = w.movedim(dim, 0).flatten(1)
        return w / torch.dot(u, natural @ v_natural)

    torch.testing.assert_close(fused(weight), plain(weight), rtol=1e-12, atol=1e-12)
    g = torch.randn(weight.shape, dtype=torch.float64)
    (a,) = torch.autograd.grad(fused(weight), weight, g)
    (b,) = torch.autograd.grad(plain(weight), weight, g)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fused, (weight,))


@pytest.mark.parametrize("channels_last", [False, True])
def test_second_derivatives_through_the_weight_are_exact(channels_last):
    """gradgradcheck in float64, and a penalty on the parameter gradient equal to PyTorch's."""
    torch.manual_seed(0)
    conv = maybe_spectral_norm(nn.Conv2d(3, 4, 2).double())
    if channels_last:
        conv.to(memory_format=torch.channels_last)
    conv.eval()
    raw = state(conv)[0].detach().clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(conv.parametrizations.weight[0], (raw,))
    hessians = []
    for make in (maybe_spectral_norm, torch_spectral_norm):
        torch.manual_seed(0)
        m = make(nn.Linear(4, 3).double()).eval()
        w = m.parametrizations.weight.original
        x = torch.randn(5, 4, dtype=torch.float64)
        (g,) = torch.autograd.grad(m(x).square().sum(), w, create_graph=True)
        (h,) = torch.autograd.grad(g.square().sum(), w)
        hessians.append(h)
    torch.testing.assert_close(hessians[0], hessians[1], rtol=1e-9, atol=1e-9)


def test_builds_on_the_meta_device_and_works_with_torch_func():
    with torch.device("meta"):
        conv = maybe_spectral_norm(nn.Conv2d(4, 6, 3))
    assert conv.weight.device.type == "meta" and conv.weight.shape == (6, 4, 3, 3)
    torch.manual_seed(0)
    ours, theirs = maybe_spectral_norm(nn.Linear(4, 3)).eval(), torch_spectral_norm(nn.Linear(4, 3)).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4)

    def loss(params, m):
        return torch.func.functional_call(m, params, (x,)).square().sum()

    grads = [torch.func.grad(loss)(dict(m.named_parameters()), m) for m in (ours, theirs)]
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], rtol=1e-5, atol=1e-6)


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
    plain = nn.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match="n_power_iterations"):
        maybe_spectral_norm(plain, n_power_iterations=0)
    assert not parametrize.is_parametrized(plain, "weight")  # the module is left as it was
