"""gankit's one output channel for messages and progress (stderr; results go to stdout, from the CLI).

Libraries below the CLI never ``print``: they report through :func:`info`, :func:`warn` and :func:`progress`.
Under torchrun only rank 0 speaks (every rank scans the same data and would repeat each line), and lines are
written through tqdm so they never break a progress bar that is being drawn. Where stderr is no terminal (CI,
``nohup``, ``make demo > log``) a bar cannot be drawn: :func:`progress` then writes a plain line every
:data:`PLAIN_EVERY_S` seconds (``GANKIT_PROGRESS_SECONDS``) and one at the end, so a long run shows signs of life.
"""

from __future__ import annotations

import os
import sys
import time

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


PLAIN_EVERY_S = 30.0


class PlainProgress:
    """A progress report for a stderr that is no terminal: the part of tqdm's interface gankit uses (``update``,
    ``set_postfix``, ``n``, ``refresh``, ``close``, a context manager), writing ``gankit: DESC N/TOTAL (P%),
    R UNIT/s, postfix`` every ``every`` seconds and once when the work is complete (an interrupted or failed one
    ends with the command's own one line instead)."""

    def __init__(self, total: int | None, desc: str | None, unit: str, initial: int, every: float) -> None:
        self.total, self.desc, self.unit, self.every = total, desc or "progress", unit, every
        self.n = self.start = initial
        self.postfix = ""
        self.t0 = self.last = time.monotonic()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(values or {}), **kwargs}.items())

    def refresh(self) -> None:
        pass

    def _line(self) -> None:
        self.last = time.monotonic()
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else str(self.n)
        rate = (self.n - self.start) / max(self.last - self.t0, 1e-9)
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"gankit: {self.desc} {done}, {rate:.3g} {self.unit}/s{tail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n > self.start and (self.total is None or self.n >= self.total):
                self._line()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None = None, *, desc: str | None = None, unit: str = "it", enabled: bool | None = None,
             initial: int = 0) -> tqdm | PlainProgress:
    """Progress on stderr, rank 0 only: ``enabled`` None draws a bar on a terminal and writes plain lines
    elsewhere (:class:`PlainProgress`); True draws a bar; False shows nothing."""
    if enabled is None and _speaks() and not _is_terminal():
        try:
            every = float(os.environ.get("GANKIT_PROGRESS_SECONDS", PLAIN_EVERY_S))
        except ValueError:  # a malformed setting only changes how often progress is shown
            every = PLAIN_EVERY_S
        return PlainProgress(total, desc, unit, initial, every)
    disable = (not enabled) if enabled is not None else None
    if not _speaks():
        disable = True
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, disable=disable)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
