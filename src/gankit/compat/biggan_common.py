"""What the BigGAN-PyTorch and StudioGAN ``big_resnet`` converters share: reading a foreign torch file safely, and
loading a foreign state dict into a :mod:`gankit.models.biggan` network through a key map that must consume every
source tensor."""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit.errors import UserError


def load_torch_file(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a pickle that carries code, a truncated or damaged file
    and a missing one are each a one-line :class:`UserError` (``what`` names the expected file in messages)."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; give {what}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is truncated or corrupt (not a complete torch archive); give {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        named = f" ({found.group(1)})" if found else ""
        raise UserError(f"{path} holds objects other than tensors and plain data{named}: refused for safety (it "
                        "could run code)") from None  # fmt: skip
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is truncated or corrupt ({reason})") from None


def tensor_dict(obj: Any, path: object, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a ``{name: tensor}`` state dict; a one-line :class:`UserError` when it is not one."""
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = f"keys {list(obj)[:5]}" if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"{path} is not {what} (expected a state dict of tensors, got {kind})")
    return {str(k): v for k, v in obj.items()}


def _listing(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_mapped(
    network: nn.Module,
    source: dict[str, torch.Tensor],
    to_source: Callable[[str], str | None],
    *,
    where: object,
    consumed: tuple[str, ...] = (),
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Load ``source`` into ``network``: each of the network's tensors takes the source tensor named
    ``to_source(key)`` (None: the source has no such tensor, the network's own value stays, e.g. a batch norm's
    ``num_batches_tracked``). Every source tensor must be taken or listed in ``consumed`` (read and known to be
    unused); otherwise, or when one is missing or shaped otherwise, a one-line :class:`UserError` names the
    unexpected and the missing keys. ``transform(key, value)`` adapts a value (e.g. a reshape)."""
    own = network.state_dict()
    wanted = {key: to_source(key) for key in own}
    names = {name for name in wanted.values() if name is not None}
    missing = sorted(name for name in names if name not in source)
    unexpected = sorted(k for k in source if k not in names and k not in consumed)
    if missing or unexpected:
        parts = []
        if unexpected:
            parts.append(f"unexpected {_listing(unexpected)}")
        if missing:
            parts.append(f"missing {_listing(missing)}")
        raise UserError(f"{where} does not match the architecture read from its tensors: {'; '.join(parts)}")
    state = {}
    for key, value in own.items():
        name = wanted[key]
        if name is None:
            state[key] = value
            continue
        tensor = source[name]
        if transform is not None:
            tensor = transform(key, tensor)
        if tuple(tensor.shape) != tuple(value.shape):
            raise UserError(f"{where}: tensor {name!r} has shape {tuple(tensor.shape)}, the architecture read from "
                            f"the other tensors needs {tuple(value.shape)}")  # fmt: skip
        state[key] = tensor.to(value.dtype)
    network.load_state_dict(state)


def common_width(widths: list[int]) -> tuple[int, tuple[int, ...]]:
    """``(ch, mults)`` with ``widths = ch * mults`` and ``ch`` their greatest common divisor."""
    ch = 0
    for w in widths:
        ch = math.gcd(ch, w)
    return ch, tuple(w // ch for w in widths)


def count_blocks(source: dict[str, torch.Tensor], pattern: str) -> list[int]:
    """The sorted block indices ``K`` of the keys matching ``pattern`` (a regex with one group, the index)."""
    found = {int(m.group(1)) for k in source if (m := re.match(pattern, k))}
    return sorted(found)


__all__ = ["common_width", "count_blocks", "load_mapped", "load_torch_file", "tensor_dict"]
