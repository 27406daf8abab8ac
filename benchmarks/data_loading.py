"""Real-data throughput: decoding JPEGs on the fly vs reading a ``gankit prepare`` cache vs what training consumes.

Writes a temporary folder of CelebA-sized JPEGs (178x218, smooth synthetic photos, ~10 KB each like CelebA's) and
measures, at the SAGAN-64 model size (resize the shorter side to 64, centre crop):

1. decode on the fly: ``FolderBatches`` (the training loader) in-process and with worker processes;
2. ``gankit prepare`` (decode once, in workers) and reading the cache (``ArrayBatches`` over ``np.memmap``);
3. the SAGAN-64 training iteration's consumption (``Trainer.train_step`` of ``sagan-celeba64``).

Every rate counts images delivered as float32 ``(B, 3, 64, 64)`` tensors in [-1, 1], the trainer's input.

    python benchmarks/data_loading.py                       # 2000 images, batch 64, train batch 16
    python benchmarks/data_loading.py --images 500 --train-iters 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gankit.data import ArrayBatches, FolderBatches, open_cache, prepare_cache
from gankit.data.folder import FolderDataset, scan_folder
from gankit.data.loader import default_workers

SIZE = 64
CELEBA_WH = (178, 218)


def write_jpegs(folder: Path, n: int, seed: int = 0) -> float:
    """``n`` smooth synthetic 178x218 photos (low-frequency colour fields plus grain); returns mean KB per file."""
    rng = np.random.default_rng(seed)
    w, h = CELEBA_WH
    total = 0
    for i in range(n):
        field = Image.fromarray(rng.integers(0, 256, (7, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        arr = np.asarray(field, dtype=np.int16) + rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total / n / 1024


def rate(batches, batch: int, n_batches: int) -> float:
    """Images per second over ``n_batches`` after one warm-up batch (workers started, caches touched)."""
    batches.next()
    t0 = time.perf_counter()
    for _ in range(n_batches):
        batches.next()
    return batch * n_batches / (time.perf_counter() - t0)


def training_rate(batch: int, iters: int) -> float:
    """Real images the ``sagan-celeba64`` iteration (1 D + 1 G step) consumes per second at ``batch``."""
    from gankit.apps.bench import synthetic_trainer

    trainer = synthetic_trainer("sagan-celeba64", batch_size=batch, device="cpu")
    n_critic = trainer.cfg.training.n_critic
    trainer.gan.train_step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        trainer.gan.train_step()
    return batch * n_critic * iters / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to generate (default 2000)")
    parser.add_argument("--batch", type=int, default=64, help="loader batch size (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")
    parser.add_argument("--train-batch", type=int, default=16, help="SAGAN-64 training batch (default 16)")
    parser.add_argument("--train-iters", type=int, default=3, help="timed training iterations (default 3)")
    args = parser.parse_args()
    workers = default_workers() if args.workers is None else args.workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"gankit data loading, {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="gankit-data-bench-") as tmp:
        folder = Path(tmp) / "celeba"
        folder.mkdir()
        t0 = time.perf_counter()
        kb = write_jpegs(folder, args.images)
        print(f"wrote {args.images} JPEGs of {CELEBA_WH[0]}x{CELEBA_WH[1]} ({kb:.1f} KB each) in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip

        t0 = time.perf_counter()
        index = scan_folder(folder, size=SIZE, workers=workers, quiet=True)
        scan = len(index) / (time.perf_counter() - t0)
        ds = FolderDataset(index, SIZE, 3)
        n_batches = max(1, min(args.images, 1024) // args.batch)
        results = {"listing + checks": scan}
        for w in sorted({0, workers}):
            loader = FolderBatches(ds, batch_size=args.batch, seed=0, device=cpu, num_workers=w)
            results[f"decode on the fly, {w} worker(s)"] = rate(loader, args.batch, n_batches)
            loader.close()

        cache = Path(tmp) / "celeba64.gkc"
        t0 = time.perf_counter()
        prepare_cache(folder, cache, size=SIZE, workers=workers, progress=False)
        results[f"gankit prepare, {workers} worker(s)"] = args.images / (time.perf_counter() - t0)
        images, _, _ = open_cache(cache)
        cached = ArrayBatches(images, None, batch_size=args.batch, seed=0, device=cpu)
        results["read from the cache"] = rate(cached, args.batch, max(n_batches, 200))

        results[f"SAGAN-64 training consumes (batch {args.train_batch})"] = training_rate(
            args.train_batch, args.train_iters
        )

    print(f"{'what':<45} {'img/s':>10}")
    for name, value in results.items():
        print(f"{name:<45} {value:>10.0f}")
    decode = max(v for k, v in results.items() if k.startswith("decode"))
    read = results["read from the cache"]
    train = results[f"SAGAN-64 training consumes (batch {args.train_batch})"]
    print(f"cache / best on-the-fly decoding: {read / decode:.0f}x; cache / training consumption: {read / train:.0f}x; "
          f"best on-the-fly decoding / training: {decode / train:.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
