"""Search: prototypes, calibrated thresholds and the chunked nearest-type engine."""

from mapcell.search._engine import SearchResult, knn_vote, nearest_prototype
from mapcell.search._prototypes import Calibration, calibrate_thresholds, compute_prototypes

__all__ = [
    "Calibration",
    "SearchResult",
    "calibrate_thresholds",
    "compute_prototypes",
    "knn_vote",
    "nearest_prototype",
]
