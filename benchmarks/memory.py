"""Peak memory of ``gankit sample`` against the number of samples: it streams, so it should not grow with ``--num``.

A tiny untrained SAGAN (32x32 RGB, widths 8) is exported once; each case runs ``gankit sample`` in a fresh
process and reads that process's peak resident set size (``ru_maxrss``). The baseline is the same process doing
everything but sampling (imports, loading the generator), so "over baseline" is what sampling itself costs. The
last column is what holding every image as float32 would take.

    python benchmarks/memory.py                      # 10k and 50k, .npz and folder targets
    python benchmarks/memory.py --nums 2000 10000    # quicker
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys
from gankit.cli import main
if sys.argv[1] == "baseline":
    from gankit.api import load_generator
    load_generator(sys.argv[2])
else:
    assert main(sys.argv[1:]) == 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""

SIZE, CHANNELS = 32, 3


def tiny_export(folder: Path) -> Path:
    import torch

    from gankit.models import SAGANConfig
    from gankit.models.registry import build_generator

    cfg = SAGANConfig(image_size=SIZE, channels=CHANNELS, z_dim=16, g_conv_dim=8, d_conv_dim=8,
                      g_attention_resolutions=(16,), d_attention_resolutions=(16,), num_classes=0)
    torch.manual_seed(0)
    return build_generator(cfg).save_export(folder / "tiny.safetensors")


def peak_mib(args: list[str]) -> tuple[float, float]:
    """``(peak RSS in MiB, wall seconds)`` of one child process running ``args``."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nums", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gankit-memory-") as tmp:
        work = Path(tmp)
        export = tiny_export(work)
        base, _ = peak_mib(["baseline", str(export)])
        rows = []
        for num in args.nums:
            for target in ("npz", "folder"):
                out = work / ("s.npz" if target == "npz" else "s")
                dest = str(out) if target == "npz" else f"{out}/"
                peak, wall = peak_mib(["sample", "--checkpoint", str(export), "--num", str(num), "--batch-size",
                                       str(args.batch_size), "--device", "cpu", "--no-progress", "--out", dest])
                all_images = num * CHANNELS * SIZE * SIZE * 4 / 2**20
                rows.append((target, num, peak, peak - base, all_images, wall))
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    print(f"gankit sample, {SIZE}x{SIZE}x{CHANNELS} tiny SAGAN, batch {args.batch_size}; baseline (imports + "
          f"loading the generator) {base:.0f} MiB")
    print()
    print("| target | samples | peak RSS MiB | over baseline MiB | all images (float32) MiB | wall s |")
    print("|---|---|---|---|---|---|")
    for target, num, peak, over, all_images, wall in rows:
        print(f"| {target} | {num} | {peak:.0f} | {over:.0f} | {all_images:.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
