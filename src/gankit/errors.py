"""The exceptions for mistakes a user can fix.

`cli.py` catches :class:`UserError` once and prints its message as a single line (exit status 2); everything
else is a bug and keeps its traceback. Library functions name their parameters (:class:`ParameterError`:
``class_id 12 is out of range ...``); the CLI shows the flag instead (``--class-id 12 is out of range ...``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``name``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UserError(Exception):
    """A problem with the user's input: the message names the problem and the fix."""


class ParameterError(UserError):
    """A bad value of one named parameter: ``str(exc)`` is ``"{param} {detail}"``.

    ``param`` is the Python parameter name (``class_id``); the CLI prints it as its flag (``--class-id``).
    """

    def __init__(self, param: str, detail: str) -> None:
        self.param, self.detail = param, detail
        super().__init__(f"{param} {detail}")

    def as_flag(self) -> str:
        """The message with the parameter spelled as a command-line flag."""
        return f"--{self.param.replace('_', '-')} {self.detail}"


class DamagedFile(UserError):
    """A file that exists but cannot be read (truncated, corrupt, not the expected format).

    Raised by the readers of :mod:`gankit.io`; caches catch this type (and only this one) to rebuild an entry.
    """


def refuse_overwrite(paths: Iterable[str | os.PathLike], overwrite: bool, param: str = "out") -> None:
    """Raise a :class:`ParameterError` for the first of ``paths`` that exists unless ``overwrite``: an output
    never replaces a file the user had because of a repeated or mistyped output path."""
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            raise ParameterError(param, f"{path} already exists; choose another path or add --overwrite to replace it")
