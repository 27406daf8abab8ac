"""Datasets and the batch stream the trainer draws from."""

from __future__ import annotations

from typing import Any

import torch

from gankit.data.digits import NUM_DIGIT_CLASSES, digits_tensor, load_digits_split
from gankit.data.sampler import InfiniteSampler
from gankit.errors import UserError

DATASETS = ("digits",)


class TensorBatches:
    """Batches from an in-memory image tensor ``(N, C, H, W)`` in [-1, 1] and labels ``(N,)``.

    Indices come from an :class:`InfiniteSampler`; the position is part of the checkpoint.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.device = batch_size, device
        self.sampler = InfiniteSampler(len(images), seed=seed, rank=rank, world_size=world_size)

    def __len__(self) -> int:
        return len(self.images)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.sampler.next_indices(self.batch_size)
        x = self.images[idx].to(self.device, non_blocking=True)
        y = self.labels[idx].to(self.device, non_blocking=True) if self.labels is not None else None
        return x, y

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])


def load_dataset(
    dataset: str, path: str | None, *, split: str, image_size: int, channels: int
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """``(images (N, C, S, S) in [-1, 1], labels (N,) or None, num_classes)`` for a dataset name."""
    if dataset == "digits":
        if path is not None:
            raise UserError("the built-in digits dataset takes no --data path; drop --data or set data.dataset")
        images, labels = digits_tensor(split, image_size, channels)
        return images, labels, NUM_DIGIT_CLASSES
    raise UserError(f"unknown dataset {dataset!r}; available here: {', '.join(DATASETS)}")


__all__ = ["DATASETS", "InfiniteSampler", "TensorBatches", "digits_tensor", "load_dataset", "load_digits_split"]
