"""Writers for the data tests: real file formats made from scratch (Pillow images, IDX and CIFAR-10 bytes)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, array: np.ndarray, **kwargs) -> Path:
    """uint8 ``(H, W)`` / ``(H, W, C)`` (or uint16 ``(H, W)``) to ``path``; format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def solid(h: int, w: int, color: tuple[int, ...] | int) -> np.ndarray:
    c = np.asarray(color, dtype=np.uint8)
    return np.broadcast_to(c, (h, w, *c.shape)).copy()


def noise(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_rgb16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG written chunk by chunk (Pillow cannot write one)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def write_idx(path: Path, array: np.ndarray, *, dims: tuple[int, ...] | None = None) -> Path:
    """An IDX file of uint8 ``array`` (gzipped when the name ends in .gz); ``dims`` overrides the header's sizes."""
    dims = array.shape if dims is None else dims
    data = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_mnist(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "train", gz: bool = False) -> None:
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """CIFAR-10 binary records: label byte, then the R, G and B 32x32 planes of ``images`` ``(N, 3, 32, 32)``."""
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.astype(np.uint8).tobytes())
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: type, size, sha256, mode and modification time (not access time)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            size = st.st_size if p.is_file() else 0
            out[str(p.relative_to(root))] = (p.is_dir(), size, digest, st.st_mode, st.st_mtime_ns)
    st = root.stat()
    out["."] = (True, 0, None, st.st_mode, st.st_mtime_ns)
    return out


def mixed_folder(root: Path, size: int = 64) -> dict[str, list[str]]:
    """A CelebA-like folder that mixes good JPEGs and PNGs (RGB, grey, RGBA, 16-bit) with broken files.

    Returns ``{"good": [...], "bad": [...]}`` relative paths.
    """
    good = []
    for i in range(3):
        save_image(root / f"{i:06d}.jpg", noise(size + 10, size + 2, seed=i), quality=90)
        good.append(f"{i:06d}.jpg")
    save_image(root / "more" / "grey.png", noise(size + 4, size, seed=10, channels=1))
    save_image(root / "more" / "rgba.png", noise(size, size + 4, seed=11, channels=4))
    save_image(root / "more" / "deep16.png", (noise(size, size, seed=12, channels=1).astype(np.uint16) * 257))
    png_rgb16(root / "more" / "rgb16.png", noise(size, size, seed=13).astype(np.uint16) * 257)
    good += ["more/deep16.png", "more/grey.png", "more/rgb16.png", "more/rgba.png"]
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    (root / "fake.png").write_text("plain text with an image extension")
    truncate(root / "000000.jpg", root / "cut.jpg")
    bad = ["cut.jpg", "empty.jpg", "fake.png", "notes.txt"]
    return {"good": sorted(good), "bad": bad}
