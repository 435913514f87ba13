"""Neighbourhoods within a query, for judging novelty by groups of similar cells.

One cell's distance to its type is noisy; the median over the cell and its nearest *query*
neighbours is not, and a new type, which forms its own group in the query, keeps its distance
while a few stray known cells lose theirs (benchmarks/NOTES.md, entry 8). Neighbours are found in
the query's own principal components, not in the mapcell embedding: the embedding was trained to
pull cells onto the known types and would mix a new type with the known one it resembles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from mapcell.search._engine import _chunks

#: Principal components of the query in which its cells' neighbours are found.
NEIGHBOUR_COMPONENTS = 30


def standardised_pcs(
    chunks: Callable[[], Iterable[np.ndarray]],
    n_components: int = NEIGHBOUR_COMPONENTS,
    *,
    device: torch.device,
) -> np.ndarray:
    """Principal components of z-scored genes, from two passes over dense chunks of cells.

    ``chunks`` is called twice and must yield the same rows in the same order each time: the
    first pass sums the cross-products (genes x genes, float64), the second projects. Only one
    chunk and the genes x genes matrix are in memory at a time. Genes constant over the query
    carry no information and get no weight.
    """
    total, n_cells, cross = None, 0, None
    for block in chunks():
        x = torch.as_tensor(block, dtype=torch.float64, device=device)
        total = x.sum(0) if total is None else total + x.sum(0)
        cross = x.T @ x if cross is None else cross + x.T @ x
        n_cells += len(x)
    mean = total / n_cells
    covariance = cross / n_cells - torch.outer(mean, mean)
    std = covariance.diagonal().clamp_min(0).sqrt()
    informative = std > 1e-8
    scale = torch.where(informative, std, torch.ones_like(std))
    correlation = covariance / torch.outer(scale, scale)
    correlation = correlation * torch.outer(informative, informative)
    n_components = max(1, min(n_components, int(informative.sum()), n_cells - 1))
    _, vectors = torch.linalg.eigh(correlation)  # ascending eigenvalues
    basis = vectors[:, -n_components:].flip(1) / scale[:, None]
    parts = [
        ((torch.as_tensor(block, dtype=torch.float64, device=device) - mean) @ basis)
        for block in chunks()
    ]
    return torch.cat(parts).float().cpu().numpy()


def neighbour_indices(
    coordinates: np.ndarray, k: int, *, device: torch.device, chunk_size: int
) -> np.ndarray:
    """The ``k`` nearest cells of every cell (itself first), by Euclidean distance; cells x k.

    Exact and chunked: memory is one block of ``chunk x cells`` distances, time grows with the
    square of the number of cells.
    """
    points = torch.as_tensor(coordinates, dtype=torch.float32)
    k = min(k, len(points))
    everyone = points.to(device)
    out = torch.empty(len(points), k, dtype=torch.long)
    for rows, block in _chunks(points, len(points), chunk_size, device):
        distance = torch.cdist(block, everyone)
        # A cell is its own nearest neighbour even when duplicates tie with it.
        own = torch.arange(rows.start, rows.start + len(block), device=device)
        distance[torch.arange(len(block), device=device), own] = -1.0
        out[rows] = distance.topk(k, dim=1, largest=False).indices.cpu()
    return out.numpy()


def neighbour_median(values: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Median of ``values`` over each row of ``neighbours`` (cells x k indices)."""
    return np.median(np.asarray(values)[neighbours], axis=1)
