"""Checkpoints (full training state, atomic, safe to load) and safetensors generator exports.

A checkpoint is one ``torch.save`` file of plain data only (tensors, numbers, strings, lists, dicts), so it
loads with ``torch.load(weights_only=True)``: a file that carries pickled code is refused and never runs.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from gankit.errors import UserError
from gankit.version import __version__

CHECKPOINT_FORMAT = "gankit-checkpoint"
CHECKPOINT_VERSION = 1
EXPORT_FORMAT = "gankit-generator"
SPECTRAL_NORM_FOLDED = "spectral_norm_folded"  # export metadata: "true" when SN was folded into the weights


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write) -> Path:
    """Write ``path`` via a temporary file in the same folder, flush, fsync, ``os.replace``, fsync the folder.

    ``write(fileobj)`` produces the content. Whatever happens (a crash, a full disk), ``path`` holds either
    the complete old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise UserError(f"no space left on the device while writing {path}; the previous file is intact") from None
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically save a training state dict, stamped with the format and gankit versions."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "gankit_version": __version__}
    payload.update(state)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a gankit checkpoint safely; every failure is a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; give a run folder or a .pt file")
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive; anything else is damaged
        raise UserError(f"{path} is truncated or corrupt (not a complete torch archive); use another checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise UserError(
            f"{path} holds objects other than plain tensors and numbers{what}: refused for safety (it could run "
            "code); load only gankit checkpoints, or files you trust with their own tools"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is truncated or corrupt ({reason}); use another checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a gankit checkpoint; give a checkpoint written by gankit train")
    if int(state.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {state['format_version']}, newer than this gankit reads "
            f"({CHECKPOINT_VERSION}); upgrade gankit (it was written by gankit {state.get('gankit_version')})"
        )
    return state


def save_generator(generator: torch.nn.Module, config: dict[str, Any], path: str | Path, **meta: str) -> Path:
    """Export a generator's weights to safetensors with its model config (JSON) in the file's metadata."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in generator.state_dict().items()}
    metadata = {"format": EXPORT_FORMAT, "gankit_version": __version__, "config": json.dumps(config)}
    metadata.update(meta)
    data = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))


def read_generator_export(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """``(model config dict, state dict, metadata)`` of a safetensors export."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({str(exc)[:120]})") from None
    if metadata.get("format") != EXPORT_FORMAT or "config" not in metadata:
        raise UserError(f"{path} has no gankit generator config in its metadata; export it with gankit")
    return json.loads(metadata["config"]), tensors, metadata


__all__ = [
    "atomic_write",
    "load_checkpoint",
    "read_generator_export",
    "save_checkpoint",
    "save_generator",
]
