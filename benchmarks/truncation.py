"""Truncation on a trained generator: BigGAN's plain truncated normal (gankit <= this change) against gankit's
truncation (the same, rescaled to unit variance: :meth:`gankit.models.base.Generator.sample_latents`).

For each definition and T, ``--num`` samples (labels cycled through the classes, as ``gankit evaluate`` does) go
through gankit's own :class:`~gankit.metrics.evaluate.Evaluator` (``Evaluator.generated_features(...,
truncation=T)``) and are scored against the real held-out split of the data (the digits' test third): FID,
precision and recall (k = 3), and, with the digits classifier, the share of samples it puts in the class they
were drawn for: the mean over ``--seeds`` sample sets and the spread (half the range) as ``±``. Also the mean
latent norm and the mean pixel of the images (-1 is black). Prints a Markdown table (the README's "Truncation"
table) and writes every value as JSON with ``--out``.

    python -m gankit train --preset sagan-digits --out runs/demo --overwrite --no-progress   # make demo's model
    python benchmarks/truncation.py --checkpoint runs/demo --num 2000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import math
import time
import types

import torch

import gankit
from gankit.metrics.evaluate import Evaluator, compute_metrics


def old_sample_latents(self, n: int, generator=None, truncation=None) -> torch.Tensor:
    """The definition before this change (BigGAN's, Brock et al. 2019): ``N(0, 1)`` truncated to [-T, T] by
    inverse-CDF sampling, not rescaled, so the latent norm shrinks with T."""
    if truncation is None:
        z = torch.randn(n, self.z_dim, generator=generator)
    else:
        lo = 0.5 * (1 + math.erf(-truncation / math.sqrt(2)))
        u = torch.rand(n, self.z_dim, generator=generator, dtype=torch.float64) * (1 - 2 * lo) + lo
        z = (torch.special.erfinv(2 * u - 1) * math.sqrt(2)).float().clamp_(-truncation, truncation)
    return z.to(self.device)


def latent_norm(G, truncation: float | None, old: bool, n: int = 2000) -> float:
    sample = old_sample_latents if old else type(G).sample_latents
    return float(sample(G, n, torch.Generator().manual_seed(0), truncation).norm(dim=1).mean())


def image_mean(G, truncation: float | None, n: int = 500) -> float:
    labels = torch.arange(n) % G.num_classes if G.num_classes else None
    return float(G.sample(n, labels=labels, generator=torch.Generator().manual_seed(0), truncation=truncation).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/demo")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--features", default="digits")
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3, help="sample sets per row, seeds 0..N-1")
    ap.add_argument("--truncations", default="2,1,0.5", help="comma-separated T (no truncation is always scored)")
    ap.add_argument("--out", help="also write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.perf_counter()
    G = gankit.load_generator(args.checkpoint, device="cpu")
    ev = Evaluator(args.data, image_size=G.image_size, channels=G.channels, features=args.features,
                   metrics=("fid", "pr"))  # fmt: skip
    if ev.data.heldout is None:
        raise SystemExit(f"{args.data} has no held-out split to score against")
    real, _ = ev.real_features("heldout")
    k = G.num_classes
    cases: list[tuple[str, float | None]] = [("none", None)]
    for t in (float(x) for x in args.truncations.split(",")):
        cases += [("old", t), ("new", t)]
    metrics = ("fid", "precision", "recall", "class_accuracy")
    rows = []
    for name, t in cases:
        old = name == "old"
        if old:  # every path samples through G.sample_latents: swap it on this instance only
            G.sample_latents = types.MethodType(old_sample_latents, G)
        row = {"definition": name, "truncation": t, "latent_norm": latent_norm(G, t, old),
               "image_mean": image_mean(G, t), "runs": []}  # fmt: skip
        for seed in range(args.seeds):
            feats, logits = ev.generated_features(G, args.num, seed=seed, truncation=t)
            run = compute_metrics(real, feats, logits, ("fid", "pr"), seed=seed)
            if k and logits is not None and logits.shape[1] == k:
                run["class_accuracy"] = float((logits.argmax(1) == torch.arange(args.num) % k).double().mean())
            row["runs"].append(run)
        if old:
            del G.sample_latents
        for m in metrics:
            values = [run[m] for run in row["runs"] if m in run]
            if values:
                row[m] = sum(values) / len(values)
                row[f"{m}_spread"] = (max(values) - min(values)) / 2
        rows.append(row)
        print(json.dumps({key: v for key, v in row.items() if key != "runs"}), flush=True)
    print()
    print("| truncation | definition | mean \\|z\\| | mean pixel | FID | precision | recall | class accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = "none" if r["truncation"] is None else f"{r['truncation']:g}"
        cells = [f"{r[m]:.3f} ± {r[m + '_spread']:.3f}" if m in r else "-" for m in metrics]
        print(f"| {t} | {r['definition']} | {r['latent_norm']:.2f} | {r['image_mean']:.2f} | {' | '.join(cells)} |")
    print(
        f"\n{args.num} samples per row and seed ({args.seeds} seeds) against {len(real)} real held-out images, "
        f"features {ev.extractor.name}; {time.perf_counter() - t0:.0f} s"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "num": args.num, "seeds": args.seeds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
