"""The exceptions for mistakes a user can fix, and the one checker of config values that raises them.

`cli.py` catches :class:`UserError` once and prints its message as a single line (exit status 2); everything
else is a bug and keeps its traceback. Library functions name their parameters (:class:`ParameterError`:
``class_id 12 is out of range ...``); the CLI shows the flag instead (``--class-id 12 is out of range ...``).

Config values have one checker here: each field's type annotation says what it takes (:func:`check_field_types`),
one function says whether a number is in its range (:func:`check_number`), :func:`build_section` makes a section.
A config section is a frozen dataclass (``TrainingConfig``, ``SAGANConfig``, ...). :func:`check_field_types` reads
its fields' annotations (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``tuple[int, ...]``,
``tuple[float, float]``) and refuses a value of another type with one line naming the key, so a value from YAML
or ``--set`` (``training.ema_decay=abc``, ``g_betas=0.5``) never reaches arithmetic that would fail with a
``TypeError``, or later, after a run folder was made. Ranges are each section's own (``validate``), written with
:func:`check_number`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


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


# ------------------------------------------------------------------------------------ config values

SEED_LIMIT = 2**63  # seeds are 0 <= seed < 2**63: what torch.Generator.manual_seed and numpy take unchanged

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def _is_type(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:  # an integer is a number (YAML's 1 for 1.0); NaN and infinities are no setting
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            return False
    if kind is str:
        return isinstance(value, str)
    raise TypeError(f"no check for annotation {kind!r}")


def _describe(kind: Any) -> str:
    """``an integer``, ``a list of 2 numbers``, ``a list of integers``, ... for an annotation (None removed)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_NAMES[args[0]].split(' ', 1)[1]}s" if args[0] is not bool else "a list of booleans"
        return f"a list of {len(args)} {_NAMES[args[0]].split(' ', 1)[1]}s"
    return _NAMES[kind]


def _matches(value: Any, kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(_is_type(v, a) for v, a in zip(value, args, strict=True))
    return _is_type(value, kind)


def _split_optional(kind: Any) -> tuple[Any, bool]:
    """``(the annotation without None, whether None is allowed)``."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no check for annotation {kind!r}")
        return args[0], True
    return kind, False


def check_field_types(config: Any, section: str) -> None:
    """Raise a one-line :class:`UserError` for the first field of the dataclass ``config`` whose value is not of
    its annotated type (``{section}.{name} must be an integer, got 'abc'``). Numbers must be finite."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kind, optional = _split_optional(hints[field.name])
        if value is None and optional:
            continue
        if not _matches(value, kind):
            allowed = _describe(kind) + (" (or null)" if optional else "")
            if isinstance(value, float) and not math.isfinite(value):
                allowed = "a finite number"
            raise UserError(f"{section}.{field.name} must be {allowed}, got {value!r}")


def build_section(cls: type[T], values: Any, section: str, *, unknown_hint: str = "") -> T:
    """The dataclass ``cls`` made from the mapping ``values`` (lists become tuples); a key that is no field of
    ``cls`` is a one-line :class:`UserError` with the closest field (a typo must never become a default)."""
    if not isinstance(values, dict):
        raise UserError(f"config section {section!r} must be a mapping of key: value")
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            raise UserError(f"unknown config key {section}.{key}{did_you_mean(key, fields)}{unknown_hint}; "
                            f"valid keys: {', '.join(fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def check_number(
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> None:
    """Raise a one-line :class:`UserError` unless ``value`` is a finite number (an integer, not a bool, when
    ``integer``) in the range ``low .. high`` (either bound left out when None; ``*_open``: the bound itself is
    excluded). The message names ``key``, the range and ``hint``: ``training.steps must be an integer >= 1``."""
    kind = int if integer else float
    inside = _is_type(value, kind)
    if inside and low is not None:
        inside = value > low if low_open else value >= low
    if inside and high is not None:
        inside = value < high if high_open else value <= high
    if inside:
        return
    what = _NAMES[kind]
    if low is not None and high is not None:
        what += f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low == 0 and low_open and not integer:
        what = "a positive number"
    elif low is not None:
        what += f" {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        what += f" {'<' if high_open else '<='} {high:g}"
    raise UserError(f"{key} must be {what}, got {value!r}{hint}")


