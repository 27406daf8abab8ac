"""gankit's one output channel for messages and progress bars (stderr).

Libraries below the CLI never ``print``: they report through :func:`info`, :func:`warn` and :func:`progress`.
Under torchrun only rank 0 speaks (every rank scans the same data and would repeat each line), and lines are
written through tqdm so they never break a progress bar that is being drawn.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def _speaks() -> bool:
    return os.environ.get("RANK", "0") == "0"


def info(message: str) -> None:
    """One ``gankit: ...`` line on stderr (rank 0 only)."""
    if _speaks():
        tqdm.write(f"gankit: {message}", file=sys.stderr)


def warn(message: str) -> None:
    """One ``gankit: warning: ...`` line on stderr (rank 0 only)."""
    if _speaks():
        tqdm.write(f"gankit: warning: {message}", file=sys.stderr)


def progress(total: int | None = None, *, desc: str | None = None, unit: str = "it", enabled: bool | None = None,
             initial: int = 0) -> tqdm:
    """A progress bar on stderr: ``enabled`` None draws it only on a terminal, False never; rank 0 only."""
    disable = (not enabled) if enabled is not None else None
    if not _speaks():
        disable = True
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, disable=disable)
