"""The model layer: :class:`MapCell`, an scvi-tools model."""

from mapcell.model._mapcell import MODES, MapCell, ReferenceState

__all__ = ["MODES", "MapCell", "ReferenceState"]
