"""Class-balanced batches: P cell types x K cells, so every batch has positives and negatives."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

#: Shortest epoch, in batches, so that few-shot references still take meaningful steps.
MIN_BATCHES_PER_EPOCH = 10


class ClassBalancedSampler(Sampler[np.ndarray]):
    """Yield index arrays, each with ``cells_per_type`` cells of ``types_per_batch`` types.

    Types with fewer cells contribute all they have. An epoch has enough batches to show each
    cell about once, and at least :data:`MIN_BATCHES_PER_EPOCH`. Every epoch draws anew from a
    generator seeded with ``seed`` and the epoch number, so runs repeat exactly.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        types_per_batch: int = 16,
        cells_per_type: int = 16,
        seed: int | None = 0,
        n_batches: int | None = None,
    ) -> None:
        self.groups = [np.flatnonzero(labels == code) for code in np.unique(labels)]
        self.types_per_batch = min(types_per_batch, len(self.groups))
        self.cells_per_type = cells_per_type
        self.seed = seed
        self.epoch = 0
        batch_cells = self.types_per_batch * cells_per_type
        self.n_batches = n_batches or max(
            math.ceil(len(labels) / batch_cells), MIN_BATCHES_PER_EPOCH
        )

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        seed = None if self.seed is None else self.seed * 100_003 + self.epoch
        rng = np.random.default_rng(seed)
        self.epoch += 1
        for _ in range(self.n_batches):
            types = rng.choice(len(self.groups), self.types_per_batch, replace=False)
            picks = [
                rng.choice(
                    self.groups[t], min(self.cells_per_type, len(self.groups[t])), replace=False
                )
                for t in types
            ]
            yield np.concatenate(picks)


class TensorDictDataset(Dataset):
    """Rows of aligned tensors, fetched a whole batch of indices at a time."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(index)
        return {key: value[index] for key, value in self.tensors.items()}
