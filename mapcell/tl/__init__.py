"""Tools: train a reference, annotate a query, embed, evaluate."""

from mapcell.tl._annotate import annotate, embed
from mapcell.tl._evaluate import evaluate
from mapcell.tl._train import train

__all__ = ["annotate", "embed", "evaluate", "train"]
