"""An infinite, shuffled, resumable, per-rank index stream."""

from __future__ import annotations

from typing import Any

import torch


class InfiniteSampler:
    """Yields dataset indices forever, reshuffling every epoch.

    The permutation of epoch ``e`` is drawn from a generator seeded with ``seed + e``, so the sequence is a
    pure function of ``(seed, epoch, index)``: :meth:`state_dict` saves that position and a resumed run
    continues the same sequence. With ``world_size > 1`` each rank takes every ``world_size``-th index of the
    shared permutation (ranks see disjoint data).
    """

    def __init__(self, size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        if size < 1:
            raise ValueError("the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch = 0
        self.index = 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        return order[self.rank :: self.world_size]

    def next_indices(self, n: int) -> torch.Tensor:
        """The next ``n`` indices (crossing epoch boundaries as needed)."""
        out = []
        while n > 0:
            take = self._order[self.index : self.index + n]
            out.append(take)
            self.index += len(take)
            n -= len(take)
            if self.index >= len(self._order):
                self.epoch += 1
                self.index = 0
                self._order = self._epoch_order()
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])
        self._order = self._epoch_order()
