"""``gankit attention``: the SAGAN paper's attention figure: where a few query positions of a generated image attend.

For one generated image, each self-attention layer of G computes ``beta = softmax_j(q_i . k_j)``, an
``(N, N_k)`` map (``N = h * w`` query positions of that layer's feature map, ``N_k`` key positions; ``N_k =
N / 4`` for the ``biggan`` variant, which max-pools the keys). Row ``i`` of it, reshaped to the key grid, says
where query ``i`` draws its evidence from, and sums to 1. The figure shows, per layer, the image with the query
points marked, then one panel per query with that row upsampled (bilinear) to the image size and overlaid.

Query points sit on a regular grid of the image (``--queries 4``: the centres of the four quadrants) so the
same image locations are queried in every layer.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from gankit.errors import ParameterError, UserError
from gankit.io import atomic_write
from gankit.models.base import Generator
from gankit.nn import SelfAttention2d

QUERY_COLOURS = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de", "#ff9500", "#00c7be", "#ff2d55")


@dataclasses.dataclass(frozen=True)
class LayerAttention:
    """One layer's attention for one image: ``attention`` is ``(N, N_k)`` with rows summing to 1."""

    name: str
    size: tuple[int, int]  # (h, w) of the query feature map
    key_size: tuple[int, int]  # (h_k, w_k) of the key grid
    attention: torch.Tensor
    gamma: float

    def heatmap(self, row: int, col: int) -> torch.Tensor:
        """Where the query at feature position ``(row, col)`` attends: ``(h_k, w_k)``, summing to 1."""
        return self.attention[row * self.size[1] + col].reshape(self.key_size)


def attention_layers(generator: torch.nn.Module) -> dict[str, SelfAttention2d]:
    """``{module name: block}`` for every self-attention block of ``generator`` (e.g. ``attention.16``)."""
    return {name: m for name, m in generator.named_modules() if isinstance(m, SelfAttention2d)}


def query_grid(queries: int) -> list[tuple[float, float]]:
    """``queries`` points ``(y, x)`` in [0, 1)^2: centres of the cells of a near-square grid, row-major."""
    if queries < 1:
        raise ParameterError("queries", f"must be >= 1, got {queries}")
    rows = math.ceil(math.sqrt(queries))
    cols = math.ceil(queries / rows)
    return [((r + 0.5) / rows, (c + 0.5) / cols) for r in range(rows) for c in range(cols)][:queries]


@torch.no_grad()
def attention_maps(
    generator: Generator, z: torch.Tensor, y: torch.Tensor | None = None, layers: list[str] | None = None
) -> tuple[torch.Tensor, list[LayerAttention]]:
    """Generate ``G(z, y)`` for one latent ``z`` ``(1, z_dim)`` and return ``(image (1, C, S, S), maps)``.

    The inputs of the attention blocks are captured with forward pre-hooks during the normal forward pass; each
    block is then re-run on its input with ``return_attention=True`` (the explicit ``bmm`` + softmax path).
    """
    blocks = attention_layers(generator)
    names = list(blocks) if layers is None else layers
    inputs: dict[str, torch.Tensor] = {}
    hooks = [blocks[n].register_forward_pre_hook(lambda _m, args, n=n: inputs.__setitem__(n, args[0])) for n in names]
    try:
        image = generator(z, y)
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for n in names:
        x = inputs[n]
        _, att = blocks[n](x, return_attention=True)
        h, w = x.shape[-2:]
        n_keys = att.shape[-1]
        key_size = (h, w) if n_keys == h * w else (h // 2, w // 2)
        maps.append(LayerAttention(n, (h, w), key_size, att[0].float().cpu(), float(blocks[n].gamma)))
    return image, maps


def _display(image: torch.Tensor):
    """``(C, S, S)`` in [-1, 1] -> an array for ``imshow`` (grey or RGB in [0, 1])."""
    x = ((image.float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def attention_figure(
    generator: Generator,
    out: str | Path,
    *,
    layer: str | None = None,
    queries: int = 4,
    class_id: int | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Draw the attention figure of ``generator`` into ``out`` (PNG).

    One row per attention layer (or only ``layer``): the generated image with the query points marked, then
    for each query its attention heatmap upsampled to the image size and overlaid. Returns, per layer, the
    heatmaps before resizing, ``(queries, h_k, w_k)``, each summing to 1.
    """
    blocks = attention_layers(generator)
    if not blocks:
        family = getattr(getattr(generator, "config", None), "family", "this")
        raise UserError(
            f"this {family} generator has no self-attention layers, so there is no attention map to draw; "
            "use a SAGAN checkpoint (e.g. a run of --preset sagan-digits)"
        )
    if layer is not None and layer not in blocks:
        raise ParameterError(
            "layer", f"{layer!r} is not an attention layer of this generator; its layers: {', '.join(blocks)}"
        )
    points = query_grid(queries)
    g = torch.Generator().manual_seed(seed)
    z = generator.sample_latents(1, generator=g)
    labels = generator.class_labels(1, class_id=class_id, generator=g)
    y = None if labels is None else labels.to(z.device)
    if y is not None:
        class_id = int(y[0])
    was_training = generator.training
    generator.eval()
    try:
        image, maps = attention_maps(generator, z, y, [layer] if layer else None)
    finally:
        generator.train(was_training)
    size = image.shape[-1]
    heatmaps: dict[str, torch.Tensor] = {}
    for m in maps:
        h, w = m.size
        if len(points) > h * w:
            raise ParameterError("queries", f"{len(points)} is more than the {h * w} positions of layer {m.name}")
        heatmaps[m.name] = torch.stack(
            [m.heatmap(min(int(py * h), h - 1), min(int(px * w), w - 1)) for py, px in points]
        )
    title = f"{getattr(generator.config, 'family', '').upper()} attention, seed {seed}"
    if y is not None:
        title += f", class {class_id}"
    _draw(image[0], maps, heatmaps, points, size, Path(out), title)
    return heatmaps


def _draw(
    image: torch.Tensor,
    maps: list[LayerAttention],
    heatmaps: dict[str, torch.Tensor],
    points: list[tuple[float, float]],
    size: int,
    out: Path,
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picture = _display(image)
    grey = picture.ndim == 2
    ncols = 1 + len(points)
    fig, axes = plt.subplots(len(maps), ncols, figsize=(2.1 * ncols, 2.3 * len(maps) + 0.5), squeeze=False, dpi=110)
    pixel = [((py * size) - 0.5, (px * size) - 0.5) for py, px in points]  # imshow pixel centres are integers
    for row, m in enumerate(maps):
        ax = axes[row][0]
        ax.imshow(picture, cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
        for q, (py, px) in enumerate(pixel):
            colour = QUERY_COLOURS[q % len(QUERY_COLOURS)]
            ax.scatter([px], [py], s=60, c=colour, edgecolors="white", linewidths=1.2)
            ax.annotate(str(q + 1), (px, py), xytext=(4, 4), textcoords="offset points", color=colour, fontsize=8)
        ax.set_title("generated image", fontsize=8)
        ax.set_ylabel(f"{m.name}\n{m.size[0]}x{m.size[1]}, gamma {m.gamma:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        up = F.interpolate(heatmaps[m.name][:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        for q, (py, px) in enumerate(pixel):
            ax = axes[row][q + 1]
            ax.imshow(picture, cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
            heat = up[q]
            ax.imshow((heat / heat.max().clamp_min(1e-12)).numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            colour = QUERY_COLOURS[q % len(QUERY_COLOURS)]
            ax.scatter([px], [py], s=60, c=colour, edgecolors="white", linewidths=1.2)
            ax.set_title(f"query {q + 1}: max {float(heatmaps[m.name][q].max()):.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title}\n(each heatmap: one query's attention over the key positions, sums to 1)", fontsize=9)
    fig.tight_layout()
    path = atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path


__all__ = ["LayerAttention", "attention_figure", "attention_layers", "attention_maps", "query_grid"]
