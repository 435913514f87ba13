"""Chunked distance search on a torch device: nearest type by prototypes, or a kNN vote.

Memory is bounded by the chunk, never by the query: each step holds one block of
``chunk x references`` distances, at most :data:`MAX_DISTANCE_BLOCK` floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mapcell._constants import MAX_DISTANCE_BLOCK


@dataclass(frozen=True)
class SearchResult:
    """Per query cell: nearest type code, its distance, and a confidence in [0, 1]."""

    nearest: np.ndarray
    distance: np.ndarray
    confidence: np.ndarray


def _chunk_rows(n_references: int, chunk_size: int) -> int:
    return max(1, min(chunk_size, MAX_DISTANCE_BLOCK // max(n_references, 1)))


def _chunks(query: torch.Tensor, n_references: int, chunk_size: int, device: torch.device):
    step = _chunk_rows(n_references, chunk_size)
    for start in range(0, len(query), step):
        yield slice(start, start + step), query[start : start + step].to(device)


def nearest_prototype(
    query: torch.Tensor,
    prototypes: torch.Tensor,
    prototype_types: torch.Tensor,
    n_types: int,
    *,
    device: torch.device,
    chunk_size: int,
) -> SearchResult:
    """The nearest type of each query cell, by its nearest prototype.

    ``confidence`` is ``1 - d1 / d2``, with ``d1`` and ``d2`` the distances to the nearest and
    the second-nearest *type*: 0 when two types are equally near, towards 1 when one is far
    nearer than any other (1 when the model has a single type).
    """
    prototypes, prototype_types = prototypes.to(device), prototype_types.to(device)
    nearest = torch.empty(len(query), dtype=torch.long)
    d1, d2 = torch.empty(len(query)), torch.empty(len(query))
    for rows, block in _chunks(query, len(prototypes), chunk_size, device):
        distance = torch.cdist(block, prototypes)
        per_type = distance.new_full((len(block), n_types), float("inf"))
        per_type.scatter_reduce_(1, prototype_types.expand(len(block), -1), distance, "amin")
        best = per_type.topk(min(2, n_types), dim=1, largest=False)
        nearest[rows] = best.indices[:, 0].cpu()
        d1[rows] = best.values[:, 0].cpu()
        d2[rows] = (
            best.values[:, 1] if n_types > 1 else torch.full_like(best.values[:, 0], float("inf"))
        ).cpu()
    confidence = torch.where(torch.isinf(d2), torch.ones_like(d1), 1 - d1 / d2.clamp_min(1e-12))
    return SearchResult(nearest.numpy(), d1.numpy(), confidence.clamp(0, 1).numpy())


def knn_vote(
    query: torch.Tensor,
    references: torch.Tensor,
    reference_types: torch.Tensor,
    n_types: int,
    *,
    k: int,
    device: torch.device,
    chunk_size: int,
) -> SearchResult:
    """Majority vote of the ``k`` nearest reference cells, as the original MapCell did.

    ``distance`` is the mean distance to the neighbours that voted for the winning type;
    ``confidence`` is the share of the ``k`` votes it won. Ties go to the type whose voters are
    nearer.
    """
    k = min(k, len(references))
    references, reference_types = references.to(device), reference_types.to(device)
    nearest = torch.empty(len(query), dtype=torch.long)
    mean_distance, share = torch.empty(len(query)), torch.empty(len(query))
    for rows, block in _chunks(query, len(references), chunk_size, device):
        neighbours = torch.cdist(block, references).topk(k, dim=1, largest=False)
        types = reference_types[neighbours.indices]
        votes = torch.zeros(len(block), n_types, device=device).scatter_add_(
            1, types, torch.ones_like(neighbours.values)
        )
        summed = torch.zeros_like(votes).scatter_add_(1, types, neighbours.values)
        # Most votes first; among equal counts the smaller summed distance wins.
        winner = (votes - summed / (k * 4 + 1)).argmax(dim=1)
        won = votes.gather(1, winner[:, None]).squeeze(1)
        nearest[rows] = winner.cpu()
        mean_distance[rows] = (summed.gather(1, winner[:, None]).squeeze(1) / won).cpu()
        share[rows] = (won / k).cpu()
    return SearchResult(nearest.numpy(), mean_distance.numpy(), share.numpy())
