"""Decoding one image file into the model's format with Pillow and NumPy (no torchvision).

The preprocessing is the seed's CelebA pipeline (torchvision ``Resize(S)``, ``CenterCrop(S)``, to [-1, 1]),
reproduced pixel for pixel: the shorter side is resized to ``S`` with Pillow's antialiased bilinear filter
(what ``Resize`` calls on PIL images), the longer side to ``int(S * long / short)``, then the centre ``S x S``
is cut with torchvision's rounding. Before that, EXIF orientation is applied and every mode is brought to 8-bit
``L`` or ``RGB``: 16-bit greyscale is scaled (Pillow's own ``convert`` would clip it), transparency is composited
on white, palettes are expanded.

Files are only ever opened for reading.
"""

from __future__ import annotations

import io
import os
from typing import IO

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# What Pillow raises for files that are not (complete, valid) images. Anything else is a bug and propagates.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    ValueError,
    SyntaxError,  # some plugins raise it for broken headers
    EOFError,
    IndexError,
    Image.DecompressionBombError,
)


class BadImage(Exception):
    """A file that cannot be used as an image; the message is the reason (``corrupt or truncated ...``)."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _complete_tail(path: str, fmt: str | None, file_size: int) -> bool:
    """Cheap completeness test from the file's last bytes (JPEG EOI marker, PNG IEND chunk, RIFF length for WebP).

    False means "not proven complete" (a full decode then decides), never "bad" on its own: some cameras append
    data after a JPEG's end marker.
    """
    with open(path, "rb") as f:
        if fmt == "WEBP":
            head = f.read(8)
            return len(head) == 8 and int.from_bytes(head[4:8], "little") + 8 <= file_size
        f.seek(max(0, file_size - 32))
        tail = f.read()
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return tail.endswith(b"IEND\xaeB`\x82")
    return False


def check_file(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file after its cheap validity checks, or :class:`BadImage`.

    Reads the header; proves completeness from the tail for JPEG / PNG / WebP, and fully decodes other formats
    or files whose tail is not conclusive, so truncated files are found before training rather than during it.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise BadImage(f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise BadImage("zero-byte file")
    try:
        with Image.open(path) as img:
            fmt, wh = img.format, img.size
            if not _complete_tail(path, fmt, size):
                img.load()
    except Image.UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except DECODE_ERRORS as exc:
        raise BadImage(f"corrupt or truncated image ({exc})") from None
    if min(wh) < 1:
        raise BadImage("image has no pixels")
    return wh


def to_8bit(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> ``L`` (``channels == 1``) or ``RGB`` (``channels == 3``), 8 bits per channel.

    16-bit and 32-bit integer greyscale (``I;16*``, ``I``) are scaled by 1/257 (65535 -> 255); float (``F``) is
    taken as [0, 1] when it fits there, else [0, 255]. Transparency (``RGBA``, ``LA``, ``PA``, palette or ``L``
    with a transparent colour) is composited on white, so a transparent background does not become black.
    """
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if mode == "F":
            a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
        else:
            a = a / 257.0
        img = Image.fromarray(np.clip(np.nan_to_num(a).round(), 0, 255).astype(np.uint8), "L")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")  # expands the palette and turns a transparent colour into alpha
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)``'s output ``(width, height)``: shorter side ``size``, aspect kept (floored)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (antialiased bilinear; also upscales), then the centre ``size x size``."""
    w, h = resized_size(*img.size, size)
    if (w, h) != img.size:
        img = img.resize((w, h), Image.BILINEAR)
    top = int(round((h - size) / 2.0))  # torchvision CenterCrop's rounding
    left = int(round((w - size) / 2.0))
    if (w, h) != (size, size):
        img = img.crop((left, top, left + size, top + size))
    return img


def preprocess(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """A decoded Pillow image -> uint8 ``(channels, size, size)`` with EXIF orientation applied."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = ImageOps.exif_transpose(img)
    img = resize_center_crop(to_8bit(img, channels), size)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_file(path: str | os.PathLike, size: int, channels: int) -> np.ndarray:
    """Read and preprocess one file: uint8 ``(channels, size, size)``; :class:`BadImage` when it cannot be read."""
    return _decode(path, size, channels)


def decode_bytes(data: bytes, size: int, channels: int, formats: tuple[str, ...] | None = None) -> np.ndarray:
    """An encoded image held in memory (an upload) -> the same uint8 ``(channels, size, size)`` as
    :func:`decode_file` gives for a file of these bytes, without touching the disk. ``formats`` (Pillow format
    names) limits which decoders may read it; :class:`BadImage` when it cannot be read."""
    return _decode(io.BytesIO(data), size, channels, formats)


def _decode(source: str | os.PathLike | IO[bytes], size: int, channels: int,
            formats: tuple[str, ...] | None = None) -> np.ndarray:
    try:
        with Image.open(source, formats=formats) as img:
            img.load()
            return np.ascontiguousarray(preprocess(img, size, channels))
    except FileNotFoundError:
        raise BadImage("disappeared since the folder was listed") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except DECODE_ERRORS as exc:
        raise BadImage(f"corrupt or truncated image ({exc})") from None


def fit_arrays(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` -> uint8 ``(N, channels, size, size)`` with the same preprocessing as image files
    (shorter side resized, centre crop, greyscale <-> RGB); returned unchanged when it already fits."""
    n, c, h, w = images.shape
    if (c, h, w) == (channels, size, size):
        return images
    if (h, w) == (size, size) and (c, channels) == (1, 3):
        return np.repeat(images, 3, axis=1)
    out = np.empty((n, channels, size, size), np.uint8)
    for i in range(n):
        img = Image.fromarray(images[i, 0] if c == 1 else np.ascontiguousarray(images[i].transpose(1, 2, 0)))
        out[i] = preprocess(img, size, channels)
    return out
