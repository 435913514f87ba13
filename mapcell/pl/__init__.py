"""Plots, scanpy-style: AnnData first, ``ax``, ``show`` and ``return_fig``."""

from mapcell.pl._plots import embedding

__all__ = ["embedding"]
