"""Image folders of any depth (CelebA layout) and class folders (one sub-folder per class).

Listing is deterministic (relative paths sorted part by part, code point order), hidden files and folders
(``.name``, ``__MACOSX``) are ignored. Every other file is checked once before training (header, and a cheap
completeness test, see :func:`gankit.data.decode.check_file`): a file that cannot be used is skipped with a
one-line warning naming it, or, with ``strict``, is an error. Images smaller than the model size are upscaled
with a warning (an error with ``strict``). Nothing under the folder is ever written.

Symbolic links:

- a link to a file is followed, wherever the file is (people link images into a dataset folder);
- a link to a folder is never followed, with a warning naming it: one could loop (``a/loop -> ..``) or lead out
  of the data folder into other data or other runs' outputs. A folder inside the data folder is read where it
  is; one outside is given as ``--data`` itself (the ``--data`` path may be a link);
- one file is counted once: two links to the same file, or a link and the file, give one image (the path first
  in the listing order), so no image weighs double; hard links count as the same file too;
- a broken link, or a link to something other than a regular file, is skipped like a bad file.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gankit.data.decode import IMAGE_EXTENSIONS, BadImage, check_file, decode_file, is_image_name
from gankit.errors import UserError
from gankit.log import info, warn
from gankit.log import progress as progress_bar

MAX_WARNINGS_PER_KIND = 20  # one line per file up to this many, then a count (a 200k-image folder stays readable)
PARALLEL_CHECK_MIN = 2000  # below this, checking in-process is faster than starting a pool
IGNORED_DIRS = {"__MACOSX"}

_EXTENSIONS_TEXT = " ".join(IMAGE_EXTENSIONS)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_DIRS


@dataclass
class Listing:
    """What a folder's walk found: ``files`` (relative POSIX paths, sorted part by part), ``bad`` (entries that
    are not usable files: broken links, special files; ``(path, reason)``) and ``notes`` (what was left out on
    purpose: folder links, second paths to one file; ``(path, reason)``)."""

    files: list[str]
    bad: list[tuple[str, str]]
    notes: list[tuple[str, str]]


def walk_folder(root: Path) -> Listing:
    """Every non-hidden regular file under ``root`` (any depth; file links followed, folder links never, each
    file once; see the module docstring). Deterministic: the listing order does not depend on the platform."""
    found: list[tuple[tuple[str, ...], tuple[int, int]]] = []
    bad: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        rel = pending.pop()
        try:
            entries = list(os.scandir(root.joinpath(*rel)))
        except OSError as exc:
            bad.append(("/".join(rel), f"folder cannot be listed ({exc.strerror})"))
            continue
        for entry in entries:
            if _hidden(entry.name):
                continue
            parts = (*rel, entry.name)
            name = "/".join(parts)
            if entry.is_dir(follow_symlinks=False):
                pending.append(parts)
                continue
            try:
                st = entry.stat()  # follows a link to what it points at
            except OSError as exc:
                link = entry.is_symlink()
                bad.append((name, f"a broken link to {os.readlink(entry.path)}" if link else
                            f"cannot be read ({exc.strerror})"))
                continue
            if stat.S_ISDIR(st.st_mode):
                notes.append((name, f"a link to the folder {os.readlink(entry.path)}, not followed (a folder link "
                                    "could loop or lead outside the data folder; give that folder as --data)"))
            elif not stat.S_ISREG(st.st_mode):
                bad.append((name, "not a regular file"))
            else:
                found.append((parts, (st.st_dev, st.st_ino)))
    found.sort()
    files: list[str] = []
    first: dict[tuple[int, int], str] = {}
    for parts, identity in found:
        name = "/".join(parts)
        if identity in first:
            notes.append((name, f"the same file as {first[identity]}, counted once"))
            continue
        first[identity] = name
        files.append(name)
    bad.sort()
    notes.sort()
    return Listing(files, bad, notes)


def list_files(root: Path) -> list[str]:
    """The files of :func:`walk_folder` (relative POSIX paths, sorted part by part, so ``a/b.jpg`` and ``a.jpg``
    have a fixed, platform-independent order)."""
    return walk_folder(root).files


def has_class_folders(root: str | os.PathLike) -> bool:
    """True when every image under ``root`` sits inside a sub-folder and there are two or more of them: the
    layout ``--labels subdirs`` reads as one class per sub-folder."""
    images = [f for f in list_files(Path(root)) if is_image_name(f)]
    tops = {f.split("/", 1)[0] for f in images}
    return bool(images) and all("/" in f for f in images) and len(tops) >= 2


@dataclass
class FolderIndex:
    """The usable images of a folder: ``files`` (relative paths, sorted), ``labels`` ``(N,)`` int64 or None."""

    root: Path
    files: list[str]
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    upscaled: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)


def _check_one(path: str) -> tuple[int, int] | str:
    try:
        return check_file(path)
    except BadImage as exc:
        return str(exc)


def _check_all(paths: Sequence[str], workers: int, progress: bool | None) -> list[tuple[int, int] | str]:
    """``check_file`` on every path: ``(w, h)`` or the reason it is bad; in worker processes for big folders."""
    big = len(paths) >= PARALLEL_CHECK_MIN
    with progress_bar(len(paths), desc="checking images", unit="img", enabled=progress if big else False) as bar:
        if workers > 0 and big:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                results = []
                for result in pool.imap(_check_one, paths, chunksize=64):
                    results.append(result)
                    bar.update(1)
                return results
        results = []
        for path in paths:
            results.append(_check_one(path))
            bar.update(1)
        return results


class _Warnings:
    """One line per file, up to :data:`MAX_WARNINGS_PER_KIND` per kind, then a count."""

    def __init__(self, emit: Callable[[str], None] = warn) -> None:
        self.counts: dict[str, int] = {}
        self.emit = emit

    def __call__(self, kind: str, message: str) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        if n <= MAX_WARNINGS_PER_KIND:
            self.emit(message)

    def finish(self) -> None:
        for kind, n in self.counts.items():
            if n > MAX_WARNINGS_PER_KIND:
                self.emit(f"... and {n - MAX_WARNINGS_PER_KIND} more {kind} not shown")


def scan_folder(
    root: str | os.PathLike,
    *,
    size: int,
    labels: bool = False,
    strict: bool = False,
    workers: int = 0,
    progress: bool | None = None,
    quiet: bool = False,
) -> FolderIndex:
    """List, check and label an image folder for a model of ``size x size``.

    ``labels``: one sub-folder per class, class ids by sorted folder name (images at any depth below each).
    Raises :class:`UserError` for a missing path, an empty folder, a folder without images, a class folder
    without images and, with ``strict``, for the first bad or too-small file.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"--data {root} does not exist; check the path")
    if not root.is_dir():
        raise UserError(f"--data {root} is a file, not an image folder; give the folder that holds the images")
    listing = walk_folder(root)
    files = listing.files
    if not files:
        left_out = [*listing.notes, *listing.bad]
        why = f" ({root / left_out[0][0]} is {left_out[0][1]})" if left_out else ""
        raise UserError(f"--data {root} is empty; put the training images ({_EXTENSIONS_TEXT}) in it{why}")
    images = [f for f in files if is_image_name(f)]
    if not images:
        raise UserError(
            f"--data {root} holds {len(files)} files but no images ({_EXTENSIONS_TEXT}, any case); "
            "check the path, or pass --dataset for MNIST / CIFAR-10 files"
        )

    classes: list[str] | None = None
    if labels:
        # folder links are not read (see the module docstring), so they are no classes either
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.is_symlink() and not _hidden(d.name))
        if not classes:
            raise UserError(
                f"class labels (--labels subdirs, or a conditional model) need one sub-folder per class but {root} "
                "has none; put each class's images in its own sub-folder, or train unconditionally"
            )
        loose = [f for f in images if "/" not in f]
        if loose:
            raise UserError(
                f"class labels come from sub-folders, but {root / loose[0]} is not inside one ({len(loose)} such "
                "images); move them into a class sub-folder, or train unconditionally"
            )

    warnings = _Warnings(lambda m: None) if quiet else _Warnings()
    skipped: list[tuple[str, str]] = []

    def skip(rel: str, reason: str) -> None:
        if strict:
            raise UserError(f"{root / rel}: {reason}; remove or replace it, or drop --strict to skip bad files")
        skipped.append((rel, reason))
        warnings("skipped files", f"skipped {root / rel}: {reason}")

    for rel, reason in listing.notes:  # left out on purpose: never an error, even with --strict
        warnings("left-out links", f"left out {root / rel}: {reason}")
    results = dict(zip(images, _check_all([str(root / f) for f in images], workers, progress), strict=True))
    results.update(listing.bad)  # broken links, special files: bad files like any other
    good: list[str] = []
    upscaled: list[str] = []
    in_order = sorted([*files, *(rel for rel, _ in listing.bad)], key=lambda rel: rel.split("/"))
    for rel in in_order:  # in listing order, so --strict names the first bad file
        res = results.get(rel)
        if res is None:
            skip(rel, f"not an image file (extension {Path(rel).suffix or 'none'})")
            continue
        if isinstance(res, str):
            skip(rel, res)
            continue
        w, h = res
        if min(w, h) < size:
            if strict:
                raise UserError(
                    f"{root / rel} is {w}x{h}, smaller than the model's {size}x{size}; remove it, train a smaller "
                    "model, or drop --strict to upscale it"
                )
            upscaled.append(rel)
            warnings("upscaled images", f"upscaling {root / rel}: {w}x{h} is smaller than the model's {size}x{size}")
        good.append(rel)
    warnings.finish()
    if not good:
        raise UserError(
            f"none of the {len(images)} image files under {root} could be read (see the warnings above); "
            "replace them with valid images"
        )

    label_array = None
    if classes is not None:
        class_of = {c: i for i, c in enumerate(classes)}
        label_array = np.array([class_of[f.split("/", 1)[0]] for f in good], dtype=np.int64)
        counts = np.bincount(label_array, minlength=len(classes))
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        if empty:
            raise UserError(
                f"class folder {root / empty[0]} has no usable images; add images to it or remove the folder"
            )
    index = FolderIndex(root, good, label_array, classes, skipped, upscaled)
    if not quiet:
        parts = [f"{len(good)} images in {root}"]
        if classes is not None:
            parts.append(f"{len(classes)} classes")
        if skipped:
            parts.append(f"skipped {len(skipped)} bad file{'s' if len(skipped) != 1 else ''} (named above)")
        if upscaled:
            parts.append(f"{len(upscaled)} upscaled")
        info("data: " + ", ".join(parts))
    return index


class FolderDataset:
    """Decodes the images of a :class:`FolderIndex` on demand to uint8 ``(C, S, S)``.

    Paths live in one NumPy bytes array rather than a list of str, so forked DataLoader workers do not copy them
    page by page through reference counting.
    """

    def __init__(self, index: FolderIndex, size: int, channels: int) -> None:
        self.root = str(index.root)
        self.paths = np.array([os.fsencode(p) for p in index.files], dtype=np.bytes_)  # any file-name bytes
        self.labels = index.labels
        self.classes = index.classes
        self.size, self.channels = size, channels
        self._bad: dict[int, str] = {}  # per process: files that failed to decode after passing the check

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.paths[i]))

    def decode(self, i: int) -> np.ndarray:
        """uint8 ``(C, S, S)`` of image ``i``; :class:`BadImage` when it cannot be decoded."""
        if i in self._bad:
            raise BadImage(self._bad[i])
        try:
            return decode_file(self.path(i), self.size, self.channels)
        except BadImage as exc:
            self._bad[i] = str(exc)
            raise

    def decode_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None, list[tuple[str, str]]]:
        """``(images uint8 (B, C, S, S), labels (B,) or None, failures [(path, reason)])``.

        A file that passed the check but fails to decode (damage inside the data) is replaced by the next
        readable image in the listing, so the batch keeps its size and the run goes on; the caller reports it.
        """
        n = len(self)
        out = np.empty((len(indices), self.channels, self.size, self.size), np.uint8)
        chosen = np.empty(len(indices), np.int64)
        failures: list[tuple[str, str]] = []
        for k, i in enumerate(indices):
            j = int(i)
            for _ in range(n):
                try:
                    out[k] = self.decode(j)
                    break
                except BadImage as exc:
                    failures.append((self.path(j), str(exc)))
                    j = (j + 1) % n
            else:
                raise UserError(f"none of the images under {self.root} can be decoded any more; check the folder")
            chosen[k] = j
        labels = self.labels[chosen] if self.labels is not None else None
        return out, labels, failures
