"""``gankit prepare``: decode a dataset once into a memory-mapped cache file (:mod:`gankit.data.prepare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gankit.apps.outputs import claim_outputs
from gankit.data import prepare_cache


def prepare(data: str | Path, out: str | Path, **options: Any) -> str:
    """Write the cache (``options`` as :func:`~gankit.data.prepare.prepare_cache` takes them); returns the line
    that tells the user what was written and how to train on it."""
    with claim_outputs([out], overwrite=True):  # writable, one writer; prepare_cache refuses an existing file
        header = prepare_cache(data, out, **options)
    classes = f", {len(header['classes'])} classes" if header["classes"] else ""
    return f"cache {out}: {header['count']} images{classes}; train with --data {out}"
