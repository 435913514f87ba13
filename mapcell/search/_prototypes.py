"""Prototypes per cell type and the per-type distance thresholds that flag novel cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mapcell._constants import MIN_CALIBRATION_CELLS

#: k-means iterations when a type gets several prototypes.
KMEANS_ITERATIONS = 25
#: Smallest threshold, so that a type whose held-out cells all sit on its prototype still has one.
MIN_THRESHOLD = 1e-3


def _kmeans(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; returns ``k`` centres."""
    centres = points[torch.randint(len(points), (1,), generator=generator)]
    while len(centres) < k:
        nearest = torch.cdist(points, centres).amin(dim=1).pow(2)
        pick = torch.multinomial(nearest + 1e-12, 1, generator=generator)
        centres = torch.cat([centres, points[pick]])
    for _ in range(KMEANS_ITERATIONS):
        assignment = torch.cdist(points, centres).argmin(dim=1)
        for j in range(k):
            members = points[assignment == j]
            if len(members):
                centres[j] = members.mean(dim=0)
    return centres


def compute_prototypes(
    embedding: torch.Tensor,
    type_codes: torch.Tensor,
    n_types: int,
    *,
    per_type: int = 1,
    seed: int | None = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes (P x dims) and the type code of each (P,).

    One centroid per type, or ``per_type`` k-means centres inside each type that has at least
    twice as many cells (a type with fewer keeps one centroid).
    """
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    prototypes, owners = [], []
    for code in range(n_types):
        cells = embedding[type_codes == code]
        if len(cells) == 0:
            msg = f"cell type code {code} has no cells to build a prototype from"
            raise ValueError(msg)
        centres = (
            _kmeans(cells, per_type, generator)
            if len(cells) >= 2 * per_type > 2
            else cells.mean(0, keepdim=True)
        )
        prototypes.append(centres)
        owners.append(torch.full((len(centres),), code, dtype=torch.long))
    return torch.cat(prototypes), torch.cat(owners)


@dataclass(frozen=True)
class Calibration:
    """Per-type thresholds and how each was obtained."""

    thresholds: np.ndarray
    n_cells: np.ndarray
    pooled: np.ndarray

    def types_pooled(self, labels: list[str]) -> list[str]:
        """Labels whose threshold came from the pooled quantile."""
        return [label for label, flag in zip(labels, self.pooled, strict=True) if flag]


def halfway_to_nearest_type(prototypes: torch.Tensor, owners: torch.Tensor, n_types: int):
    """Per type: half the distance from its prototypes to the nearest prototype of another type.

    ``inf`` for a model of one type.
    """
    between = torch.cdist(prototypes, prototypes)
    other = owners[:, None] != owners[None, :]
    between = torch.where(other, between, torch.full_like(between, float("inf")))
    nearest = between.amin(dim=1)
    halfway = np.full(n_types, np.inf, dtype=np.float32)
    for code in range(n_types):
        halfway[code] = 0.5 * float(nearest[owners == code].min())
    return halfway


def calibrate_thresholds(
    distances: np.ndarray,
    type_codes: np.ndarray,
    n_types: int,
    *,
    quantile: float,
    floor: np.ndarray | None = None,
) -> Calibration:
    """The ``quantile`` of held-out cells' distances to their own type, per type.

    Types with fewer than :data:`MIN_CALIBRATION_CELLS` held-out cells use the largest of their
    own quantile, the pooled quantile of all types and their ``floor`` (if given), so a noisy
    estimate from three cells never sets a cut-off that rejects most of the type; types with
    none use the pooled one (or the floor).
    """
    if not 0 < quantile < 1:
        msg = (
            "calibration quantile must lie between 0 and 1 (0.95 to 0.99 is typical), not "
            f"{quantile}"
        )
        raise ValueError(msg)
    if len(distances) == 0:
        msg = "no held-out cells to calibrate thresholds on; keep some cells out of training"
        raise ValueError(msg)
    pooled_value = float(np.quantile(distances, quantile))
    thresholds = np.empty(n_types, dtype=np.float32)
    counts = np.bincount(type_codes, minlength=n_types)
    pooled = counts < MIN_CALIBRATION_CELLS
    for code in range(n_types):
        own = distances[type_codes == code]
        value = float(np.quantile(own, quantile)) if len(own) else pooled_value
        if pooled[code]:
            value = max(value, pooled_value)
            if floor is not None and np.isfinite(floor[code]):
                value = max(value, float(floor[code]))
        thresholds[code] = value
    return Calibration(np.maximum(thresholds, MIN_THRESHOLD), counts, pooled)
