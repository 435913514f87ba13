"""mapcell: annotate single-cell RNA-seq data by learned similarity, and say "Unknown" honestly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mapcell")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from mapcell import datasets, hub, pl, pp, tl
from mapcell._settings import settings
from mapcell.model import MapCell

__all__ = ["MapCell", "__version__", "datasets", "hub", "pl", "pp", "settings", "tl"]
