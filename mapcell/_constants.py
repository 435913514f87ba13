"""Names and numbers that mean something, defined once for the whole package."""

from __future__ import annotations

#: Label given to query cells that are farther from every known type than its threshold.
UNKNOWN = "Unknown"

#: Default prefix of every field that :func:`mapcell.tl.annotate` writes.
DEFAULT_KEY_ADDED = "mapcell"

#: Below this fraction of model genes found in a query, mapcell warns.
MIN_GENE_OVERLAP = 0.8

#: Counts are normalised to this many per cell before ``log1p`` (CP10k, as scanpy and Seurat do).
TARGET_SUM = 1e4

#: Non-integer data whose largest value is above this cannot be log-transformed expression.
LOG_VALUE_CEILING = 50.0

#: If ``expm1`` of log data sums to the same total in every cell (relative spread below this),
#: the data are log1p of size-normalised counts over all genes and can be rescaled exactly.
CONSTANT_TOTAL_TOLERANCE = 0.01

#: Rows read to decide what kind of values a matrix holds.
VALUE_SAMPLE_ROWS = 2000

#: A type's threshold is this quantile of its held-out cells' distances to it.
CALIBRATION_QUANTILE = 0.99

#: A novelty score above this calls a cell "Unknown" (distance equal to the type's threshold).
NOVELTY_CUTOFF = 1.0

#: A cell's novelty is the median of its per-cell score over itself and this many - 1 nearest
#: query cells (0 or 1: each cell alone). See mapcell.search._neighbours for why.
NOVELTY_NEIGHBORS = 30

#: Types with fewer held-out cells than this borrow the pooled threshold when it is larger.
MIN_CALIBRATION_CELLS = 10

#: Upper bound on floats in one distance block (query chunk x references): 2**26 floats = 256 MiB.
MAX_DISTANCE_BLOCK = 2**26

#: Version of the bundle format written by :meth:`mapcell.MapCell.save`.
BUNDLE_SCHEMA_VERSION = 1
BUNDLE_WEIGHTS_FILE = "model.safetensors"
BUNDLE_CONFIG_FILE = "mapcell.json"
BUNDLE_CARD_FILE = "README.md"

#: Suffixes of the fields written by :func:`mapcell.tl.annotate` under ``key_added``.
OBS_FIELDS = ("label", "nearest", "distance", "novelty", "cell_novelty", "confidence")
