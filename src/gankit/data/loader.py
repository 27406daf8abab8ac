"""Opening a dataset by name or by looking at ``--data PATH``, and the batch streams the trainer draws from.

Every batch stream has the trainer's interface: ``next() -> (images float32 (B, C, S, S) in [-1, 1] on the
device, labels int64 (B,) or None)``, ``state_dict()`` / ``load_state_dict()`` (the sampler's epoch and index,
saved in checkpoints) and ``len()`` (images in the dataset). Indices come from an :class:`InfiniteSampler`
(shuffled every epoch, resumable, sharded per rank). Images travel as uint8 until they reach the device.

- :class:`ArrayBatches`: uint8 arrays in memory or memory-mapped (MNIST, CIFAR-10, a ``gankit prepare`` cache).
- :class:`FolderBatches`: image files decoded on the fly by DataLoader worker processes, a whole batch per task.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gankit.config import DATASETS, DataConfig
from gankit.data.cache import is_cache_file, open_cache
from gankit.data.decode import fit_arrays
from gankit.data.digits import NUM_DIGIT_CLASSES, digits_tensor
from gankit.data.folder import FolderDataset, scan_folder
from gankit.data.formats import default_workers, detect_dataset, load_arrays, worker_init
from gankit.data.sampler import InfiniteSampler
from gankit.errors import UserError
from gankit.log import info, warn
from gankit.models.base import ModelConfig

# ----------------------------------------------------------------------------------------------- batches


class DataBatches(Protocol):
    """What the trainer draws real images from."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images float32 (B, C, S, S) in [-1, 1] on the device, labels int64 (B,) or None)``."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def __len__(self) -> int: ...


class _SamplerState:
    """What the batch streams share: the sampler over ``size`` images (this rank's shard of them), the batch size
    and device, and ``state_dict`` / ``load_state_dict`` / ``len``."""

    def __init__(
        self, size: int, *, batch_size: int, seed: int, device: torch.device | str, rank: int = 0, world_size: int = 1
    ) -> None:
        self.batch_size, self.device = batch_size, torch.device(device)
        self.sampler = InfiniteSampler(size, seed=seed, rank=rank, world_size=world_size)

    def __len__(self) -> int:
        return self.sampler.size

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = int(state["sampler"].get("size", self.sampler.size))
        if saved != self.sampler.size:
            warn(
                f"the data now has {self.sampler.size} images but had {saved} when the checkpoint was saved; "
                "the run continues with a different data order"
            )
        self.sampler.load_state_dict({**state["sampler"], "size": self.sampler.size})


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 in [-1, 1] on ``device``; the conversion runs there (4x fewer bytes moved)."""
    x = x.to(device, non_blocking=True)
    return x.float().div_(127.5).sub_(1.0)


class ArrayBatches(_SamplerState):
    """Batches gathered from a uint8 array ``(N, C, S, S)`` (in RAM or an ``np.memmap``) and labels ``(N,)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, **stream: Any) -> None:
        """``stream``: ``batch_size``, ``seed``, ``device``, ``rank``, ``world_size`` (see :class:`_SamplerState`)."""
        super().__init__(len(images), **stream)
        self.images, self.labels = images, labels
        self.pin = self.device.type == "cuda"

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.sampler.next_indices(self.batch_size).numpy()
        x = torch.from_numpy(np.asarray(self.images[idx]))  # one gather; from a memmap, straight from the page cache
        if self.pin:
            x = x.pin_memory()
        y = torch.from_numpy(self.labels[idx]).to(self.device) if self.labels is not None else None
        return _to_device(x, self.device), y


class TensorBatches(_SamplerState):
    """Batches from an in-memory image tensor ``(N, C, H, W)`` in [-1, 1] and labels ``(N,)``.

    Indices come from an :class:`InfiniteSampler`; the position is part of the checkpoint.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, **stream: Any) -> None:
        """``stream``: ``batch_size``, ``seed``, ``device``, ``rank``, ``world_size`` (see :class:`_SamplerState`)."""
        super().__init__(len(images), **stream)
        self.images, self.labels = images, labels

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.sampler.next_indices(self.batch_size)
        x = self.images[idx].to(self.device, non_blocking=True)
        y = self.labels[idx].to(self.device, non_blocking=True) if self.labels is not None else None
        return x, y


class _IndexStream:
    """The DataLoader's sampler: ``(indices, sampler state after them)`` forever.

    The DataLoader draws ahead of the training loop to keep its workers busy, so the sampler's own position runs
    ahead of what was consumed; each batch carries the position after it, and the consumer keeps that one.
    """

    def __init__(self, sampler: InfiniteSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    def __iter__(self) -> Iterator[tuple[list[int], dict[str, Any]]]:
        while True:
            idx = self.sampler.next_indices(self.batch_size).tolist()
            yield idx, self.sampler.state_dict()


class _BatchDecoder:
    """Map-style dataset whose item is a whole batch: ``(uint8 tensor, labels, failures, state)``."""

    def __init__(self, ds: FolderDataset, with_labels: bool) -> None:
        self.ds, self.with_labels = ds, with_labels

    def __getitem__(self, item: tuple[list[int], dict[str, Any]]):
        indices, state = item
        try:
            x, y, failures = self.ds.decode_batch(indices)
        except UserError as exc:  # handed back as a value: DataLoader would wrap it in a multi-line traceback
            return None, None, str(exc), state
        labels = torch.from_numpy(y) if (self.with_labels and y is not None) else None
        return torch.from_numpy(x), labels, failures, state


class FolderBatches(_SamplerState):
    """Batches decoded on the fly from a :class:`FolderDataset` by ``num_workers`` processes (0: in-process).

    Memory is pinned on CUDA so the copy to the GPU overlaps. A file that passed the listing check but fails to
    decode is replaced by the next image, warned about once, and counted in :attr:`failed` (``strict``: error).
    """

    def __init__(
        self,
        ds: FolderDataset,
        *,
        num_workers: int = 0,
        with_labels: bool = True,
        strict: bool = False,
        prefetch: int = 2,
        **stream: Any,
    ) -> None:
        """``stream``: ``batch_size``, ``seed``, ``device``, ``rank``, ``world_size`` (see :class:`_SamplerState`)."""
        super().__init__(len(ds), **stream)
        self.ds = ds
        self.num_workers, self.with_labels, self.strict, self.prefetch = num_workers, with_labels, strict, prefetch
        self._consumed = self.sampler.state_dict()
        self._iter: Iterator | None = None
        self.failed: dict[str, str] = {}

    def _start(self) -> Iterator:
        from torch.utils.data import DataLoader

        self.sampler.load_state_dict(self._consumed)  # prefetched-but-unused batches are drawn again
        loader = DataLoader(
            _BatchDecoder(self.ds, self.with_labels),
            batch_size=None,
            sampler=_IndexStream(self.sampler, self.batch_size),
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=worker_init if self.num_workers else None,
            prefetch_factor=self.prefetch if self.num_workers else None,
            persistent_workers=False,
        )
        return iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._iter is None:
            self._iter = self._start()
        x, y, failures, state = next(self._iter)
        if isinstance(failures, str):
            raise UserError(failures)
        self._consumed = state
        for path, reason in failures:
            if self.strict:
                raise UserError(f"{path}: {reason}; remove or replace it, or drop --strict to skip bad files")
            if path not in self.failed:
                self.failed[path] = reason
                warn(f"skipped {path}: {reason} (replaced by the next image; {len(self.failed)} so far)")
        return _to_device(x, self.device), (y.to(self.device) if y is not None else None)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": dict(self._consumed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        super().load_state_dict(state)
        self._consumed = self.sampler.state_dict()

    def close(self) -> None:
        """Stop the worker processes (a new ``next()`` starts them again)."""
        if self._iter is not None:
            shutdown = getattr(self._iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._iter = None


# ----------------------------------------------------------------------------------------------- sources


@dataclass
class DataSource:
    """An opened dataset: ``kind`` (``folder``, ``mnist``, ...), its ``path``, class names (None: no labels), and
    what :meth:`batches` streams from (uint8 arrays, a folder, or the digits' float tensors)."""

    kind: str
    path: str | None
    classes: list[str] | None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    folder: FolderDataset | None = None
    tensors: tuple[torch.Tensor, torch.Tensor] | None = None
    num_workers: int = 0
    strict: bool = False

    def __len__(self) -> int:
        if self.folder is not None:
            return len(self.folder)
        if self.tensors is not None:
            return len(self.tensors[0])
        assert self.images is not None
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0

    def label_array(self) -> np.ndarray | None:
        """int64 ``(N,)`` labels of every image, or None for unlabelled data."""
        if self.classes is None:
            return None
        if self.folder is not None:
            return self.folder.labels
        if self.tensors is not None:
            return self.tensors[1].numpy()
        return self.labels

    def subset(self, n: int, seed: int = 0) -> DataSource:
        """The same source restricted to ``n`` images chosen by :func:`balanced_subset` (limited-data runs)."""
        if n > len(self):
            raise UserError(
                f"data.max_images {n} is more than the {len(self)} images of the data; lower it or drop it"
            )
        keep = balanced_subset(self.label_array(), len(self), n, seed)
        if self.folder is not None:
            folder = copy.copy(self.folder)
            folder.paths = self.folder.paths[keep]
            folder.labels = self.folder.labels[keep] if self.folder.labels is not None else None
            folder._bad = {}
            return dataclasses.replace(self, folder=folder)
        if self.tensors is not None:
            x, y = self.tensors
            index = torch.from_numpy(keep)
            return dataclasses.replace(self, tensors=(x[index], y[index]))
        assert self.images is not None
        labels = self.labels[keep] if self.labels is not None else None
        return dataclasses.replace(self, images=np.asarray(self.images[keep]), labels=labels)

    def batches(
        self,
        *,
        batch_size: int,
        seed: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
        with_labels: bool = True,
    ) -> ArrayBatches | FolderBatches:
        """The infinite batch stream of this dataset (labels only when ``with_labels`` and the data has them)."""
        device = torch.device(device)
        kw: dict[str, Any] = dict(batch_size=batch_size, seed=seed, device=device, rank=rank, world_size=world_size)
        if self.folder is not None:
            return FolderBatches(
                self.folder, num_workers=self.num_workers, with_labels=with_labels, strict=self.strict, **kw
            )
        if self.tensors is not None:
            x, y = self.tensors
            use = with_labels and self.classes is not None
            return TensorBatches(x, y if use else None, **kw)  # type: ignore[return-value]
        assert self.images is not None
        use = with_labels and self.classes is not None
        return ArrayBatches(self.images, self.labels if use else None, **kw)


def open_dataset(
    dataset: str,
    path: str | None,
    *,
    image_size: int,
    channels: int,
    split: str = "train",
    labels: str | None = None,
    strict: bool = False,
    num_workers: int | None = None,
    conditional: bool = False,
    progress: bool | None = None,
    size_fits: Callable[[int], bool] | None = None,
) -> DataSource:
    """Open ``dataset`` (``auto``: detected from ``path``) for a ``channels x image_size x image_size`` model.

    ``labels``: ``subdirs`` (class folders), ``none``, or None to use class folders exactly when the model is
    ``conditional``. Image folders are listed and checked here; their pixels are decoded later, by the batches.
    ``size_fits(S)``: whether the model could be trained at ``S`` instead; a cache of another size ``S`` then
    suggests ``--set model.image_size=S`` besides preparing it again.
    """
    # the settings pass the run config's one check, whoever calls (cheap, and a config was checked already)
    DataConfig(dataset, path, split, labels, strict, num_workers).validate()
    if dataset == "digits":
        x, y = digits_tensor(split, image_size, channels)
        return DataSource("digits", None, [str(i) for i in range(NUM_DIGIT_CLASSES)], tensors=(x, y))
    if path is None:
        hint = "an image folder" if dataset in ("folder", "auto") else f"the {dataset} files"
        raise UserError(f"dataset {dataset!r} needs a path: pass --data PATH ({hint})")
    kind = detect_dataset(path) if dataset == "auto" else dataset
    p = Path(path)
    if not p.exists():
        raise UserError(f"--data {p} does not exist; check the path")
    if labels == "subdirs" and kind != "folder":
        raise UserError(f"--labels subdirs is for image folders; {kind} data carries its own labels")
    workers = default_workers() if num_workers is None else int(num_workers)
    if kind == "folder":
        use_labels = labels == "subdirs" or (labels is None and conditional)
        index = scan_folder(p, size=image_size, labels=use_labels, strict=strict, workers=workers, progress=progress)
        folder = FolderDataset(index, image_size, channels)
        return DataSource("folder", str(p), index.classes, folder=folder, num_workers=workers, strict=strict)
    if kind == "cache":
        if not is_cache_file(p):
            raise UserError(f"{p} is not a gankit cache; make one with gankit prepare --data PATH --out FILE")
        images, y, header = open_cache(p)
        if header["size"] != image_size:
            size = header["size"]
            other = f", or set --set model.image_size={size}" if size_fits is not None and size_fits(size) else ""
            raise UserError(
                f"cache {p} holds {size}x{size} images but the model is {image_size}x{image_size}; "
                f"run gankit prepare --size {image_size} again{other}"
            )
        if header["channels"] != channels:
            raise UserError(
                f"cache {p} holds {header['channels']}-channel images but the model has {channels}; "
                f"run gankit prepare --channels {channels} again"
            )
        classes = header.get("classes") if labels != "none" else None
        info(f"data: {len(images)} images from cache {p} (prepared from {header.get('source')})")
        return DataSource("cache", str(p), classes, images=images, labels=y if classes else None)
    if kind in ("mnist", "cifar10"):
        x, y, classes = load_arrays(kind, p, split)
        if min(x.shape[2:]) < image_size:
            warn(f"upscaling {kind}'s {x.shape[2]}x{x.shape[3]} images to the model's {image_size}x{image_size}")
        x = fit_arrays(x, image_size, channels)
        info(f"data: {len(x)} {kind} images ({split}) from {p}, {len(classes)} classes")
        return DataSource(kind, str(p), classes if labels != "none" else None, images=x, labels=y)
    raise UserError(f"--dataset {kind} is not a dataset that reads --data; choose one of: {', '.join(DATASETS)}")


def balanced_subset(labels: np.ndarray | None, total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` of ``total`` images, seeded: unlabelled data gets a uniform random subset; labelled
    data as even a share of every class as it has (class counts differ by at most one where the classes allow)."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.permutation(total)[:n])
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    taken: list[int] = []
    depth = 0
    while len(taken) < n:
        # one image of every class that still has one, classes in a seeded order, until n are taken
        round_ = [int(pool[depth]) for pool in pools if depth < len(pool)]
        rng.shuffle(round_)
        taken += round_[: n - len(taken)]
        depth += 1
    return np.sort(np.asarray(taken, dtype=np.int64))


def _valid_at_size(model: ModelConfig, size: int) -> bool:
    """Whether ``model`` with ``image_size=size`` and every other field as it is passes its family's checks."""
    try:
        dataclasses.replace(model, image_size=size).validate()
    except (UserError, ValueError, TypeError):
        return False
    return True


def open_training_data(data: DataConfig, model: ModelConfig, *, progress: bool | None = None) -> DataSource:
    """Open the data of a run config for its model, checking that the classes fit: a conditional model needs
    exactly the data's class count, and class folders need a conditional model. With ``data.max_images`` only a
    seeded, class-balanced subset of that many images is used."""
    wanted = model.num_classes  # type: ignore[attr-defined]
    source = open_dataset(
        data.dataset,
        data.path,
        image_size=model.image_size,  # type: ignore[attr-defined]
        channels=model.channels,  # type: ignore[attr-defined]
        split=data.split,
        labels=data.labels,
        strict=data.strict,
        num_workers=data.num_workers,
        conditional=bool(wanted),
        progress=progress,
        size_fits=lambda size: _valid_at_size(model, size),
    )
    have = source.num_classes
    if wanted and wanted != have:
        raise UserError(
            f"model.num_classes is {wanted} but the data has {have or 'no'} classes; "
            f"set --set model.num_classes={have}"
        )
    if not wanted and data.labels == "subdirs":
        raise UserError(
            f"--labels subdirs found {have} classes but the model is unconditional; "
            f"add --set model.num_classes={have} (or drop --labels)"
        )
    if data.max_images is not None:
        source = source.subset(data.max_images, data.subset_seed)
        info(f"data: a class-balanced subset of {len(source)} images (data.max_images, subset_seed "
             f"{data.subset_seed})")
    return source


def load_dataset(
    dataset: str, path: str | None, *, split: str, image_size: int, channels: int, labels: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Every image at once: ``(images (N, C, S, S) in [-1, 1], labels (N,) or None, num_classes)``.

    For evaluation on small sets; training streams through :func:`open_dataset` instead (a folder is decoded here
    in full, in this process).
    """
    src = open_dataset(dataset, path, split=split, image_size=image_size, channels=channels, labels=labels)
    y = None
    if src.tensors is not None:
        x, y = src.tensors
    elif src.folder is not None:
        arr, lab, _ = src.folder.decode_batch(range(len(src.folder)))
        x = torch.from_numpy(arr).float() / 127.5 - 1
        y = torch.from_numpy(lab) if lab is not None else None
    else:
        assert src.images is not None
        x = torch.from_numpy(np.asarray(src.images)).float() / 127.5 - 1
        y = torch.from_numpy(src.labels) if src.labels is not None else None
    if src.classes is None:
        y = None
    return x, y, src.num_classes
