"""The ``mapcell`` command line: ``train``, ``annotate``, ``demo`` and ``models``."""

from mapcell.cli._main import main

__all__ = ["main"]
