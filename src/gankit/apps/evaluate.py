"""``gankit evaluate``: score a run, checkpoint or export (or an ``.npz`` of images) and write the metrics JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gankit.api import load_generator
from gankit.apps.outputs import claim_outputs
from gankit.device import select_device
from gankit.io import write_json
from gankit.metrics.evaluate import (
    IS_SPLITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PROTOCOL_NOTE,
    Evaluator,
    open_npz_images,
    parse_metrics,
)
from gankit.metrics.prdc import DC_K, PR_K
from gankit.version import __version__

TABLE_METRICS = ("fid", "kid", "is", "precision", "recall", "density", "coverage")


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """One column per scored set (generated, real held-out), one row per metric, ``value ± std`` where known."""
    cols = list(rows)
    lines = [f"{'metric':<10}" + "".join(f"{c:>22}" for c in cols)]
    for name in TABLE_METRICS:
        if not any(name in r for r in rows.values()):
            continue
        cells = []
        for c in cols:
            v = rows[c].get(name)
            std = rows[c].get(f"{name}_std")
            if v is None:
                cells.append(f"{'-':>22}")
            elif std is not None:
                cells.append(f"{f'{v:.4g} ± {std:.2g}':>22}")
            else:
                cells.append(f"{v:>22.4g}")
        lines.append(f"{name:<10}" + "".join(cells))
    return "\n".join(lines)


def evaluate(
    checkpoint: str | Path,
    data: str,
    out: str | Path,
    *,
    num: int = 10_000,
    features: str = "auto",
    metrics: str | None = None,
    batch_size: int = 250,
    seed: int = 0,
    inception_weights: str | None = None,
    ema: bool = True,
    device: str = "auto",
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score ``checkpoint`` against ``data`` and write the result to ``out`` (JSON); returns it, with the printable
    table under ``"table"`` (not written)."""
    t0 = time.perf_counter()
    with claim_outputs([out], overwrite=overwrite):  # writable and ours before any work
        result, rows = _evaluate(checkpoint, data, out, t0, num=num, features=features, metrics=metrics,
                                 batch_size=batch_size, seed=seed, inception_weights=inception_weights, ema=ema,
                                 device=device, progress=progress)
    return {**result, "table": format_table(rows)}


def _evaluate(
    checkpoint: str | Path, data: str, out: str | Path, t0: float, *, num: int, features: str, metrics: str | None,
    batch_size: int, seed: int, inception_weights: str | None, ema: bool, device: str, progress: bool | None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    dev = select_device(device)
    wanted = parse_metrics(metrics)
    ckpt = Path(checkpoint)
    generator = None
    if ckpt.suffix == ".npz":  # read in batches: only the features are kept
        npz = open_npz_images(ckpt, limit=num or None)
        channels, size = npz.shape[0], npz.shape[-1]
    else:
        generator = load_generator(ckpt, ema=ema, device=dev)
        size, channels = generator.image_size, generator.channels
    evaluator = Evaluator(
        data,
        image_size=size,
        channels=channels,
        features=features,
        metrics=wanted,
        inception_weights=inception_weights,
        device=dev,
        batch_size=batch_size,
        progress=progress,
    )
    evaluator.check_generated_count(num if generator is not None else npz.count)  # before any image is made
    if generator is not None:
        values = evaluator.evaluate_generator(generator, num, seed)
        num_generated = num
    else:
        values = evaluator.evaluate_chunks(npz.chunks(batch_size), npz.count, seed)
        num_generated = npz.count
    reference, cached = evaluator.real_features("reference")
    heldout = evaluator.heldout_metrics(seed)
    ex = evaluator.extractor
    result: dict[str, Any] = {
        "gankit_version": __version__,
        "checkpoint": str(ckpt),
        "ema": generator is not None and ema,
        "data": data,
        "reference": {"description": evaluator.data.description, "num": len(reference), "from_cache": cached},
        "num_generated": num_generated,
        "features": {**ex.describe(), "note": ex.note},
        "metrics": values,
        "settings": {
            "seed": seed,
            "batch_size": batch_size,
            "kid_subsets": KID_SUBSETS,
            "kid_subset_size": min(KID_SUBSET_SIZE, len(reference), num_generated),
            "is_splits": IS_SPLITS,
            "pr_k": PR_K,
            "dc_k": DC_K,
            "pr_dc_num": min(len(reference), num_generated),
            "labels": "cycled through all classes" if generator is not None and generator.num_classes else None,
        },
        "comparability": f"{ex.note}; {PROTOCOL_NOTE}",
    }
    rows = {"generated": values}
    if heldout is not None:
        result["heldout"] = {
            "description": f"real held-out {evaluator.data.heldout_split} split scored the same way "
            "(what a perfect generator would get)",
            "num": heldout[1],
            "metrics": heldout[0],
        }
        rows[f"real {evaluator.data.heldout_split}"] = heldout[0]
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    write_json(out, result)
    return result, rows
