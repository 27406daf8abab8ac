"""The one exception type for mistakes a user can fix.

`cli.py` catches :class:`UserError` once and prints its message as a single line (exit status 2);
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: the message names the problem and the fix."""


def refuse_overwrite(paths: Iterable[str | os.PathLike], overwrite: bool, flag: str = "--out") -> None:
    """Raise a :class:`UserError` for the first of ``paths`` that exists unless ``overwrite``: an output never
    replaces a file the user had because of a repeated or mistyped ``--out``."""
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            raise UserError(f"{flag} {path} already exists; choose another path or add --overwrite to replace it")
