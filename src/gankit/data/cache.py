"""The dataset cache written by ``gankit prepare``: one file, memory-mapped at training time.

Layout (little-endian)::

    b"GKCACHE1"                  8 bytes, magic and format version
    header length L              uint64
    header                       L bytes of JSON, padded with spaces
    images                       uint8 (N, C, S, S), C-order, at header["images_offset"] (4096-aligned)
    labels                       int64 (N,), at header["labels_offset"] (only when prepared with labels)

The JSON header records the source path, size, channels, image count, class names and offsets. The file is
written through :func:`gankit.io.atomic_write` (a temporary file renamed when complete), so a half-written cache
never passes for a finished one. :mod:`gankit.data.prepare` decodes a dataset into one.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import DamagedFile, UserError
from gankit.io import atomic_write
from gankit.log import progress as progress_bar
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
        raise DamagedFile(f"{path}: unreadable cache header ({exc}); run gankit prepare again") from None
    need = header["images_offset"] + header["count"] * header["channels"] * header["size"] ** 2
    if header.get("labels_offset") is not None:
        need = header["labels_offset"] + 8 * header["count"]
    if path.stat().st_size < need:
        raise DamagedFile(f"{path} is truncated ({path.stat().st_size} of {need} bytes); run gankit prepare again")
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
    count = 0
    labels: list[np.ndarray] = []

    def write(f) -> None:
        nonlocal count
        f.seek(reserved)
        with progress_bar(total, desc="preparing", unit="img", enabled=progress) as bar:
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
        f.seek(0)  # the header goes in last: until the rename, no complete cache exists under the name
        f.write(MAGIC + len(body).to_bytes(8, "little") + body.ljust(reserved - 16))

    atomic_write(out, write)
    return header
