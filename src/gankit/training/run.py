"""Devices, seeds and run folders."""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.errors import UserError

# Everything gankit train writes into a run folder; --overwrite removes exactly these.
RUN_ARTEFACTS = (
    "config.yaml",
    "checkpoints",
    "samples",
    "metrics.csv",
    "loss.png",
    "generator.safetensors",
    "tensorboard",
    "classes.json",
)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not there is a clear error."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for a GPU but CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps is not available here; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as plain data (safe for weights_only loading)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_run_dir(out: Path, overwrite: bool) -> bool:
    """Refuse a file, a foreign non-empty folder, or another run without ``overwrite``. True: ``out`` holds a
    run that ``overwrite`` replaces. Touches nothing."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the run")
    if not out.is_dir():
        return False
    entries = list(out.iterdir())
    # An aborted start (a bad --data, say) leaves only the two empty folders: that is no run yet.
    if all(e.name in ("checkpoints", "samples") and e.is_dir() and not any(e.iterdir()) for e in entries):
        return False
    is_run = (out / "config.yaml").exists() or (out / "checkpoints").exists()
    if not is_run:
        raise UserError(f"--out {out} is a non-empty folder that is not a gankit run; choose a new folder")
    if not overwrite:
        raise UserError(
            f"--out {out} already holds a run; continue it with --resume {out}, "
            "or start over with --overwrite, or choose another --out"
        )
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_run_dir(out: str | Path, *, overwrite: bool = False) -> Path:
    """Create a fresh run folder. A folder that holds another run is refused unless ``overwrite``; a non-empty
    folder that is not a gankit run is always refused (nothing of the user's is touched)."""
    out = Path(out)
    if _check_run_dir(out, overwrite):
        for name in RUN_ARTEFACTS:
            _remove(out / name)
    return _create(out)


def _create(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    return out


@contextlib.contextmanager
def new_run_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """:func:`prepare_run_dir` for a setup that may still fail (data checks, model config): if the ``with``
    body raises, the folder is put back as it was: a run that ``overwrite`` would replace comes back whole,
    and a folder made here is removed. Use it around the setup only, not around training."""
    out = Path(out)
    replaces = _check_run_dir(out, overwrite)
    existed = out.exists()
    backup = None
    if replaces:  # move the old run aside; deleted only once the new run is set up
        backup = Path(tempfile.mkdtemp(prefix=".gankit-previous-run-", dir=out))
        for name in RUN_ARTEFACTS:
            if (out / name).exists() or (out / name).is_symlink():
                (out / name).rename(backup / name)
    _create(out)
    try:
        yield out
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for name in RUN_ARTEFACTS:
                _remove(out / name)
            if backup is not None:
                for item in backup.iterdir():
                    item.rename(out / item.name)
                backup.rmdir()
        raise
    if backup is not None:
        shutil.rmtree(backup)
