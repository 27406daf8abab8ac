"""The dataset cache written by ``gankit prepare``: one file, memory-mapped at training time.

Layout (little-endian)::

    b"GKCACHE1"                  8 bytes, magic and format version
    header length L              uint64
    header                       L bytes of JSON, padded with spaces
    images                       uint8 (N, C, S, S), C-order, at header["images_offset"] (4096-aligned)
    labels                       int64 (N,), at header["labels_offset"] (only when prepared with labels)

The JSON header records the source path, size, channels, image count, class names and offsets. The file is
written as ``OUT.partial`` and renamed when complete, so a half-written cache never passes for a finished one.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gankit.data.decode import fit_arrays, info, warn
from gankit.errors import UserError
from gankit.version import __version__

MAGIC = b"GKCACHE1"
ALIGN = 4096


def is_cache_file(path: str | Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read_header(path: str | Path) -> dict[str, Any]:
    """The cache's JSON header, after checking that the file is complete."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                raise UserError(f"{path} is not a gankit cache; make one with gankit prepare --data PATH --out FILE")
            length = int.from_bytes(head[8:16], "little")
            header = json.loads(f.read(length))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable cache header ({exc}); run gankit prepare again") from None
    need = header["images_offset"] + header["count"] * header["channels"] * header["size"] ** 2
    if header.get("labels_offset") is not None:
        need = header["labels_offset"] + 8 * header["count"]
    if path.stat().st_size < need:
        raise UserError(f"{path} is truncated ({path.stat().st_size} of {need} bytes); run gankit prepare again")
    return header


def open_cache(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """``(images uint8 memmap (N, C, S, S), labels int64 (N,) or None, header)``; nothing is read up front."""
    header = read_header(path)
    n, c, s = header["count"], header["channels"], header["size"]
    images = np.memmap(path, dtype=np.uint8, mode="r", offset=header["images_offset"], shape=(n, c, s, s))
    labels = None
    if header.get("labels_offset") is not None:
        labels = np.array(np.memmap(path, dtype="<i8", mode="r", offset=header["labels_offset"], shape=(n,)))
    return images, labels, header


def _header_bytes(header: dict[str, Any]) -> bytes:
    return json.dumps(header, indent=1).encode()


def write_cache(
    out: str | Path,
    chunks: Iterator[tuple[np.ndarray, np.ndarray | None]],
    *,
    total: int,
    size: int,
    channels: int,
    classes: list[str] | None,
    meta: dict[str, Any],
    skipped: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Stream uint8 ``(B, C, S, S)`` chunks (and their labels) into a cache at ``out``; returns its header.

    ``total`` is an upper bound on the count (files that fail to decode make the real count smaller) used to
    reserve room for the header, which is written last; ``skipped`` counts files left out before decoding.
    """
    out = Path(out)
    header: dict[str, Any] = {
        "format": "gankit-cache",
        "version": 1,
        **meta,
        "size": size,
        "channels": channels,
        "count": total,
        "classes": classes,
        "images_offset": 0,
        "labels_offset": None if classes is None else 0,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gankit_version": __version__,
    }
    # Room for the final header: the same keys with the widest numbers they can take.
    widest = {**header, "images_offset": 2**63, "labels_offset": 2**63, "count": total, "skipped": 2**63}
    reserved = -(-(16 + len(_header_bytes(widest))) // ALIGN) * ALIGN
    header["images_offset"] = reserved
    tmp = out.with_name(out.name + ".partial")
    count = 0
    labels: list[np.ndarray] = []
    try:
        with open(tmp, "wb") as f:
            f.seek(reserved)
            bar = tqdm(total=total, desc="preparing", unit="img", disable=None if progress is None else not progress)
            with bar:
                for images, y in chunks:
                    f.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
                    count += len(images)
                    if classes is not None:
                        labels.append(np.asarray(y, dtype="<i8"))
                    bar.update(len(images))
            header["count"] = count
            header["skipped"] = skipped + total - count
            if classes is not None:
                header["labels_offset"] = -(-f.tell() // 64) * 64
                f.seek(header["labels_offset"])
                f.write(np.concatenate(labels).astype("<i8").tobytes() if labels else b"")
            body = _header_bytes(header)
            f.seek(0)
            f.write(MAGIC + len(body).to_bytes(8, "little") + body.ljust(reserved - 16))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return header


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


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
    from gankit.data.loader import default_workers, detect_dataset, load_arrays

    data, out = Path(data), Path(out)
    if not data.exists():
        raise UserError(f"--data {data} does not exist; check the path")
    if size < 1 or channels not in (1, 3):
        raise UserError(f"--size must be >= 1 and --channels 1 or 3, got {size} and {channels}")
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
    if kind == "folder":
        from gankit.data.folder import FolderDataset, scan_folder

        index = scan_folder(data, size=size, labels=labels, strict=strict, workers=workers, progress=progress)
        ds = FolderDataset(index, size, channels)
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
        images, y, classes = load_arrays(kind, data, split)
        images = fit_arrays(images, size, channels)
        chunks = ((images[i : i + 4096], y[i : i + 4096]) for i in range(0, len(images), 4096))
        header = write_cache(
            out, chunks, total=len(images), size=size, channels=channels, classes=classes, meta=meta, progress=progress
        )
    info(
        f"prepare: wrote {header['count']} images of {channels}x{size}x{size} to {out} "
        f"in {time.perf_counter() - t0:.1f} s" + (f" ({header['skipped']} skipped)" if header["skipped"] else "")
    )
    return header


class _Chunks:
    """Map-style dataset whose items are chunks of consecutive indices, decoded in a DataLoader worker."""

    def __init__(self, ds: Any, chunk: int) -> None:
        self.ds, self.chunk = ds, chunk

    def __len__(self) -> int:
        return -(-len(self.ds) // self.chunk)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, np.ndarray, list[tuple[str, str]]]:
        from gankit.data.decode import BadImage

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

    from gankit.data.loader import worker_init

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
