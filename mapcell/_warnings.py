"""Warning classes for mapcell's own conditions, so users can filter them by name."""

from __future__ import annotations


class MapCellWarning(UserWarning):
    """Base class of every warning mapcell emits."""


class GeneOverlapWarning(MapCellWarning):
    """Fewer of the model's genes were found in the data than :data:`MIN_GENE_OVERLAP`."""


class CalibrationWarning(MapCellWarning):
    """A cell type had too few held-out cells to calibrate its own threshold."""


def warn(message: str, category: type[Warning] = MapCellWarning) -> None:
    """Warn, pointing at the first frame outside mapcell (the caller's line)."""
    import sys
    import warnings
    from pathlib import Path

    package_dir = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(package_dir):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
