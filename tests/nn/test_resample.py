"""The folded resampling convolutions equal the two-step forms they replace: exactly in float64 (the algebra),
to float rounding in float32, to bf16 rounding under autocast; forward and every gradient."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.nn import conv1x1_avgpool, conv3x3_avgpool, maybe_spectral_norm, upsample_conv1x1, upsample_conv3x3


def two_step_upsample(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def two_step_pool(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(conv(x), 2)


# (folded, its two-step form, the kernel size it takes)
CASES = [(upsample_conv3x3, two_step_upsample, 3), (conv3x3_avgpool, two_step_pool, 3),
         (upsample_conv1x1, two_step_upsample, 1), (conv1x1_avgpool, two_step_pool, 1)]  # fmt: skip


def conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    """A k x k convolution with "same" padding."""
    return nn.Conv2d(c_in, c_out, k, 1, k // 2)


def outputs_and_grads(fn, conv: nn.Module, x: torch.Tensor, grad_seed: int = 1):
    """``fn(conv, x)`` and the gradients of a fixed random projection of it w.r.t. x, the weight and the bias."""
    x = x.detach().requires_grad_()
    out = fn(conv, x)
    g = torch.Generator().manual_seed(grad_seed)
    direction = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    params = [conv.parametrizations.weight.original if hasattr(conv, "parametrizations") else conv.weight, conv.bias]
    grads = torch.autograd.grad((out.float() * direction.float()).sum(), [x, *params])
    return out, grads


@pytest.mark.parametrize(("folded", "two_step", "k"), CASES)
@pytest.mark.parametrize("size", [(4, 4), (8, 6), (7, 9)])
def test_the_fold_is_exact_in_float64(folded, two_step, k, size):
    torch.manual_seed(0)
    layer = conv(5, 6, k).double()
    x = torch.randn(3, 5, *size, dtype=torch.float64)
    (got, got_grads), (want, want_grads) = outputs_and_grads(folded, layer, x), outputs_and_grads(two_step, layer, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize(("folded", "two_step", "k"), CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_with_spectral_norm_agrees_to_rounding_and_keeps_the_memory_format(folded, two_step, k, channels_last):
    torch.manual_seed(0)
    plain = conv(16, 24, k)
    plain.weight.data *= 5  # spectral norm well above 1, so that reading the raw weight would show
    layer = maybe_spectral_norm(plain, True).eval()  # eval: u frozen, both forms read one weight
    x = torch.randn(4, 16, 8, 8)
    if channels_last:
        layer, x = layer.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    (got, got_grads), (want, want_grads) = outputs_and_grads(folded, layer, x), outputs_and_grads(two_step, layer, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last) is channels_last
    # the fold read the normalised weight (what a plain conv with that weight folds to), not the raw one
    raw = layer.parametrizations.weight.original
    assert torch.linalg.matrix_norm(raw.detach().flatten(1), 2) > 1.5
    unit = conv(16, 24, k).eval()
    unit.weight.data, unit.bias.data = layer.weight.detach().clone(), layer.bias.detach().clone()
    torch.testing.assert_close(folded(unit, x), got.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("folded", "two_step", "k"), CASES)
def test_under_bf16_autocast_the_result_is_bf16_and_close_to_float32(folded, two_step, k):
    torch.manual_seed(0)
    layer = conv(32, 32, k)
    x = torch.randn(2, 32, 8, 8)
    reference = two_step(layer, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, low = folded(layer, x), two_step(layer, x)
    assert got.dtype == low.dtype == torch.bfloat16
    # the fold's error against float32 is no larger than the two-step form's own bf16 error (give or take)
    err_folded = (got.float() - reference).abs().max()
    err_two_step = (low.float() - reference).abs().max()
    assert err_folded < 2 * err_two_step + 1e-3
    torch.testing.assert_close(got.float(), reference, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("folded", [upsample_conv3x3, conv3x3_avgpool])
@pytest.mark.parametrize("conv", [nn.Conv2d(4, 4, 5, 1, 2), nn.Conv2d(4, 4, 3, 1, 0), nn.Conv2d(4, 4, 3, 2, 1),
                                  nn.Conv2d(4, 4, 3, 1, 1, padding_mode="reflect")])  # fmt: skip
def test_other_convolutions_are_refused(folded, conv):
    with pytest.raises(ValueError, match="3x3 convolution with stride 1 and padding 1"):
        folded(conv, torch.randn(1, 4, 8, 8))


@pytest.mark.parametrize("folded", [upsample_conv1x1, conv1x1_avgpool])
@pytest.mark.parametrize("conv", [nn.Conv2d(4, 4, 3, 1, 1), nn.Conv2d(4, 4, 1, 2, 0), nn.Conv2d(4, 4, 1, 1, 1),
                                  nn.Conv2d(4, 4, 1, groups=2)])  # fmt: skip
def test_other_shortcut_convolutions_are_refused(folded, conv):
    with pytest.raises(ValueError, match="1x1 convolution with stride 1 and no padding"):
        folded(conv, torch.randn(1, 4, 8, 8))


def test_the_two_step_context_runs_the_plain_form_and_counts_the_network_flops():
    from torch.utils.flop_counter import FlopCounterMode

    from gankit.nn.resample import two_step_resampling

    torch.manual_seed(0)
    b, c_in, c_out, h = 2, 6, 10, 4
    up_conv, pool_conv = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_in, c_out, 3, 1, 1)
    x = torch.randn(b, c_in, h, h)
    counts = {}
    for two_step in (False, True):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            if two_step:
                with two_step_resampling():
                    up, pooled = upsample_conv3x3(up_conv, x), conv3x3_avgpool(pool_conv, x)
            else:
                upsample_conv3x3(up_conv, x), conv3x3_avgpool(pool_conv, x)
        counts[two_step] = counter.get_total_flops()
    with torch.no_grad():  # the context's results are the plain form's, bit for bit
        torch.testing.assert_close(up, two_step_upsample(up_conv, x), rtol=0, atol=0)
        torch.testing.assert_close(pooled, two_step_pool(pool_conv, x), rtol=0, atol=0)
    macs = c_in * c_out * b
    # two-step: 9 taps per pixel of the 2h x 2h upsampled map, and per pixel of the h x h map before the pool
    assert counts[True] == 2 * macs * 9 * ((2 * h) ** 2 + h**2)
    # folded: 16 taps per input pixel of the transposed convolution, per output pixel of the strided one
    assert counts[False] == 2 * macs * 16 * (h**2 + (h // 2) ** 2)
