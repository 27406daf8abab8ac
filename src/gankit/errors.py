"""The one exception type for mistakes a user can fix.

`cli.py` catches :class:`UserError` once and prints its message as a single line (exit status 2);
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message names the problem and the fix."""
