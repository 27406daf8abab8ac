"""MNIST's IDX files (``train-images-idx3-ubyte[.gz]`` + ``train-labels-idx1-ubyte[.gz]``; ``t10k-*`` for test).

IDX layout (big-endian): two zero bytes, a type code (``0x08`` = uint8), the number of dimensions ``d``, then
``d`` uint32 sizes, then the data. The same reader serves Fashion-MNIST, KMNIST and other drop-in sets.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from gankit.errors import UserError

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLIT_PREFIX = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
# "train-images-idx3-ubyte" (the original names) and "train-images.idx3-ubyte" (a common re-upload)
IMAGES_RE = re.compile(r"^(train|t10k)-images[-.]idx3-ubyte(\.gz)?$", re.IGNORECASE)
SEARCH_DIRS = (".", "raw", "MNIST/raw", "mnist")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as an array of its declared shape; a lying header is a :class:`UserError`."""
    path = Path(path)
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path} cannot be read as gzip ({exc}); download the file again") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number); give MNIST's original files")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: the file ends inside its IDX header; download it again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        shape = "x".join(map(str, dims))
        raise UserError(
            f"{path}: the IDX header says {shape} ({expected} bytes of data) but the file holds {actual} bytes; "
            "the file is truncated or damaged, download it again"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _images_files(path: Path) -> dict[str, Path]:
    """``{"train": images file, "t10k": images file}`` found under the folder ``path`` (either may be missing)."""
    found: dict[str, Path] = {}
    for sub in SEARCH_DIRS:  # the first folder that has a split wins
        folder = path / sub
        if not folder.is_dir():
            continue
        here: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            m = IMAGES_RE.match(f.name)
            if m and f.is_file() and (m[1].lower() not in here or here[m[1].lower()].suffix.lower() == ".gz"):
                here[m[1].lower()] = f  # the uncompressed file wins over its .gz
        found = {**here, **found}
    return found


def mnist_splits(path: str | Path) -> set[str]:
    """The splits (``train``, ``test``, ``all``) whose images files are under ``path``."""
    path = Path(path)
    if path.is_file():
        return {"train", "all"} if IMAGES_RE.match(path.name) else set()
    found = _images_files(path)
    return {split for split, prefixes in SPLIT_PREFIX.items() if all(p in found for p in prefixes)}


def find_mnist_files(path: str | Path, split: str = "train") -> list[tuple[Path, Path]]:
    """``[(images file, labels file), ...]`` for ``split`` under ``path`` (a folder, or one images file)."""
    path = Path(path)
    if split not in SPLIT_PREFIX:
        raise UserError(f"data.split {split!r} is not one of train, test, all")
    if path.is_file():
        images = [path]
    else:
        found = _images_files(path)
        missing = [p for p in SPLIT_PREFIX[split] if p not in found]
        if missing:
            raise UserError(
                f"no {missing[0]}-images-idx3-ubyte[.gz] under {path}; give the folder that holds MNIST's IDX files "
                f"(or set data.split)"
            )
        images = [found[p] for p in SPLIT_PREFIX[split]]
    pairs = []
    for img in images:
        name = re.sub(r"images([-.])idx3", r"labels\1idx1", img.name, flags=re.IGNORECASE)
        candidates = [img.with_name(name), img.with_name(name[:-3] if name.endswith(".gz") else name + ".gz")]
        labels = next((c for c in candidates if c.is_file()), None)
        if labels is None:
            raise UserError(f"{img} has no labels file next to it ({candidates[0].name}); put it there")
        pairs.append((img, labels))
    return pairs


def load_mnist(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 1, H, W), labels int64 (N,))`` from MNIST-format IDX files."""
    xs, ys = [], []
    for img_file, lab_file in find_mnist_files(path, split):
        x, y = read_idx(img_file), read_idx(lab_file)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise UserError(f"{img_file} holds {x.dtype} data of shape {x.shape}, not uint8 images (N, H, W)")
        if y.ndim != 1 or len(y) != len(x):
            raise UserError(
                f"{lab_file} holds {len(y)} labels for the {len(x)} images of {img_file.name}; "
                "the two files are not a pair, download them again"
            )
        xs.append(x[:, None])
        ys.append(y.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def looks_like_mnist(path: Path) -> bool:
    if path.is_file():
        return IMAGES_RE.match(path.name) is not None
    return any(
        (path / sub).is_dir() and any(IMAGES_RE.match(f.name) for f in (path / sub).iterdir()) for sub in SEARCH_DIRS
    )
