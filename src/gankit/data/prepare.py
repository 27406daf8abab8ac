"""``gankit prepare``: decode a dataset once into a memory-mappable cache (:mod:`gankit.data.cache`).

Memory stays bounded whatever the dataset's size: images are decoded (folders: in worker processes) and resized
a chunk at a time and each chunk is written to the file before the next is made. The file is written through
:func:`gankit.io.atomic_write`, so a ``prepare`` killed midway leaves only a temporary ``.OUT.xxxxxxxx.tmp`` that
nothing reads as a cache; the next ``prepare`` of the same OUT removes such leftovers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.data.cache import write_cache
from gankit.data.cifar import cifar10_splits
from gankit.data.decode import BadImage, fit_arrays
from gankit.data.folder import FolderDataset, scan_folder
from gankit.data.formats import default_workers, detect_dataset, load_arrays, worker_init
from gankit.data.mnist import mnist_splits
from gankit.errors import UserError
from gankit.io import remove_stale_temporaries
from gankit.log import info, warn

CHUNK = 4096  # MNIST / CIFAR-10 images resized and written at a time (fewer for large sizes: CHUNK_BYTES)
CHUNK_BYTES = 256 * 2**20  # at most this much resized image data in memory at once
MAX_SIZE = 1024  # the largest image any gankit model makes (a Progressive GAN's last scale)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_cache_fits(out: Path, count: int, size: int, channels: int) -> None:
    """Refuse, before decoding, a cache larger than the free space of its folder."""
    need = count * channels * size * size
    free = shutil.disk_usage(out.parent).free
    if need > free:
        raise UserError(f"--out {out}: {count} images of {channels}x{size}x{size} take {need / 2**30:.1f} GiB but "
                        f"{out.parent} has {free / 2**30:.1f} GiB free; lower --size or write elsewhere")


def prepare_cache(
    data: str | Path,
    out: str | Path,
    *,
    size: int,
    channels: int = 3,
    labels: bool = False,
    dataset: str | None = None,
    split: str = "train",
    strict: bool = False,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Decode every image of ``data`` once (folder: in ``workers`` processes), resize and crop to ``size``, and
    write one memory-mappable cache to ``out``. Returns the cache header."""
    data, out = Path(data), Path(out)
    if not data.exists():
        raise UserError(f"--data {data} does not exist; check the path")
    if size < 1 or channels not in (1, 3):
        raise UserError(f"--size must be >= 1 and --channels 1 or 3, got {size} and {channels}")
    if size > MAX_SIZE:
        raise UserError(f"--size {size} is larger than any gankit model's images (at most {MAX_SIZE}); give the "
                        "image size S of the model you will train")
    if data.is_dir() and _inside(out, data):
        raise UserError(f"--out {out} is inside the data folder {data}; gankit never writes there, choose another path")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} already exists; choose another path or add --overwrite")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'data.gkc'}")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    kind = dataset or detect_dataset(data)
    if kind in ("cache", "digits"):
        raise UserError(f"--data {data} is a {kind} dataset and needs no cache; give an image folder, MNIST or CIFAR")
    workers = default_workers() if workers is None else workers
    meta = {"source": str(data.resolve()), "dataset": kind, "split": split if kind != "folder" else None}
    t0 = time.perf_counter()
    for stale in remove_stale_temporaries(out.parent, out.name):
        info(f"prepare: removed {stale}, left by an earlier prepare of {out} that did not finish")
    if kind == "folder":
        index = scan_folder(data, size=size, labels=labels, strict=strict, workers=workers, progress=progress)
        ds = FolderDataset(index, size, channels)
        check_cache_fits(out, len(ds), size, channels)
        header = write_cache(
            out,
            _decode_in_order(ds, workers, strict),
            total=len(ds),
            size=size,
            channels=channels,
            classes=index.classes,
            meta=meta,
            skipped=len(index.skipped),
            progress=progress,
        )
    else:
        if labels:
            raise UserError(f"--labels subdirs is for image folders; {kind} files carry their own labels")
        _check_split(kind, data, split)
        images, y, classes = load_arrays(kind, data, split)  # the source arrays: 50-180 MB for these formats
        check_cache_fits(out, len(images), size, channels)
        # resized a chunk at a time: at a large --size the resized dataset can be far larger than memory
        step = max(1, min(CHUNK, CHUNK_BYTES // (channels * size * size)))
        chunks = ((fit_arrays(images[i : i + step], size, channels), y[i : i + step])
                  for i in range(0, len(images), step))
        header = write_cache(
            out, chunks, total=len(images), size=size, channels=channels, classes=classes, meta=meta, progress=progress
        )
    info(
        f"prepare: wrote {header['count']} images of {channels}x{size}x{size} to {out} "
        f"in {time.perf_counter() - t0:.1f} s" + (f" ({header['skipped']} skipped)" if header["skipped"] else "")
    )
    return header


SPLITS = ("train", "test", "all")


def _check_split(kind: str, data: Path, split: str) -> None:
    """Refuse a ``--split`` that ``data`` does not hold, naming the ones it does (the readers' own messages speak of
    ``data.split``, the config key of training)."""
    if split not in SPLITS:
        raise UserError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    splits = {"mnist": mnist_splits, "cifar10": cifar10_splits}.get(kind)
    there = splits(data) if splits is not None and data.is_dir() else set()  # a single file is read as it is
    if there and split not in there:  # none at all: the reader says what files it looked for
        have = " or ".join(s for s in SPLITS if s in there)
        raise UserError(f"--split {split}: {data} holds no {split} split of {kind}; give --split {have}")


class _Chunks:
    """Map-style dataset whose items are chunks of consecutive indices, decoded in a DataLoader worker."""

    def __init__(self, ds: Any, chunk: int) -> None:
        self.ds, self.chunk = ds, chunk

    def __len__(self) -> int:
        return -(-len(self.ds) // self.chunk)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, np.ndarray, list[tuple[str, str]]]:
        idx = range(k * self.chunk, min((k + 1) * self.chunk, len(self.ds)))
        images, keep, failures = [], [], []
        for i in idx:
            try:
                images.append(self.ds.decode(i))
                keep.append(i)
            except BadImage as exc:
                failures.append((self.ds.path(i), str(exc)))
        shape = (0, self.ds.channels, self.ds.size, self.ds.size)
        x = torch.from_numpy(np.stack(images)) if images else torch.empty(shape, dtype=torch.uint8)
        return x, np.asarray(keep, dtype=np.int64), failures


def _decode_in_order(ds: Any, workers: int, strict: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Decoded chunks of a :class:`FolderDataset` in listing order; files that fail are warned about and left out
    (with ``strict``: an error)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _Chunks(ds, 64),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=worker_init if workers else None,
        prefetch_factor=4 if workers else None,
    )
    for x, keep, failures in loader:
        for path, reason in failures:
            if strict:
                raise UserError(f"{path}: {reason}; remove or replace it, or drop --strict to skip bad files")
            warn(f"skipped {path}: {reason}")
        yield x.numpy(), (ds.labels[keep] if ds.labels is not None else None)
