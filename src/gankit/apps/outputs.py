"""Where the commands write: claiming outputs before any work (:func:`claim_outputs`: writable, one writer,
no silent overwrite), output targets named by ``--out``, and ``.npz`` files written atomically, whole or streamed
member by member (so a file larger than memory never has to be held in it)."""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from gankit.errors import ParameterError, refuse_overwrite
from gankit.io import atomic_write, check_writable
from gankit.training.lock import OutputLock

Member = tuple[str, np.dtype, tuple[int, ...], Iterable[np.ndarray]]


@contextlib.contextmanager
def claim_outputs(
    paths: Iterable[str | Path], *, overwrite: bool = False, param: str = "out", folders: bool = False
) -> Iterator[None]:
    """Claim every output of a command before its work starts, and hold the claim while it runs: each path can be
    written (:func:`gankit.io.check_writable`; a file output is no existing folder, unless ``folders``), no other
    gankit command writes it (:class:`OutputLock`), and none replaces an existing file unless ``overwrite``
    (checked under the lock, so two commands cannot both find the path free)."""
    targets = [Path(p) for p in paths]
    for target in targets:
        if not folders and target.is_dir():
            raise ParameterError(param, f"{target} is a folder; give a file name for the output")
        check_writable(target, param)
    with contextlib.ExitStack() as held:
        for target in targets:
            held.enter_context(OutputLock(target))
        refuse_overwrite(targets, overwrite, param)
        yield


def targets_for(out: str | Path) -> dict[str, Path]:
    """``OUT.png`` -> a grid, ``OUT.npz`` -> arrays, a bare ``OUT`` -> both ``OUT.png`` and ``OUT.npz``."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".png", ".npz"):
        return {suffix[1:]: out}
    return {"png": out.with_name(out.name + ".png"), "npz": out.with_name(out.name + ".npz")}


def check_free_space(path: Path, nbytes: int, param: str = "out") -> None:
    """Refuse, before any work, an output larger than the free space where it goes."""
    folder = path.parent if path.parent.exists() else Path(".")
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise ParameterError(
            param,
            f"{path} would take {nbytes / 2**30:.1f} GiB but {folder} has {free / 2**30:.1f} GiB free; "
            "lower --num or write PNGs into a folder instead",
        )


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` of ``arrays``, written atomically."""
    return stream_npz(path, [(name, a.dtype, a.shape, [a]) for name, a in arrays.items()])


def stream_npz(path: str | Path, members: list[Member]) -> Path:
    """An ``.npz`` (uncompressed, readable by ``np.load``) whose members are written chunk by chunk.

    Each member is ``(name, dtype, shape, chunks)``: the chunks, concatenated along the first axis, must fill
    ``shape`` exactly. Members are written one after the other, so at most one chunk is in memory at a time.
    """

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, dtype, shape, chunks in members:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                              "shape": tuple(shape)}
                    np.lib.format.write_array_header_1_0(member, header)
                    written = 0
                    for chunk in _checked(chunks, dtype, shape, name):
                        member.write(chunk.tobytes())
                        written += len(chunk)
                    if written != shape[0]:
                        raise ValueError(f"npz member {name}: {written} rows written, {shape[0]} declared")

    return atomic_write(path, write)


def _checked(chunks: Iterable[np.ndarray], dtype, shape: tuple[int, ...], name: str) -> Iterator[np.ndarray]:
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=dtype)
        if chunk.shape[1:] != tuple(shape[1:]):
            raise ValueError(f"npz member {name}: chunk of shape {chunk.shape} for an array of shape {shape}")
        yield chunk
