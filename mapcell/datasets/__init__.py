"""Example data that need no download, and the path of the shared benchmark data."""

from mapcell.datasets._datasets import demo_split, pbmc68k_reduced, shared_data_dir

__all__ = ["demo_split", "pbmc68k_reduced", "shared_data_dir"]
