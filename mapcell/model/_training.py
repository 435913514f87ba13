"""What training needs beside the model: the split, the data module and the training plan."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from scvi.train import TrainingPlan
from torch.utils.data import DataLoader

from mapcell.nn._module import BATCH_KEY, LABELS_KEY, X_KEY
from mapcell.nn._sampler import ClassBalancedSampler, TensorDictDataset

#: Validation batches per epoch, drawn with a fixed seed so the curve is comparable across epochs.
VALIDATION_BATCHES = 8


def split_cells(
    type_codes: np.ndarray,
    *,
    n_shots: int | None,
    calibration_fraction: float,
    seed: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training cells and of held-out calibration cells, chosen per type.

    With ``n_shots``, each type trains on ``n_shots`` cells (never all of a type: one stays out
    when it has two or more) and the rest calibrate. With ``n_shots=None``, a
    ``calibration_fraction`` of each type (at least one cell, when it has two) is held out.
    """
    rng = np.random.default_rng(seed)
    train, calibration = [], []
    for code in np.unique(type_codes):
        cells = rng.permutation(np.flatnonzero(type_codes == code))
        if len(cells) < 2:
            n_train = len(cells)
        elif n_shots is not None:
            n_train = min(n_shots, len(cells) - 1)
        else:
            n_train = len(cells) - max(1, round(calibration_fraction * len(cells)))
        train.append(cells[:n_train])
        calibration.append(cells[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(calibration))


class SiameseDataModule(pl.LightningDataModule):
    """Class-balanced batches of training cells, and of held-out cells for validation."""

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        batches: torch.Tensor | None,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        *,
        types_per_batch: int,
        cells_per_type: int,
        seed: int | None,
    ) -> None:
        super().__init__()
        self.train_idx, self.val_idx = train_idx, val_idx
        self.n_train, self.n_val = len(train_idx), len(val_idx)
        self._datasets = {
            name: self._subset(x, labels, batches, idx)
            for name, idx in (("train", train_idx), ("val", val_idx))
        }
        self._sampling = {"types_per_batch": types_per_batch, "cells_per_type": cells_per_type}
        self.seed = seed
        self._train_sampler = ClassBalancedSampler(
            labels[train_idx].numpy(), seed=seed, **self._sampling
        )

    @staticmethod
    def _subset(x, labels, batches, idx) -> TensorDictDataset:
        tensors = {X_KEY: x[idx], LABELS_KEY: labels[idx]}
        if batches is not None:
            tensors[BATCH_KEY] = batches[idx]
        return TensorDictDataset(**tensors)

    @property
    def batches_per_epoch(self) -> int:
        """Training batches in one epoch."""
        return len(self._train_sampler)

    def train_dataloader(self) -> DataLoader:
        """Fresh class-balanced batches each epoch."""
        return DataLoader(self._datasets["train"], sampler=self._train_sampler, batch_size=None)

    def val_dataloader(self) -> DataLoader | list:
        """The same held-out batches every epoch; none when no cell was held out."""
        if self.n_val == 0:
            return []
        labels = self._datasets["val"].tensors[LABELS_KEY].numpy()
        sampler = ClassBalancedSampler(
            labels, seed=self.seed, n_batches=VALIDATION_BATCHES, **self._sampling
        )
        sampler.epoch = 0
        fixed = list(sampler)
        return DataLoader(self._datasets["val"], sampler=fixed, batch_size=None)


class SiameseTrainingPlan(TrainingPlan):
    """scvi-tools' training plan, logging what a Siamese model has instead of ELBO terms.

    Logged per epoch: ``train_loss`` and ``validation_loss`` (the metric loss), and the mean
    distance of positive and of negative pairs (``*_positive_distance``, ``*_negative_distance``).
    """

    def _log_step(self, batch, prefix: str) -> torch.Tensor:
        _, _, output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        size = output.n_obs_minibatch
        self.log(
            f"{prefix}_loss",
            output.loss,
            on_step=False,
            on_epoch=True,
            prog_bar=prefix == "train",
            batch_size=size,
        )
        for name, value in output.extra_metrics.items():
            self.log(f"{prefix}_{name}", value, on_step=False, on_epoch=True, batch_size=size)
        return output.loss

    def training_step(self, batch, batch_idx):
        """One optimisation step on a class-balanced batch."""
        return self._log_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """The same loss on held-out cells, for early stopping and the history."""
        self._log_step(batch, "validation")
