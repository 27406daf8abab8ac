"""Spectral norm on SAGAN-64's weights: gankit's parametrization against PyTorch's, in one process.

Both are applied to copies of the same layers (the ``sagan-celeba64`` G and D shapes, channels_last as gankit
trains them); each round times, interleaved, the forward without a graph (G's pass in D's step) and forward +
backward (a training pass) of every spectrally normalised weight. Medians over the rounds, and their ratio.

    python benchmarks/spectral_norm.py
    python benchmarks/spectral_norm.py --rounds 30 --contiguous
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from gankit.config import resolve_config
from gankit.models import build_discriminator, build_generator
from gankit.nn import maybe_spectral_norm


def sagan64_layers(channels_last: bool) -> list[nn.Module]:
    """Plain copies of every spectrally normalised layer of the sagan-celeba64 G and D."""
    cfg = resolve_config("sagan-celeba64").model
    layers = []
    for net in (build_generator(cfg), build_discriminator(cfg)):
        for m in net.modules():
            if parametrize.is_parametrized(m, "weight"):
                plain = copy.deepcopy(m)
                parametrize.remove_parametrizations(plain, "weight", leave_parametrized=False)
                layers.append(plain)
    if channels_last:
        layers = [m.to(memory_format=torch.channels_last) for m in layers]
    return layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--contiguous", action="store_true", help="NCHW weights instead of channels_last")
    args = ap.parse_args()
    layers = sagan64_layers(channels_last=not args.contiguous)
    impls = {
        "pytorch": [torch_spectral_norm(copy.deepcopy(m)) for m in layers],
        "gankit": [maybe_spectral_norm(copy.deepcopy(m)) for m in layers],
    }
    grads = [torch.randn(m.weight.shape).to(memory_format=torch.channels_last if not args.contiguous
                                            else torch.contiguous_format) for m in layers]  # fmt: skip

    def forward(mods):
        with torch.no_grad():
            for m in mods:
                m.weight  # noqa: B018 (the parametrization runs on access)

    def forward_backward(mods):
        for m, g in zip(mods, grads, strict=True):
            m.weight.backward(g)

    params = sum(m.weight.numel() for m in layers)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(layers)} SN weights, "
          f"{params / 1e6:.2f}M parameters, {'NCHW' if args.contiguous else 'channels_last'}")  # fmt: skip
    results: dict[tuple[str, str], list[float]] = {}
    for mods in impls.values():  # warm-up
        forward(mods)
        forward_backward(mods)
    for _ in range(args.rounds):
        for what, fn in (("forward", forward), ("forward+backward", forward_backward)):
            for name, mods in impls.items():
                t0 = time.perf_counter()
                fn(mods)
                results.setdefault((name, what), []).append(time.perf_counter() - t0)
    for what in ("forward", "forward+backward"):
        ms = {name: 1000 * statistics.median(results[(name, what)]) for name in impls}
        print(f"{what:18s} pytorch {ms['pytorch']:6.2f} ms   gankit {ms['gankit']:6.2f} ms   "
              f"{ms['pytorch'] / ms['gankit']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
