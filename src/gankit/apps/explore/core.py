"""What the explorer computes, without any web framework: strict query parsing, seeded latents, PNG rendering.

Everything here is plain torch / NumPy / Pillow so it can be tested and reused without the ``explore`` extra.
:class:`Explorer` owns one generator and a lock: every forward pass holds the lock, so concurrent requests (run
in worker threads by the server) never interleave inside the model.

Determinism: a request's latents come from ``generator.sample_latents(n, generator=torch.Generator().manual_seed(
seed), truncation=t)`` on the CPU, and, for a conditional model with ``class=random``, the labels are drawn next
from the same ``torch.Generator`` (``torch.randint(K, (n,))``). Sample ``index`` of a grid is row ``index`` of
those latents and labels, so the enlarged image and the attention maps show exactly that sample.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import re
import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from gankit.apps.attention import attention_layers, attention_maps
from gankit.apps.interpolate import interpolate
from gankit.errors import ParameterError
from gankit.images import png_bytes, tile_uint8, to_pil, to_uint8

MODES = ("lerp", "slerp")
PADDING = 2  # pixels between the cells of a grid or strip, and around them
PAD_VALUE = 255
GENERATION_BATCH = 16  # images per forward pass


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps that keep one request cheap. ``max_pixels`` bounds the pixels one grid or strip may hold, so a
    1024px PGAN gets a smaller ``max_n`` / ``max_steps`` than a 16px digits model."""

    max_n: int = 64
    max_steps: int = 32
    max_seed: int = 2**32 - 1
    max_truncation: float = 10.0
    max_image_side: int = 2048  # longest side of an enlarged PNG (``scale * image_size``)
    max_pixels: int = 64 * 256 * 256
    max_upload_bytes: int = 20 * 2**20  # one uploaded image, held in memory only
    max_projection_steps: int = 300
    max_restarts: int = 8

    def __post_init__(self) -> None:
        for name in ("max_n", "max_steps", "max_seed", "max_image_side", "max_pixels", "max_upload_bytes",
                     "max_projection_steps", "max_restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.max_steps < 2:
            raise ValueError("Limits.max_steps must be >= 2 (a walk has two ends)")
        if not self.max_truncation > 0:
            raise ValueError("Limits.max_truncation must be > 0")


# ---------------------------------------------------------------------------------------------------- parsing

_INT = re.compile(r"-?[0-9]{1,20}")
_FLOAT = re.compile(r"-?([0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE]-?[0-9]{1,3})?")


class Query:
    """Strict reader of one request's query parameters: each one at most once, unknown names refused."""

    def __init__(self, items: list[tuple[str, str]], allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        for key, value in items:
            if key not in allowed:
                raise ParameterError(key, f"unknown parameter; this endpoint takes {', '.join(allowed)}")
            if key in self.values:
                raise ParameterError(key, "given more than once")
            self.values[key] = value

    def raw(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None or value == "" else value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int:
        text = self.raw(name)
        if text is None:
            if default is None:
                raise ParameterError(name, "is required")
            return default
        if not _INT.fullmatch(text):
            raise ParameterError(name, f"must be an integer, got {text[:40]!r}")
        value = int(text)
        if not low <= value <= high:
            raise ParameterError(name, f"must be in {low}..{high}, got {value}")
        return value

    def number(self, name: str, default: float | None, low: float, high: float, *, open_low: bool = False) -> float:
        text = self.raw(name)
        if text is None:
            if default is None:
                raise ParameterError(name, "is required")
            return default
        if not _FLOAT.fullmatch(text):
            raise ParameterError(name, f"must be a number, got {text[:40]!r}")
        value = float(text)
        if not math.isfinite(value) or value > high or value < low or (open_low and value == low):
            interval = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
            raise ParameterError(name, f"must be in {interval}, got {text}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        text = self.raw(name)
        if text is None:
            return default
        if text not in choices:
            raise ParameterError(name, f"must be one of {', '.join(choices)}, got {text[:40]!r}")
        return text

    def flag(self, name: str) -> bool:
        return self.choice(name, "0", ("0", "1")) == "1"


# ---------------------------------------------------------------------------------------------------- images


def grid_columns(n: int) -> int:
    """Columns of an ``n``-sample grid: the page uses the same rule to map a click to a sample."""
    return math.ceil(math.sqrt(n))


# A small perceptually ordered dark-to-bright ramp (black, purple, red, orange, pale yellow) for heatmaps.
_RAMP = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def colour_ramp(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 along :data:`_RAMP` (piecewise linear)."""
    v = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_RAMP) - 2)
    frac = (v - lo)[..., None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).round().astype(np.uint8)


def overlay_png(
    image: np.ndarray, heatmap: torch.Tensor, point: tuple[int, int], side: int, alpha: float = 0.85
) -> bytes:
    """The image ``(S, S, C)`` enlarged to ``side`` pixels (nearest) with ``heatmap`` ``(h_k, w_k)`` upsampled
    (bilinear) and coloured over it: the colour scales with attention / its maximum, and a key is covered only as
    far as it gets more than an even share (``1 / N_k``; opacity ``alpha`` at the maximum), so an evenly spread
    map leaves the image visible instead of looking like strong attention everywhere. The query ``point`` (x, y)
    is marked."""
    s = image.shape[0]
    base = np.asarray(to_pil(image).convert("RGB").resize((side, side), Image.NEAREST), dtype=np.float64)
    uniform = 1.0 / heatmap.numel()
    heat = F.interpolate(heatmap[None, None].double(), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    top = float(heatmap.max())
    shade = (heat / max(top, 1e-12)).clamp(0, 1).numpy()
    above = ((heat - uniform) / (top - uniform)).clamp(0, 1).numpy() if top - uniform > 1e-9 else np.zeros_like(shade)
    weight = alpha * above[..., None]
    mixed = (1 - weight) * base + weight * colour_ramp(shade)
    picture = Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    cx, cy = (point[0] + 0.5) * side / s, (point[1] + 0.5) * side / s
    r = max(3.0, side / 64)
    draw.ellipse((cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1), outline=(255, 255, 255), width=2)
    draw.ellipse((cx - r + 1, cy - r + 1, cx + r - 1, cy + r - 1), outline=(10, 132, 255), width=2)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------------------------------------------- explorer


@dataclasses.dataclass(frozen=True)
class Sample:
    """Which latents a grid request means: ``n`` samples of ``seed``; ``class_id`` None means random."""

    seed: int
    n: int
    class_id: int | None
    truncation: float | None


class Explorer:
    """One generator behind a lock, and the renderers the HTTP endpoints call (each returns bytes or a dict)."""

    def __init__(self, generator: torch.nn.Module, *, source: str = "", limits: Limits | None = None) -> None:
        self.generator = generator.eval()
        self.source = source
        self.limits = limits or Limits()
        self.lock = threading.Lock()
        self.size = int(generator.image_size)
        self.num_classes = int(generator.num_classes)
        self.family = str(getattr(getattr(generator, "config", None), "family", "") or type(generator).__name__)
        self.attention = attention_layers(generator)
        per_image = self.size * self.size
        self.max_n = max(1, min(self.limits.max_n, self.limits.max_pixels // per_image))
        self.max_steps = max(2, min(self.limits.max_steps, self.limits.max_pixels // per_image))
        self.max_scale = max(1, self.limits.max_image_side // self.size)

    # -------------------------------------------------------------------------------------------- description

    def info(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "family": self.family,
            "z_dim": int(self.generator.z_dim),
            "num_classes": self.num_classes,
            "image_size": self.size,
            "channels": int(self.generator.channels),
            "attention": [{"name": n, "gamma": float(m.gamma.detach())} for n, m in self.attention.items()],
            "grid": {"padding": PADDING, "columns": "ceil(sqrt(n))"},
            "modes": list(MODES),
            "limits": {
                "max_n": self.max_n,
                "max_steps": self.max_steps,
                "max_seed": self.limits.max_seed,
                "max_truncation": self.limits.max_truncation,
                "max_scale": self.max_scale,
            },
        }

    # -------------------------------------------------------------------------------------------- parameters

    SAMPLE_PARAMS = ("seed", "n", "class", "truncation")

    def parse_sample(self, q: Query, *, default_n: int = 16) -> Sample:
        seed = q.integer("seed", 0, 0, self.limits.max_seed)
        n = q.integer("n", min(default_n, self.max_n), 1, self.max_n)
        return Sample(seed, n, self.parse_class(q), self.parse_truncation(q))

    def parse_class(self, q: Query) -> int | None:
        text = q.raw("class")
        if self.num_classes == 0:
            if text is not None:
                raise ParameterError("class", "this generator is unconditional: it takes no class")
            return None
        if text is None or text == "random":
            return None
        return q.integer("class", None, 0, self.num_classes - 1)

    def parse_truncation(self, q: Query) -> float | None:
        if q.raw("truncation") is None:
            return None
        return q.number("truncation", None, 0.0, self.limits.max_truncation, open_low=True)

    def parse_index(self, q: Query, n: int) -> int:
        return q.integer("index", 0, 0, n - 1)

    def parse_point(self, q: Query) -> tuple[int, int]:
        return q.integer("x", None, 0, self.size - 1), q.integer("y", None, 0, self.size - 1)

    def parse_scale(self, q: Query) -> int:
        return q.integer("scale", 1, 1, self.max_scale)

    # -------------------------------------------------------------------------------------------- latents

    def latents(self, s: Sample) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(z (n, z_dim) on the CPU, y (n,) or None)`` of a sample request."""
        g = torch.Generator().manual_seed(s.seed)
        z = self.generator.sample_latents(s.n, generator=g, truncation=s.truncation).cpu()
        if self.num_classes == 0:
            return z, None
        if s.class_id is None:
            return z, torch.randint(self.num_classes, (s.n,), generator=g)
        return z, torch.full((s.n,), s.class_id, dtype=torch.long)

    def sample_class(self, s: Sample, index: int) -> int | None:
        """The class of sample ``index`` (None for an unconditional model)."""
        _, y = self.latents(s)
        return None if y is None else int(y[index])

    def walk_latents(
        self, a: int, b: int, positions: torch.Tensor, mode: str, class_id: int | None, truncation: float | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents along the walk from the first sample of seed ``a`` to that of seed ``b`` (each as in a grid of
        ``n=1``); the class is ``class_id``, or (random) the class of seed ``a``'s sample, fixed along the walk."""
        za, ya = self.latents(Sample(a, 1, class_id, truncation))
        zb, _ = self.latents(Sample(b, 1, class_id, truncation))
        z = interpolate(za, zb, positions.to(torch.float64), mode)[0]  # (T, z_dim)
        y = None if ya is None else ya.expand(len(z)).clone()
        return z, y

    # -------------------------------------------------------------------------------------------- rendering

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> np.ndarray:
        """Images ``(B, H, W, C)`` uint8 for latents on the CPU, in batches of :data:`GENERATION_BATCH`."""
        device = next(self.generator.parameters()).device
        chunks = []
        with self.lock:
            for start in range(0, len(z), GENERATION_BATCH):
                zz = z[start : start + GENERATION_BATCH].to(device)
                yy = None if y is None else y[start : start + GENERATION_BATCH].to(device)
                chunks.append(to_uint8(self.generator(zz, yy)))
        return np.concatenate(chunks)

    def grid_png(self, s: Sample) -> bytes:
        z, y = self.latents(s)
        return png_bytes(tile_uint8(self.generate(z, y), grid_columns(s.n), PADDING, PAD_VALUE))

    def image_png(self, s: Sample, index: int, scale: int = 1) -> bytes:
        z, y = self.latents(s)
        image = self.generate(z[index : index + 1], None if y is None else y[index : index + 1])[0]
        return png_bytes(image, scale)

    def walk_strip_png(self, a: int, b: int, steps: int, mode: str, class_id: int | None, trunc: float | None) -> bytes:
        positions = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        z, y = self.walk_latents(a, b, positions, mode, class_id, trunc)
        return png_bytes(tile_uint8(self.generate(z, y), steps, PADDING, PAD_VALUE))

    def walk_frame_png(
        self, a: int, b: int, t: float, mode: str, class_id: int | None, trunc: float | None, scale: int = 1
    ) -> bytes:
        z, y = self.walk_latents(a, b, torch.tensor([t], dtype=torch.float64), mode, class_id, trunc)
        return png_bytes(self.generate(z, y)[0], scale)

    def require_attention(self) -> None:
        if not self.attention:
            raise ParameterError(
                "attention",
                f"not available: this {self.family} generator has no self-attention layers (only SAGAN has them)",
            )

    def attention_json(self, s: Sample, index: int, point: tuple[int, int]) -> dict[str, Any]:
        """Per attention layer: where the query at image pixel ``point`` (x, y) attends, as numbers and as a PNG
        overlay (data URL) on the sample. Raises :class:`~gankit.errors.ParameterError` for a generator without
        attention."""
        self.require_attention()
        z, y = self.latents(s)
        zi = z[index : index + 1]
        yi = None if y is None else y[index : index + 1]
        device = next(self.generator.parameters()).device
        with self.lock:
            image, maps = attention_maps(self.generator, zi.to(device), None if yi is None else yi.to(device))
        picture = to_uint8(image)[0]
        x, yq = point
        side = self.size * max(1, min(self.max_scale, math.ceil(256 / self.size)))
        layers = []
        for m in maps:
            h, w = m.size
            row, col = yq * h // self.size, x * w // self.size
            heat = m.heatmap(row, col).double()
            layers.append(
                {
                    "name": m.name,
                    "gamma": m.gamma,
                    "size": [h, w],
                    "key_size": list(m.key_size),
                    "query": [row, col],
                    "heatmap": [[round(float(v), 6) for v in r] for r in heat],
                    "sum": float(heat.sum()),
                    "max": float(heat.max()),
                    "uniform": 1.0 / heat.numel(),  # what every key would get if the query attended evenly
                    "overlay": data_url(overlay_png(picture, heat, point, side)),
                    "overlay_size": side,
                }
            )
        return {
            "seed": s.seed,
            "n": s.n,
            "index": index,
            "class": None if yi is None else int(yi[0]),
            "x": x,
            "y": yq,
            "image_size": self.size,
            "layers": layers,
        }


__all__ = [
    "MODES",
    "PADDING",
    "Explorer",
    "Limits",
    "Query",
    "Sample",
    "colour_ramp",
    "grid_columns",
    "overlay_png",
    "png_bytes",
    "tile_uint8",
    "to_uint8",
]
