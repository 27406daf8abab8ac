"""Datasets and the batch streams the trainer draws from.

Sources: image folders of any depth (optionally one sub-folder per class), MNIST's IDX files, CIFAR-10's binary
batches, a ``gankit prepare`` cache (memory-mapped), and the built-in scikit-learn digits. :func:`open_dataset`
opens one (``auto`` detects it from the path); :meth:`DataSource.batches` gives the trainer's batch stream.
"""

from gankit.config import DATASETS
from gankit.data.cache import open_cache, read_header
from gankit.data.digits import NUM_DIGIT_CLASSES, digits_tensor, load_digits_split
from gankit.data.formats import detect_dataset, has_split
from gankit.data.loader import (
    ArrayBatches,
    DataBatches,
    DataSource,
    FolderBatches,
    TensorBatches,
    load_dataset,
    open_dataset,
    open_training_data,
)
from gankit.data.prepare import prepare_cache
from gankit.data.sampler import InfiniteSampler

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
    "open_training_data",
    "has_split",
    "prepare_cache",
    "read_header",
]
