"""Seeds, random-generator states and creating run folders."""

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

from gankit.errors import ParameterError
from gankit.io import RunDir, remove_stale_temporaries
from gankit.training.lock import RunLock


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
        raise ParameterError("out", f"{out} is a file; give a folder for the run")
    if not out.is_dir():
        return False
    entries = [e for e in out.iterdir() if e.name != RunDir.LOCK]  # the lock file alone is no run
    # An aborted start (a bad --data, say) leaves only the two empty folders: that is no run yet.
    empty = (RunDir.CHECKPOINTS, RunDir.SAMPLES)
    if all(e.name in empty and e.is_dir() and not any(e.iterdir()) for e in entries):
        return False
    if not RunDir(out).is_run():
        raise ParameterError("out", f"{out} is a non-empty folder that is not a gankit run; choose a new folder")
    if not overwrite:
        raise ParameterError(
            "out",
            f"{out} already holds a run; continue it with --resume {out}, "
            "or start over with --overwrite, or choose another --out",
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
        for name in RunDir.ARTEFACTS:
            _remove(out / name)
    return _create(out)


def _create(out: Path) -> Path:
    run = RunDir(out)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    run.samples.mkdir(exist_ok=True)
    return out


@contextlib.contextmanager
def new_run_dir(out: str | Path, *, overwrite: bool = False, lock: RunLock | None = None) -> Iterator[Path]:
    """:func:`prepare_run_dir` for a setup that may still fail (data checks, model config): if the ``with``
    body raises, the folder is put back as it was: a run that ``overwrite`` would replace comes back whole,
    and a folder made here is removed. Use it around the setup only, not around training.

    ``lock`` (the folder's :class:`~gankit.training.lock.RunLock`) is acquired after the checks and before
    anything is changed or removed, and the checks are repeated under it; it is released if anything fails, and
    otherwise left held for the caller to release when training ends.
    """
    out = Path(out)
    replaces = _check_run_dir(out, overwrite)
    existed = out.exists()
    if lock is not None:
        if not existed:
            out.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
            # another process may have written a run here between the check and the lock
            replaces = _check_run_dir(out, overwrite)
        except BaseException:
            lock.release()  # the folder is someone else's now: leave it as it is
            raise
    backup = None
    if replaces:  # move the old run aside; deleted only once the new run is set up
        remove_stale_temporaries(out)  # what a killed write of the old run left (the lock keeps out live writers)
        backup = Path(tempfile.mkdtemp(prefix=".gankit-previous-run-", dir=out))
        for name in RunDir.ARTEFACTS:
            if (out / name).exists() or (out / name).is_symlink():
                (out / name).rename(backup / name)
    _create(out)
    try:
        yield out
    except BaseException:
        try:
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for name in RunDir.ARTEFACTS:
                    _remove(out / name)
                if backup is not None:
                    for item in backup.iterdir():
                        item.rename(out / item.name)
                    backup.rmdir()
        finally:
            if lock is not None:  # only once the folder is back as it was
                lock.release()
        raise
    if backup is not None:
        shutil.rmtree(backup)
