"""Tools: train a reference, annotate a query, embed, evaluate, and draw the reference map."""

from mapcell.tl._annotate import annotate, embed
from mapcell.tl._evaluate import evaluate
from mapcell.tl._reference_map import fit_reference_map, map_to_reference
from mapcell.tl._train import train

__all__ = ["annotate", "embed", "evaluate", "fit_reference_map", "map_to_reference", "train"]
