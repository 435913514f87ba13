"""What every mapcell plot shares: one colour per type, Unknown in grey, and how a figure ends."""

from __future__ import annotations

import os
from collections.abc import Iterable

import anndata as ad
import matplotlib.pyplot as plt
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mapcell._constants import NOVELTY_CUTOFF, UNKNOWN

#: Unknown cells are drawn in this grey, so known types keep the palette's colours.
UNKNOWN_COLOR = "#b0b0b0"
#: The outline of Unknown cells, which lifts them off any background.
UNKNOWN_EDGE = "#303030"
#: Readable names of the fields annotate writes, for titles and axis labels.
FIELD_NAMES = {
    "label": "mapcell label",
    "nearest": "nearest known type",
    "distance": "distance to the nearest type",
    "novelty": "novelty score",
    "confidence": "confidence",
}


def type_palette(labels: Iterable[str]) -> dict[str, str]:
    """One colour per type, in the order given, with Unknown in :data:`UNKNOWN_COLOR`.

    Pass the model's labels first, so that a type keeps its colour in every figure.
    """
    labels = [label for label in dict.fromkeys(labels) if label != UNKNOWN]
    base = sc.pl.palettes.default_20 if len(labels) <= 20 else sc.pl.palettes.default_102
    palette = {label: base[i % len(base)] for i, label in enumerate(labels)}
    palette[UNKNOWN] = UNKNOWN_COLOR
    return palette


def model_labels(adata: ad.AnnData, key_added: str) -> list[str]:
    """The labels of the model that annotated ``adata``, as ``uns[key_added]`` records them."""
    record = adata.uns.get(key_added, {})
    return [str(label) for label in record.get("model", {}).get("labels", [])]


def novelty_cutoff(adata: ad.AnnData, key_added: str) -> float:
    """The cutoff the annotation used (1.0 when it was not recorded)."""
    params = adata.uns.get(key_added, {}).get("params", {})
    return float(params.get("novelty_cutoff", NOVELTY_CUTOFF))


def obs_column(adata: ad.AnnData, name: str, key_added: str, parameter: str) -> str:
    """``f"{key_added}_{name}"`` when annotate wrote it, else ``name`` as an ``obs`` column."""
    column = f"{key_added}_{name}"
    if column in adata.obs:
        return column
    if name in adata.obs:
        return name
    fields = ", ".join(repr(field) for field in FIELD_NAMES)
    msg = (
        f"{parameter}={name!r} is neither a field of the annotation ({fields}, read from "
        f"adata.obs['{key_added}_...']) nor a column of adata.obs; run "
        f"mc.tl.annotate(adata, model, key_added={key_added!r}) first, or pick one of "
        f"{list(adata.obs.columns)}"
    )
    raise KeyError(msg)


def readable(column: str, key_added: str) -> str:
    """``"mapcell_novelty"`` -> ``"novelty score"``; other columns keep their name."""
    prefix = f"{key_added}_"
    if column.startswith(prefix) and column[len(prefix) :] in FIELD_NAMES:
        return FIELD_NAMES[column[len(prefix) :]]
    return column


def resolve_model(model):
    """A trained :class:`~mapcell.MapCell`, from itself or the path of its bundle."""
    from mapcell.model import MapCell
    from mapcell.tl._annotate import _resolve_model

    if not isinstance(model, MapCell | str | os.PathLike):
        msg = (
            "model plots take a trained mc.MapCell (or the path of its bundle) first, not "
            f"{type(model).__name__}; for an AnnData use mc.pl.embedding, novelty or confusion"
        )
        raise TypeError(msg)
    return _resolve_model(model)


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``figsize`` inches whose layout fits legends."""
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=figsize, layout="constrained")
    return figure, ax


def finish(figure: Figure, ax: Axes, show: bool | None, return_fig: bool):
    """End a plot as scanpy does: the figure with ``return_fig``, else show it or return ``ax``.

    ``show=None`` follows scanpy's ``sc.settings.autoshow``.
    """
    if return_fig:
        return figure
    if show is None:
        show = sc.settings.autoshow
    if show:
        plt.show()
        return None
    return ax
