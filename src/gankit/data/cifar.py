"""CIFAR-10's binary batches (``cifar-10-batches-bin``: ``data_batch_1..5.bin``, optional ``test_batch.bin``).

Each record is 3073 bytes: the label (0-9), then the 32x32 red plane, green plane and blue plane, each row-major.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gankit.errors import UserError

RECORD = 1 + 3 * 32 * 32
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_RE = re.compile(r"^data_batch_(\d+)\.bin$")
SEARCH_DIRS = (".", "cifar-10-batches-bin")


def _batch_folder(path: Path) -> Path | None:
    for sub in SEARCH_DIRS:
        folder = path / sub
        if folder.is_dir() and any(
            TRAIN_RE.match(f.name) or f.name == "test_batch.bin" for f in folder.iterdir() if f.is_file()
        ):
            return folder
    return None


def looks_like_cifar10(path: Path) -> bool:
    if path.is_file():
        return bool(TRAIN_RE.match(path.name)) or path.name == "test_batch.bin"
    return _batch_folder(path) is not None


def _split_files(folder: Path) -> dict[str, list[Path]]:
    numbered = [(int(m[1]), f) for f in folder.iterdir() if (m := TRAIN_RE.match(f.name))]
    train = [f for _, f in sorted(numbered)]
    test = [folder / "test_batch.bin"] if (folder / "test_batch.bin").is_file() else []
    return {"train": train, "test": test, "all": train + test}


def cifar10_splits(path: str | Path) -> set[str]:
    """The splits (``train``, ``test``, ``all``) that have batch files under ``path``."""
    path = Path(path)
    if path.is_file():
        return {"train", "all"} if looks_like_cifar10(path) else set()
    folder = _batch_folder(path)
    return {split for split, files in _split_files(folder).items() if files} if folder else set()


def find_cifar10_files(path: str | Path, split: str = "train") -> list[Path]:
    """The batch files of ``split`` (``train``: ``data_batch_*.bin`` by number; ``test``; ``all``) under ``path``."""
    path = Path(path)
    if path.is_file():
        return [path]
    folder = _batch_folder(path)
    if folder is None:
        raise UserError(f"no CIFAR-10 data_batch_*.bin files under {path}; give the cifar-10-batches-bin folder")
    files = _split_files(folder).get(split)
    if files is None:
        raise UserError(f"data.split {split!r} is not one of train, test, all")
    if not files:
        wanted = "test_batch.bin" if split == "test" else "data_batch_*.bin"
        raise UserError(f"{folder} has no {wanted}; set data.split to a split that is there")
    return files


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of one binary batch file."""
    data = np.fromfile(path, dtype=np.uint8)
    if len(data) == 0 or len(data) % RECORD:
        raise UserError(
            f"{path} holds {len(data)} bytes, not a whole number of 3073-byte CIFAR-10 records; "
            "the file is truncated or not CIFAR-10's binary version, download it again"
        )
    records = data.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise UserError(f"{path} has label {labels.max()}; CIFAR-10 labels are 0-9 (is it CIFAR-100?)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def cifar10_classes(path: str | Path) -> list[str]:
    """Class names from ``batches.meta.txt`` when it is there, else CIFAR-10's ten names."""
    path = Path(path)
    folder = path.parent if path.is_file() else (_batch_folder(path) or path)
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        names = [n.strip() for n in meta.read_text(errors="replace").splitlines() if n.strip()]
        if len(names) == len(CIFAR10_CLASSES):
            return names
    return list(CIFAR10_CLASSES)


def load_cifar10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of every batch file of ``split``."""
    parts = [read_cifar10_batch(f) for f in find_cifar10_files(path, split)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
