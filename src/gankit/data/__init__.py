"""Datasets and the batch streams the trainer draws from.

Sources: image folders of any depth (optionally one sub-folder per class), MNIST's IDX files, CIFAR-10's binary
batches, a ``gankit prepare`` cache (memory-mapped), and the built-in scikit-learn digits. :func:`open_dataset`
opens one (``auto`` detects it from the path); :meth:`DataSource.batches` gives the trainer's batch stream.
"""

from __future__ import annotations

import numpy as np
import torch

from gankit.data.cache import open_cache, prepare_cache, read_header
from gankit.data.digits import NUM_DIGIT_CLASSES, digits_tensor, load_digits_split
from gankit.data.loader import (
    DATASETS,
    ArrayBatches,
    DataBatches,
    DataSource,
    FolderBatches,
    TensorBatches,
    detect_dataset,
    open_dataset,
)
from gankit.data.sampler import InfiniteSampler


def load_dataset(
    dataset: str, path: str | None, *, split: str, image_size: int, channels: int, labels: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Every image at once: ``(images (N, C, S, S) in [-1, 1], labels (N,) or None, num_classes)``.

    For evaluation on small sets; training streams through :func:`open_dataset` instead (a folder is decoded here
    in full, in this process).
    """
    src = open_dataset(dataset, path, split=split, image_size=image_size, channels=channels, labels=labels)
    y = None
    if src.tensors is not None:
        x, y = src.tensors
    elif src.folder is not None:
        arr, lab, _ = src.folder.decode_batch(range(len(src.folder)))
        x = torch.from_numpy(arr).float() / 127.5 - 1
        y = torch.from_numpy(lab) if lab is not None else None
    else:
        assert src.images is not None
        x = torch.from_numpy(np.asarray(src.images)).float() / 127.5 - 1
        y = torch.from_numpy(src.labels) if src.labels is not None else None
    if src.classes is None:
        y = None
    return x, y, src.num_classes


__all__ = [
    "DATASETS",
    "NUM_DIGIT_CLASSES",
    "ArrayBatches",
    "DataBatches",
    "DataSource",
    "FolderBatches",
    "InfiniteSampler",
    "TensorBatches",
    "detect_dataset",
    "digits_tensor",
    "load_dataset",
    "load_digits_split",
    "open_cache",
    "open_dataset",
    "prepare_cache",
    "read_header",
]
