"""Plots, scanpy-style: the AnnData (or the model) first, then ``ax``, ``show`` and ``return_fig``.

Unknown cells are grey with a dark outline in every figure, and a type keeps its colour across
figures (the order of the model's labels decides it).
"""

from mapcell.pl._annotation import confusion, novelty
from mapcell.pl._model import history, prototypes
from mapcell.pl._plots import embedding, reference_map
from mapcell.pl._utils import UNKNOWN_COLOR, UNKNOWN_EDGE, type_palette

__all__ = [
    "UNKNOWN_COLOR",
    "UNKNOWN_EDGE",
    "confusion",
    "embedding",
    "history",
    "novelty",
    "prototypes",
    "reference_map",
    "type_palette",
]
