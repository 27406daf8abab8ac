"""The README's truncation picture (docs/images/truncation.png): one row per truncation T, classes 0-9 across,
the same seed in every row; BigGAN's plain truncated normal (gankit's definition before, rows ``old``) against
gankit's (rows ``new``, :meth:`gankit.models.base.Generator.sample_latents`).

    python -m gankit train --preset sagan-digits --out runs/demo --overwrite --no-progress   # make demo's model
    python docs/truncation_grid.py runs/demo --out docs/images/truncation.png

The ``old`` rows use the ``new`` rows' latents times ``truncated_normal_std(T)``: the same truncated normal
draws without the rescale, which is the old definition's distribution.
"""

from __future__ import annotations

import argparse

import torch

import gankit
from gankit.images import save_grid
from gankit.models.base import truncated_normal_std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="docs/images/truncation.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncations", default="2,1,0.5")
    args = parser.parse_args()
    G = gankit.load_generator(args.checkpoint)
    k = G.num_classes or 10
    y = torch.arange(k) if G.num_classes else None
    rows, labels = [], []
    with torch.no_grad():
        rows.append(G(G.sample_latents(k, torch.Generator().manual_seed(args.seed)), y))
        labels.append("none")
        for definition in ("old", "new"):
            for t in (float(x) for x in args.truncations.split(",")):
                z = G.sample_latents(k, torch.Generator().manual_seed(args.seed), t)
                rows.append(G(z * truncated_normal_std(t) if definition == "old" else z, y))
                labels.append(f"{definition} T={t:g}")
    path = save_grid(torch.cat(rows).clamp(-1, 1), args.out, ncol=k, min_cell=32, row_labels=labels,
                     title=f"truncation, seed {args.seed}")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
