"""Peak memory of one SelfAttention2d forward + backward, fused path vs the explicit N x N formulation.

The explicit path materialises the (B, N, N) energy and attention maps, N = H * W, so its memory grows with
N^2 (16x from 32x32 to 64x64 feature maps); the fused path (scaled_dot_product_attention) grows with N.
Each case runs in its own process; on CPU the number is the growth of the peak resident set over the
process's baseline, on CUDA the allocator's peak.

    python benchmarks/attention_memory.py [--batch 8] [--channels 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from gankit.nn import SelfAttention2d
from gankit.nn.attention import reference_attention


def measure(size: int, path: str, batch: int, channels: int, device: str) -> dict:
    dev = torch.device(device)
    torch.manual_seed(0)
    block = SelfAttention2d(channels).to(dev)
    x = torch.randn(batch, channels, size, size, device=dev, requires_grad=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if path == "explicit":
        with reference_attention():
            block(x).square().sum().backward()
    else:
        block(x).square().sum().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"size": size, "path": path, "peak_mb": peak, "seconds": time.perf_counter() - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.child[1], args.batch, args.channels, args.device)))
        return 0
    print(f"SelfAttention2d({args.channels}) forward + backward, batch {args.batch}, device {args.device}")
    print(f"{'map':>7} {'path':>9} {'peak MB':>9} {'seconds':>8}")
    results = {}
    for size in (32, 64):
        for path in ("fused", "explicit"):
            out = subprocess.run([sys.executable, __file__, "--child", str(size), path, "--batch", str(args.batch),
                                  "--channels", str(args.channels), "--device", args.device],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[size, path] = r
            print(f"{size:>4}x{size:<2} {path:>9} {r['peak_mb']:>9.0f} {r['seconds']:>8.2f}")
    for path in ("fused", "explicit"):
        growth = results[64, path]["peak_mb"] / max(results[32, path]["peak_mb"], 1e-9)
        print(f"{path}: 64x64 / 32x32 peak memory = {growth:.1f}x (N grows 4x, N^2 16x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
