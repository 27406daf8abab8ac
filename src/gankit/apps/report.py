"""``gankit report``: the digit report (:mod:`gankit.metrics.digits`) of a run, checkpoint or export as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gankit.api import load_generator
from gankit.apps.outputs import claim_outputs
from gankit.io import write_json
from gankit.metrics.digits import digits_report


def report(
    checkpoint: str | Path,
    *,
    data: str | None = None,
    dataset: str = "auto",
    per_class: int = 100,
    seed: int = 0,
    ema: bool = True,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The report of the generator in ``checkpoint`` against ``data`` (None: the built-in digits); also written
    to ``out`` as JSON when given."""
    with claim_outputs([out] if out is not None else [], overwrite=overwrite):
        generator = load_generator(checkpoint, ema=ema)
        result = digits_report(generator, per_class, seed, data=data, dataset=dataset)
        if out is not None:
            write_json(out, result)
    return result
