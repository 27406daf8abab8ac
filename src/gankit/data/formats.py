"""What a ``--data`` path is, and the array formats behind it: detection, MNIST / CIFAR-10 arrays, which splits a
dataset has, and the decoding worker settings shared by training and ``gankit prepare``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gankit.data.cache import is_cache_file
from gankit.data.cifar import cifar10_classes, cifar10_splits, load_cifar10, looks_like_cifar10
from gankit.data.mnist import load_mnist, looks_like_mnist, mnist_splits
from gankit.errors import UserError


def default_workers() -> int:
    """Decoding processes when ``data.num_workers`` is unset: one core is left to the training process."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, n - 1))


def worker_init(_worker_id: int) -> None:
    # Workers only run Pillow; torch's thread pool in each of them would oversubscribe the cores training uses.
    torch.set_num_threads(1)


def detect_dataset(path: str | Path) -> str:
    """``folder``, ``mnist``, ``cifar10`` or ``cache`` from what is at ``path``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"--data {p} does not exist; check the path")
    if p.is_file():
        if is_cache_file(p):
            return "cache"
        if looks_like_mnist(p):
            return "mnist"
        if looks_like_cifar10(p):
            return "cifar10"
        raise UserError(
            f"--data {p} is a file gankit does not recognise; give an image folder, MNIST's IDX files, CIFAR-10's "
            "data_batch_*.bin, or a cache from gankit prepare (or name the format with --dataset)"
        )
    if looks_like_mnist(p):
        return "mnist"
    if looks_like_cifar10(p):
        return "cifar10"
    return "folder"


def load_arrays(kind: str, path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images uint8 (N, C, H, W), labels int64 (N,), class names)`` of an MNIST or CIFAR-10 source."""
    if kind == "mnist":
        x, y = load_mnist(path, split)
        return x, y, [str(i) for i in range(max(10, int(y.max()) + 1))]  # MNIST and its drop-ins: 10 classes
    if kind == "cifar10":
        x, y = load_cifar10(path, split)
        return x, y, cifar10_classes(path)
    raise ValueError(kind)


def has_split(kind: str, path: str | Path | None, split: str) -> bool:
    """Whether a dataset of ``kind`` at ``path`` has ``split`` (MNIST / CIFAR-10 files; the digits have all three;
    folders and caches have only ``train``)."""
    if kind == "digits":
        return split in ("train", "test", "all")
    if kind == "mnist":
        return split in mnist_splits(path)
    if kind == "cifar10":
        return split in cifar10_splits(path)
    return split == "train"
