"""Interruptions: Ctrl-C (``KeyboardInterrupt``, exit status 130) and SIGTERM (:class:`Terminated`, 143).

SIGTERM is raised as a subclass of ``KeyboardInterrupt``, so every piece of code that cleans up after Ctrl-C (a
trainer saving its checkpoint, a command removing a half-written output) does the same for SIGTERM, and the
command line tells the two apart only for the exit status. A command that cleaned up says what it did with
:func:`note`; the command line prints that in its one line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, like Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (in the main thread; elsewhere signals cannot be caught and
    this does nothing). The previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(exc: BaseException) -> int:
    """143 for :class:`Terminated`, 130 for any other interruption."""
    return TERMINATED if isinstance(exc, Terminated) else INTERRUPTED


def note(exc: KeyboardInterrupt, text: str) -> KeyboardInterrupt:
    """Attach what the interrupted command did about it (``removed the 12 PNGs written so far``) and return
    ``exc`` for re-raising; the command line prints it."""
    exc.gankit_note = text  # type: ignore[attr-defined]
    return exc


def describe(exc: KeyboardInterrupt) -> str:
    """``interrupted (Ctrl-C)`` / ``terminated (SIGTERM)``, with the note of the command when there is one."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
    extra = getattr(exc, "gankit_note", None)
    return f"{what}; {extra}" if extra else what


__all__ = ["INTERRUPTED", "TERMINATED", "Terminated", "describe", "exit_status", "note", "sigterm_as_interrupt"]
