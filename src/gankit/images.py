"""Image conversion, PNG encoding and grids with Pillow and NumPy (no torchvision)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from gankit.io import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` in [-1, 1] -> ``(B, H, W, C)`` uint8 (values outside [-1, 1] are clamped for display, as
    PGAN's output is unbounded; NaN shows as 0)."""
    x = images.detach().float().cpu().nan_to_num(0.0).clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, ncol: int, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``(B, C, H, W)`` images row-major into a ``(rows*H', ncol*W', C)`` uint8 array."""
    return tile_uint8(to_uint8(images), ncol, padding, pad_value)


def tile_uint8(arr: np.ndarray, ncol: int, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``(B, H, W, C)`` uint8 images row-major, ``padding`` pixels between and around them."""
    b, h, w, c = arr.shape
    ncol = max(1, min(ncol, b))
    nrow = (b + ncol - 1) // ncol
    grid = np.full((nrow * (h + padding) + padding, ncol * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(b):
        r, col = divmod(i, ncol)
        y0, x0 = padding + r * (h + padding), padding + col * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = arr[i]
    return grid


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels (Pillow >= 10.1 with FreeType), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def to_pil(arr: np.ndarray) -> Image.Image:
    """A uint8 ``(H, W, C)`` array as a PIL image (one channel: grayscale)."""
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def png_bytes(image: Image.Image | np.ndarray, scale: int = 1) -> bytes:
    """A PIL image or a uint8 ``(H, W, C)`` array encoded as PNG, optionally enlarged ``scale`` times (nearest
    neighbour)."""
    img = to_pil(image) if isinstance(image, np.ndarray) else image
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="png")
    return buffer.getvalue()


def grid_image(
    images: torch.Tensor,
    ncol: int = 8,
    *,
    min_cell: int = 48,
    row_labels: list[str] | None = None,
    title: str | None = None,
) -> Image.Image:
    """A grid of ``(B, C, H, W)`` images in [-1, 1] as an RGB image. Small images are enlarged (nearest) to at
    least ``min_cell`` pixels per cell so a grid of 16x16 digits is readable; ``row_labels`` (e.g. class ids)
    and ``title`` are drawn in a white margin."""
    scale = max(1, -(-min_cell // images.shape[-1]))
    grid = make_grid(images, ncol, padding=1)
    img = to_pil(grid).convert("RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    font = _font(14)
    left = 12 + max((int(font.getlength(str(label))) for label in row_labels), default=0) if row_labels else 0
    top = 24 if title or row_labels else 0
    if left or top:
        canvas = Image.new("RGB", (img.width + left, img.height + top), "white")
        canvas.paste(img, (left, top))
        draw = ImageDraw.Draw(canvas)
        if title:
            draw.text((left + 2, 4), title, fill="black", font=font)
        if row_labels:  # one row per class: the label sits centred on its row, right-aligned
            cell = (images.shape[-2] + 1) * scale
            scalable = isinstance(font, ImageFont.FreeTypeFont)  # the bitmap fallback cannot anchor text
            for r, label in enumerate(row_labels):
                y = top + r * cell + cell // 2
                xy, anchor = ((left - 5, y), "rm") if scalable else ((3, y - 5), None)
                draw.text(xy, str(label), fill="black", font=font, anchor=anchor)
        img = canvas
    return img


def save_grid(images: torch.Tensor, path: str | Path, ncol: int = 8, **kwargs) -> Path:
    """Write :func:`grid_image` (same keyword arguments) to ``path`` as PNG."""
    return atomic_write(path, png_bytes(grid_image(images, ncol, **kwargs)))


def save_images(images: torch.Tensor, folder: str | Path, prefix: str = "", start: int = 0) -> list[Path]:
    """One PNG per image: ``folder/{prefix}{i:06d}.png`` for ``i`` from ``start``."""
    return [
        atomic_write(Path(folder) / f"{prefix}{start + i:06d}.png", png_bytes(arr))
        for i, arr in enumerate(to_uint8(images))
    ]
