"""The ``mapcell`` command line: ``train``, ``annotate`` and ``demo``."""

from mapcell.cli._main import main

__all__ = ["main"]
