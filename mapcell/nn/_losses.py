"""Metric-learning losses over one class-balanced batch of embeddings.

Each takes unit-norm embeddings ``z`` (cells x dims), integer ``labels`` and, optionally,
integer ``batches``; with batches, positive pairs are taken across batches wherever a cell has
such a partner, which teaches the encoder to ignore batch effects.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

LossName = Literal["contrastive", "triplet", "supcon"]
LOSSES: tuple[LossName, ...] = ("contrastive", "triplet", "supcon")
DEFAULT_MARGINS = {"contrastive": 1.0, "triplet": 0.3}
DEFAULT_TEMPERATURE = 0.1


def pair_masks(
    labels: torch.Tensor, batches: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (cells x cells) masks of positive and negative pairs, the diagonal excluded."""
    same_label = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same_label & not_self
    if batches is not None:
        cross = positive & (batches[:, None] != batches[None, :])
        has_cross = cross.any(dim=1, keepdim=True)
        positive = torch.where(has_cross, cross, positive)
    return positive, ~same_label


def _pairwise_distance(z: torch.Tensor) -> torch.Tensor:
    # Unit vectors: |a - b|^2 = 2 - 2 a.b; the clamp keeps the sqrt's gradient finite at 0.
    return (2 - 2 * z @ z.T).clamp_min(1e-12).sqrt()


def contrastive_loss(z, labels, batches=None, *, margin: float = 1.0) -> torch.Tensor:
    """MapCell's loss: pull positive pairs together, push negatives beyond ``margin``."""
    positive, negative = pair_masks(labels, batches)
    distance = _pairwise_distance(z)
    pull = distance[positive].pow(2).mean() if positive.any() else z.sum() * 0
    push = F.relu(margin - distance[negative]).pow(2).mean() if negative.any() else z.sum() * 0
    return pull + push


def triplet_loss(z, labels, batches=None, *, margin: float = 0.3) -> torch.Tensor:
    """Triplet loss with batch-hard mining: each cell's farthest positive and nearest negative."""
    positive, negative = pair_masks(labels, batches)
    distance = _pairwise_distance(z)
    hardest_positive = torch.where(positive, distance, torch.zeros_like(distance)).amax(dim=1)
    hardest_negative = torch.where(negative, distance, torch.full_like(distance, 4.0)).amin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not valid.any():
        return z.sum() * 0
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


def supcon_loss(z, labels, batches=None, *, temperature: float = DEFAULT_TEMPERATURE):
    """Supervised contrastive loss (Khosla et al. 2020) at ``temperature``."""
    positive, _ = pair_masks(labels, batches)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    logits = (z @ z.T / temperature).masked_fill(~not_self, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    valid = positive.any(dim=1)
    if not valid.any():
        return z.sum() * 0
    per_cell = -(log_prob.masked_fill(~positive, 0).sum(dim=1)) / positive.sum(dim=1).clamp_min(1)
    return per_cell[valid].mean()


def metric_loss(name: LossName, z, labels, batches=None, **params) -> torch.Tensor:
    """Dispatch to the loss called ``name`` with its parameters (``margin`` or ``temperature``)."""
    if name == "contrastive":
        return contrastive_loss(z, labels, batches, **params)
    if name == "triplet":
        return triplet_loss(z, labels, batches, **params)
    if name == "supcon":
        return supcon_loss(z, labels, batches, **params)
    msg = f"loss must be one of {LOSSES}, not {name!r}"
    raise ValueError(msg)


def loss_params(name: LossName, margin: float | None, temperature: float | None) -> dict:
    """The parameters ``name`` takes, with defaults filled in; reject ones it does not take."""
    if name not in LOSSES:
        msg = f"loss must be one of {LOSSES}, not {name!r}"
        raise ValueError(msg)
    if name == "supcon":
        if margin is not None:
            msg = (
                "margin applies to the 'contrastive' and 'triplet' losses; supcon takes "
                "temperature="
            )
            raise ValueError(msg)
        return {"temperature": DEFAULT_TEMPERATURE if temperature is None else float(temperature)}
    if temperature is not None:
        msg = f"temperature applies to the 'supcon' loss; {name!r} takes margin="
        raise ValueError(msg)
    return {"margin": DEFAULT_MARGINS[name] if margin is None else float(margin)}
