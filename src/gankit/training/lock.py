"""One writer per run folder (an exclusive ``flock`` on ``RUN/.gankit.lock``) and per output of the other commands
(:class:`OutputLock`).

``gankit train`` holds it for the whole of training (a new run, ``--resume``) and while ``--overwrite`` replaces a
run; under torchrun rank 0 alone takes it (the other ranks wait on the barrier). A second process asking for a
held lock stops before it changes anything, with one line naming the folder and the holder's pid.

A lock left by a killed process never blocks the next run: the kernel drops a ``flock`` with its holder's last
open file, so the lock file that stays behind is only text (the pid of its last holder). The file is never
deleted: a process that opened it just before the deletion would lock the deleted file while a third locks a new
one, and both would write.

Readers (``sample``, ``evaluate``, ``export``, the explorer) take no lock on what they read: every file of a run
is replaced atomically (:func:`gankit.io.atomic_write`), so they see the old file or the new one. What they
write is theirs alone while they run: :class:`OutputLock` locks each output path (a file, or a folder of PNGs)
through a lock file in a shared folder of the temporary directory, named after the path, so a second command
with the same ``--out`` stops before any work instead of both saying "wrote" and one output being lost.

Where there is no ``fcntl`` (Windows) or the file system refuses ``flock`` (some network mounts), the lock
degrades to nothing: training works as before, without the guard against a second writer (a one-line warning
says so for the file-system case).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType

from gankit import log
from gankit.errors import UserError
from gankit.io import RunDir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class RunLocked(UserError):
    """Another process holds the run folder's lock."""


class RunLock:
    """The writer's lock of the run folder ``folder`` (which must exist when it is acquired).

    ``with RunLock(folder):`` or :meth:`acquire` / :meth:`release`. Holding it twice from one object is a no-op.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = RunDir(folder).lock
        self._fd: int | None = None

    def _locked_message(self, holder: str) -> str:
        return (f"{self.folder} is being written by another gankit process ({holder}); wait for it to finish or "
                "stop it, or choose another folder")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLocked` (nothing changed: the lock file of a locked folder exists)."""
        if self._fd is not None or fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise RunLocked(self._locked_message(holder)) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            log.warn(f"{self.folder}: this file system cannot lock files ({exc.strerror}); nothing stops a second "
                     "gankit process from writing the same run folder")
            return self
        # The pid goes into the locked file in place: replacing it (atomic_write) would move the name to a new,
        # unlocked file. A reader of a half-written pid only shows "pid unknown" in its message.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file drops the flock); the file stays, see the module docstring."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:  # a lock object dropped while held would otherwise keep its folder locked
        self.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class OutputLock(RunLock):
    """The writer's lock of one output path (``--out`` of sample, interpolate, evaluate, export, ...): a lock file
    in ``<temporary directory>/gankit-locks/``, named after the absolute path, so the output's own folder gets no
    extra file. Like the run lock it never blocks after its holder died, and the file is never deleted."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.folder = Path(target)
        absolute = os.path.abspath(os.fspath(target)).rstrip("/\\") or "/"
        user = os.getuid() if hasattr(os, "getuid") else "user"
        self.locks = Path(tempfile.gettempdir()) / f"gankit-locks-{user}"
        self.path = self.locks / (hashlib.sha256(absolute.encode()).hexdigest()[:32] + ".lock")
        self._fd = None

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`RunLocked`; where no lock file can be made (a temporary folder that
        cannot be written), go on without one, with a warning."""
        try:
            self.locks.mkdir(mode=0o700, exist_ok=True)
            return super().acquire()  # type: ignore[return-value]
        except PermissionError as exc:
            log.warn(f"cannot lock {self.folder} ({self.locks}: {exc.strerror}); nothing stops a second gankit "
                     "command from writing it")
            return self

    def _locked_message(self, holder: str) -> str:
        return (f"{self.folder} is being written by another gankit command ({holder}); wait for it to finish, or "
                "choose another --out")


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


__all__ = ["OutputLock", "RunLock", "RunLocked"]
