"""The shared blocks' shortcuts equal the layers they stand in for."""

import pytest
import torch
from torch import nn

from gankit.models.blocks import GConvBlock, project_point
from gankit.nn import maybe_spectral_norm


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_project_point_equals_the_transposed_convolution(channels_last, bias):
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(16, 32, 4, 1, 0, bias=bias)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(5, 16, 1, 1, requires_grad=True)
    expected, got = conv(x), project_point(conv, x)
    assert got.shape == (5, 32, 4, 4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert got.is_contiguous(memory_format=torch.channels_last) is channels_last
    grad = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, x, grad)[0], torch.autograd.grad(expected, x, grad)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # low precision like the convolution, bias included
        expected, got = conv(x), project_point(conv, x)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_generator_block_on_a_1x1_map_takes_the_matmul_and_keeps_its_output():
    torch.manual_seed(0)
    conv = maybe_spectral_norm(nn.ConvTranspose2d(8, 16, 4, 1, 0), True)
    block = GConvBlock(conv, 16, num_classes=0, init="normal").eval()  # eval: frozen u, running BN stats
    z = torch.randn(3, 8, 1, 1)
    with torch.autograd.profiler.profile() as prof:
        out = block(z, None)
    names = {e.name for e in prof.function_events}
    assert "aten::convolution" not in names and "aten::addmm" in names
    reference = torch.relu(block.norm(block.conv(z), None))  # the module's own convolution
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    h = torch.randn(3, 8, 2, 2)  # any larger map keeps the convolution
    torch.testing.assert_close(block(h, None), torch.relu(block.norm(block.conv(h), None)))
