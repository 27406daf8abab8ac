"""Sampling speed on the CPU: onnxruntime running ``gankit export --format onnx`` files against PyTorch.

For each preset's generator (untrained: the speed does not depend on the weights) three samplers make the same
``--batch`` images per call through ``G.sample`` (latents and labels drawn as ``gankit sample`` draws them):
``pytorch`` (the generator as ``gankit sample`` loads it, spectral norm as a parametrization in eval mode),
``pytorch-folded`` (spectral norm folded, as in the ONNX file) and ``onnxruntime`` (the exported file, dynamic
batch, through :class:`gankit.apps.onnx.OnnxGenerator`). Each round times one call of each, in turn (interleaved,
so a busy machine slows all alike; each goes first in turn, and onnxruntime's threads do not spin between runs);
the table shows the medians in images per second and onnxruntime's ratio to both PyTorch forms. Both runtimes get
``--threads`` threads.

    python benchmarks/onnx_sample.py
    python benchmarks/onnx_sample.py --presets sagan-celeba64 --batch 64 --rounds 20 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from gankit.apps import onnx as gankit_onnx
from gankit.apps.onnx import OnnxGenerator, export_onnx
from gankit.config import resolve_config
from gankit.models import build_generator
from gankit.nn import fold_spectral_norm

PRESETS = ("sagan-celeba64", "sngan-cifar10-resnet", "dcgan-digits", "pgan-digits")


def generator(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    G = build_generator(resolve_config(preset).model)
    if getattr(G, "grows_progressively", False):
        G.set_scale(G.config.num_scales - 1)  # fully grown
    return G.eval().requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--batch", type=int, default=32, help="images per call (default 32)")
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds after one warm-up (default 10)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads of both runtimes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    options.log_severity_level = 3
    # onnxruntime's threads spin for a while after each run by default: on a small machine they would take the
    # cores from the PyTorch call timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    gankit_onnx._session = lambda model: ort.InferenceSession(  # the benchmark's thread count
        model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"])

    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{args.rounds} rounds (median img/s)")  # fmt: skip
    print("| preset | image | pytorch | pytorch-folded | onnxruntime | ort / pytorch | ort / folded |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            G = generator(preset)
            folded = fold_spectral_norm(copy.deepcopy(G))
            path = Path(tmp) / f"{preset}.onnx"
            path.write_bytes(export_onnx(copy.deepcopy(G), dynamic_batch=True, batch_size=args.batch)[0])
            samplers = {"pytorch": G, "pytorch-folded": folded, "onnxruntime": OnnxGenerator(path)}
            times: dict[str, list[float]] = {name: [] for name in samplers}
            names = list(samplers)
            for r in range(args.rounds + 1):
                for name in names[r % 3 :] + names[: r % 3]:  # each sampler goes first in turn
                    sampler = samplers[name]
                    g = torch.Generator().manual_seed(r)
                    t0 = time.perf_counter()
                    sampler.sample(args.batch, generator=g)
                    if r:  # round 0 warms up
                        times[name].append(time.perf_counter() - t0)
            rate = {name: args.batch / statistics.median(t) for name, t in times.items()}
            size = f"{G.channels}x{G.image_size}x{G.image_size}"
            print(f"| {preset} | {size} | {rate['pytorch']:.0f} | {rate['pytorch-folded']:.0f} | "
                  f"{rate['onnxruntime']:.0f} | {rate['onnxruntime'] / rate['pytorch']:.2f} | "
                  f"{rate['onnxruntime'] / rate['pytorch-folded']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
