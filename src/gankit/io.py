"""Files gankit writes and reads: one atomic writer, the checkpoint and export formats, safetensors with metadata,
file hashes, and :class:`RunDir`, the one place that knows the names inside a run folder.

Every file gankit writes goes through :func:`atomic_write`: a temporary file in the same folder, flushed,
fsynced and renamed over the target, so a crash or a full disk leaves the complete old file or the complete new
one, never half of one. A process killed mid-write leaves its temporary (``.NAME.xxxxxxxx.tmp``) behind;
:func:`remove_stale_temporaries` deletes those, and only those whose writer is gone. Checkpoints hold plain data
only and load with ``torch.load(weights_only=True)``; exports are safetensors files with the model config as JSON
in their metadata.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from gankit.errors import DamagedFile, ParameterError, UserError
from gankit.version import __version__

try:
    import fcntl
except ImportError:  # Windows: no flock; see remove_stale_temporaries
    fcntl = None  # type: ignore[assignment]

CHECKPOINT_FORMAT = "gankit-checkpoint"
CHECKPOINT_VERSION = 1
EXPORT_FORMAT = "gankit-generator"
# The one spelling of the folded-spectral-norm flag: an export's metadata ("true" / "false") and a pretrained
# folder's config.json (true / false) say with it that spectral norm was folded into the stored weights, so a
# loader folds a fresh model the same way before loading them (Generator.from_state(..., folded=True)).
SPECTRAL_NORM_FOLDED = "spectral_norm_folded"

Content = bytes | str | Callable[[IO[bytes]], Any]


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread could write files
    os.umask(mask)
    return mask


_UMASK = _read_umask()


# ------------------------------------------------------------------------------------------------ writing


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# errno -> what a failed write means, for the one-line message of write_error
_WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "an input/output error",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
}


def write_error(path: str | os.PathLike, exc: OSError, *, existed: bool | None = None) -> UserError:
    """The one-line :class:`UserError` for ``exc`` raised while writing ``path``: what happened, and that the
    previous file is intact (``existed``: whether there was one; by default, whether ``path`` exists now)."""
    path = Path(path)
    existed = path.is_file() if existed is None else existed
    after = "the previous file is intact" if existed else "nothing was written there"
    reason = _WRITE_FAILURES.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    if exc.errno == errno.ENOSPC:
        return UserError(f"no space left on the device while writing {path}; {after}")
    fix = "; free some space" if exc.errno == errno.EDQUOT else "; choose an output you can write to"
    return UserError(f"cannot write {path}: {reason}; {after}{fix}")


class _RecordingFile:
    """The file object a ``write(fileobj)`` callable of :func:`atomic_write` writes to: it keeps the first
    ``OSError`` a write raised, because writers that wrap the file (``torch.save``: ``RuntimeError: ... unexpected
    pos``) report a full disk as something else. Everything else is the file's own."""

    def __init__(self, f: IO[bytes]) -> None:
        self.file = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def atomic_write(path: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a ``write(fileobj)`` callable) to ``path`` atomically.

    The folder is created if needed. A failed write (a full disk, no permission, a read-only file system, however
    the writer reports it) is a one-line :class:`UserError` (:func:`write_error`) that says the previous file is
    intact; any failure, an interruption included, leaves no temporary file behind.
    """
    path = Path(path)
    existed = path.is_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc, existed=existed) from None
    writer: _RecordingFile | None = None
    try:
        _lock_temporary(fd)
        with os.fdopen(fd, "wb") as f:
            writer = _RecordingFile(f)
            if callable(content):
                content(writer)
            else:
                writer.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; written files get the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = writer.error if writer is not None and writer.error is not None else exc
        if isinstance(exc, Exception) and isinstance(cause, OSError):
            raise write_error(path, cause, existed=existed) from None
        raise
    _fsync_dir(path.parent)
    return path


def check_writable(path: str | os.PathLike, param: str = "out") -> None:
    """Refuse, before any work, an output ``path`` that cannot be written: the nearest folder on its way that
    exists must let this process create files (``os.access``, which also answers for read-only mounts and for
    root), and an existing file there must be replaceable. Nothing is written to find out. A
    :class:`~gankit.errors.ParameterError` naming ``param``'s flag and the reason."""
    target = Path(path)
    folder = target if target.is_dir() else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ParameterError(param, f"{target}: {folder} is a file, not a folder; choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        reason = "the file system is read-only" if read_only else "permission denied"
        raise ParameterError(param, f"{target} cannot be written ({folder}: {reason}); choose a folder you can "
                                    "write to")


def _lock_temporary(fd: int) -> None:
    """Mark a temporary as being written: an exclusive ``flock`` that dies with the file's close or its writer."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock (some network mounts): the temporary is just unmarked
        pass


# mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix (CPython's tempfile._RandomNameSequence)
_TEMPORARY = r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp"


def is_temporary_name(name: str, target: str | None = None) -> bool:
    """True when ``name`` is an :func:`atomic_write` temporary (of the file ``target``, when given)."""
    found = re.fullmatch(_TEMPORARY, name)
    return found is not None and (target is None or found.group("name") == target)


def remove_stale_temporaries(folder: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Delete the temporaries that :func:`atomic_write` left in ``folder`` (only those of the file ``target``, when
    given) when its process was killed mid-write; returns what was deleted.

    A temporary still being written is locked by its writer (``flock``) and is kept; the lock dies with the
    writer, so a killed write's temporary is unlocked. Nothing but atomic_write's own names is touched. Without
    ``fcntl`` (Windows) an open file cannot be deleted there anyway, so every temporary that can be is.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not is_temporary_name(path.name, target) or path.is_symlink() or not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # gone meanwhile (its writer renamed it), or not ours to read
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # being written right now
                    continue
                except OSError:  # no flock on this file system: the writer's mark cannot be read either
                    pass
            path.unlink(missing_ok=True)
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def strict_json_value(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None: JSON has no such numbers (Python's ``NaN`` is
    not JSON, and other readers refuse it)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json_value(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json_value(v) for v in data]
    return data


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as strict, indented JSON (non-finite numbers as null; one trailing newline), atomically."""
    return atomic_write(path, json.dumps(strict_json_value(data), indent=2, allow_nan=False) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hex sha256 of a state dict's tensors (names, dtypes, shapes and bytes, in name order): the identity of a
    model's weights that projection and direction files record, whatever file the weights were read from."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- safetensors


def save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """CPU copies of ``tensors`` with string ``metadata``, atomically."""
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    return atomic_write(path, save(plain, metadata=metadata))


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; a missing file is a :class:`UserError`, an unreadable one
    a :class:`DamagedFile`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{str(p)!r} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(p)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise DamagedFile(f"{p} is not a readable safetensors file ({str(exc)[:120]})") from None


def save_generator_export(
    state: dict[str, torch.Tensor], config: dict[str, Any], path: str | os.PathLike, **meta: str
) -> Path:
    """A generator's ``state`` as safetensors with its model ``config`` (JSON) and ``meta`` in the metadata."""
    metadata = {"format": EXPORT_FORMAT, "gankit_version": __version__, "config": json.dumps(config), **meta}
    return save_safetensors(path, state, metadata)


def read_generator_export(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """``(model config dict, state dict, metadata)`` of a safetensors export."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != EXPORT_FORMAT or "config" not in metadata:
        raise UserError(f"{path} has no gankit generator config in its metadata; export it with gankit")
    try:
        config = json.loads(metadata["config"])
    except ValueError as exc:  # JSONDecodeError, or a number too long to convert
        raise DamagedFile(f"{path}: its config metadata is not valid JSON ({str(exc)[:80]}); export it again with "
                          "gankit export") from None
    if not isinstance(config, dict):
        raise DamagedFile(f"{path}: its config metadata is a JSON {type(config).__name__}, not the model config; "
                          "export it again with gankit export")
    return config, tensors, metadata


# ------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically save a training state dict, stamped with the format and gankit versions."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "gankit_version": __version__}
    payload.update(state)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a gankit checkpoint safely (``weights_only=True``); every failure is a one-line :class:`UserError`
    (:class:`DamagedFile` when the file is truncated or corrupt)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; give a run folder or a .pt file")
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive; anything else is damaged
        raise DamagedFile(f"{path} is truncated or corrupt (not a complete torch archive); use another checkpoint")
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
        raise DamagedFile(f"{path} is truncated or corrupt ({reason}); use another checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a gankit checkpoint; give a checkpoint written by gankit train")
    if int(state.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {state['format_version']}, newer than this gankit reads "
            f"({CHECKPOINT_VERSION}); upgrade gankit (it was written by gankit {state.get('gankit_version')})"
        )
    return state


# ------------------------------------------------------------------------------------------- run folders


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one run folder, named in one place::

        config.yaml                 the resolved config
        checkpoints/last.pt         newest full training state (a hard link to the newest step file)
        checkpoints/step_XXXXXXX.pt the last ``keep_checkpoints`` states
        checkpoints/best.pt, .json  the state with the best FID so far (evaluation during training)
        samples/step_XXXXXXX.png    EMA generator on a fixed latent batch
        metrics.csv, loss.png       the log and its plot (tensorboard/ when installed)
        generator.safetensors       the EMA generator export
        classes.json                class names of labelled image folders
        resume_history.json         settings changed on resume: step, key, old and new value, time
        .gankit.job                 the torchrun job training it (its restarts may continue the run)
        .gankit.lock                the writer's lock (flock; holds its pid), see gankit.training.lock
    """

    root: Path

    CONFIG = "config.yaml"
    CHECKPOINTS = "checkpoints"
    SAMPLES = "samples"
    METRICS = "metrics.csv"
    LOSS_PLOT = "loss.png"
    GENERATOR = "generator.safetensors"
    TENSORBOARD = "tensorboard"
    CLASSES = "classes.json"
    RESUME_HISTORY = "resume_history.json"
    JOB = ".gankit.job"  # the torchrun job training it: its restarts may continue the run, no other command
    # what gankit train writes, so what --overwrite removes (and nothing else of the folder)
    ARTEFACTS = (CONFIG, CHECKPOINTS, SAMPLES, METRICS, LOSS_PLOT, GENERATOR, TENSORBOARD, CLASSES, RESUME_HISTORY,
                 JOB)
    # Not an artefact: it is never removed (deleting a lock file others may hold open breaks flock's exclusion)
    LOCK = ".gankit.lock"

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def best_json(self) -> Path:
        return self.checkpoints / "best.json"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}.pt"

    def step_checkpoints(self) -> list[Path]:
        """The ``step_XXXXXXX.pt`` files, oldest first."""
        return sorted(p for p in self.checkpoints.glob("step_*.pt") if re.fullmatch(r"step_\d{7,}\.pt", p.name))

    @property
    def samples(self) -> Path:
        return self.root / self.SAMPLES

    def sample_grid(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def loss_plot(self) -> Path:
        return self.root / self.LOSS_PLOT

    @property
    def generator(self) -> Path:
        return self.root / self.GENERATOR

    @property
    def tensorboard(self) -> Path:
        return self.root / self.TENSORBOARD

    @property
    def classes(self) -> Path:
        return self.root / self.CLASSES

    @property
    def resume_history(self) -> Path:
        return self.root / self.RESUME_HISTORY

    @property
    def lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def job(self) -> Path:
        return self.root / self.JOB

    def written_folders(self) -> tuple[Path, ...]:
        """The folders training writes files into (where a killed write can leave a temporary)."""
        return (self.root, self.checkpoints, self.samples)

    def is_run(self) -> bool:
        """True when the folder holds a gankit run (its config or checkpoints)."""
        return self.config.exists() or self.checkpoints.exists()

    def generator_source(self) -> Path | None:
        """What a reader loads a generator from: ``checkpoints/last.pt``, else the export (None if neither)."""
        for candidate in (self.last_checkpoint, self.generator):
            if candidate.is_file():
                return candidate
        return None
