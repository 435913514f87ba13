from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from mapcell._constants import DEFAULT_KEY_ADDED, UNKNOWN
from mapcell.pl._utils import (
    UNKNOWN_COLOR,
    UNKNOWN_EDGE,
    finish,
    model_labels,
    new_axes,
    novelty_cutoff,
    obs_column,
    readable,
    type_palette,
)

#: Seed of the sideways jitter of the points in :func:`novelty`, so a figure redraws the same.
_JITTER_SEED = 0
#: :func:`novelty` draws at most this many points per group (violins and shares use all cells).
MAX_POINTS = 2000


def _ordered_groups(values: pd.Series, known: list[str]) -> list[str]:
    # The model's types first, in its order; then the other groups present; Unknown last.
    present = [str(v) for v in pd.unique(values.astype(str))]
    first = [label for label in known if label in present]
    rest = sorted(g for g in present if g not in first and g != UNKNOWN)
    return first + rest + ([UNKNOWN] if UNKNOWN in present else [])


def novelty(
    adata: ad.AnnData,
    groupby: str = "nearest",
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    cutoff: float | None = None,
    log: bool = False,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """The novelty scores of each group of cells, with the cutoff above which cells are Unknown.

    One violin and one point per cell for each group (at most 2000 points, a random subset, in
    a large group); points above the cutoff (a dashed line) are grey and outlined, as Unknown
    cells are everywhere. The share of each group above the
    cutoff is written over it. Pass another ``cutoff`` to see where it would cut, then annotate
    again with ``novelty_cutoff=`` set to it.

    Parameters
    ----------
    adata
        Annotated by :func:`mapcell.tl.annotate`.
    groupby
        ``"nearest"`` (the nearest known type, also of Unknown cells), ``"label"``, or any
        categorical ``obs`` column, such as the true types when they are known.
    key_added
        The ``key_added`` of the annotation.
    cutoff
        Where to draw the cutoff; by default the ``novelty_cutoff`` the annotation used.
    log
        Draw the scores on a log scale (for a few very distant cells).
    ax
        Draw into these axes instead of a new figure.
    show
        Show the figure (default: scanpy's ``sc.settings.autoshow``).
    return_fig
        Return the figure instead of showing it.

    Returns
    -------
    The figure with ``return_fig=True``; otherwise ``None`` when shown, else the axes.
    """
    score_column = obs_column(adata, "novelty", key_added, "the novelty field")
    group_column = obs_column(adata, groupby, key_added, "groupby")
    cutoff = novelty_cutoff(adata, key_added) if cutoff is None else float(cutoff)
    if not cutoff > 0:
        msg = f"cutoff must be a positive novelty score (1.0 is the threshold), not {cutoff}"
        raise ValueError(msg)

    scores = adata.obs[score_column].to_numpy(dtype=float)
    groups = adata.obs[group_column].astype(str).to_numpy()
    known = model_labels(adata, key_added)
    order = _ordered_groups(adata.obs[group_column], known)
    palette = type_palette([*known, *order])
    longest = max((len(group) for group in order), default=1)
    figure, ax = new_axes(ax, (max(4.0, 0.55 * len(order) + 2.5), 3.2 + 0.06 * longest))

    rng = np.random.default_rng(_JITTER_SEED)
    for position, group in enumerate(order):
        values = scores[groups == group]
        colour = palette[group]
        if len(values) > 1 and np.ptp(values) > 0:
            body = ax.violinplot(values, positions=[position], widths=0.8, showextrema=False)
            for patch in body["bodies"]:
                patch.set(facecolor=colour, edgecolor="none", alpha=0.3)
        above = values > cutoff
        drawn = np.sort(rng.permutation(len(values))[:MAX_POINTS])
        x = position + rng.uniform(-0.22, 0.22, len(drawn))
        y, high = values[drawn], above[drawn]
        ax.scatter(x[~high], y[~high], s=4, color=colour, linewidths=0, zorder=2)
        ax.scatter(
            x[high],
            y[high],
            s=6,
            color=UNKNOWN_COLOR,
            edgecolors=UNKNOWN_EDGE,
            linewidths=0.3,
            zorder=2,
        )
        ax.text(
            position,
            1.01,
            f"{above.mean():.0%}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )

    ax.axhline(cutoff, color="black", linestyle="--", linewidth=1, zorder=3)
    top = np.nanmax(scores, initial=cutoff) * 1.08
    ax.axhspan(cutoff, top, color="#f2f2f2", zorder=0)
    for text, where in ((" Unknown", "bottom"), (f" cutoff {cutoff:g}", "top")):
        ax.text(
            1.0,
            cutoff,
            text,
            transform=ax.get_yaxis_transform(),
            ha="left",
            va=where,
            fontsize=8,
        )
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, top)
    ax.set_xticks(range(len(order)), order, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_xlabel(readable(group_column, key_added))
    ax.set_ylabel("novelty score\n(distance / the type's threshold)")
    ax.set_title("novelty scores; on top, the share above the cutoff", fontsize=10, pad=16)
    return finish(figure, ax, show, return_fig)


def confusion(
    adata: ad.AnnData,
    true_key: str,
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    values: Literal["fraction", "count"] = "fraction",
    cmap: str = "Blues",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Predicted against true labels, with Unknown as a column of its own.

    Rows are the true types (the model's types first, in its order; types it never saw after
    them), columns the model's labels and then Unknown, set apart by a line. Cells of a novel
    type belong in the Unknown column; cells of a known type on the diagonal.

    Parameters
    ----------
    adata
        Annotated by :func:`mapcell.tl.annotate`, with the true types in ``obs[true_key]``.
    true_key
        ``obs`` column with the true types.
    key_added
        The ``key_added`` of the annotation.
    values
        ``"fraction"``: each row's share of its cells (rows sum to 1); ``"count"``: cells.
    cmap
        A matplotlib colormap name.
    ax
        Draw into these axes instead of a new figure.
    show
        Show the figure (default: scanpy's ``sc.settings.autoshow``).
    return_fig
        Return the figure instead of showing it.

    Returns
    -------
    The figure with ``return_fig=True``; otherwise ``None`` when shown, else the axes.
    """
    label_column = obs_column(adata, "label", key_added, "the label field")
    if true_key not in adata.obs:
        msg = (
            f"true_key {true_key!r} is not a column of adata.obs; the columns are "
            f"{list(adata.obs.columns)}"
        )
        raise KeyError(msg)
    if values not in ("fraction", "count"):
        msg = f"values must be 'fraction' or 'count', not {values!r}"
        raise ValueError(msg)

    truth = adata.obs[true_key].astype(str)
    predicted = adata.obs[label_column].astype(str)
    known = model_labels(adata, key_added) or [
        c for c in _ordered_groups(predicted, []) if c != UNKNOWN
    ]
    columns = [*known, *sorted(set(predicted) - {*known, UNKNOWN}), UNKNOWN]
    rows = _ordered_groups(truth, known)
    table = pd.crosstab(truth, predicted).reindex(index=rows, columns=columns, fill_value=0)
    matrix = table.to_numpy(dtype=float)
    if values == "fraction":
        matrix = matrix / matrix.sum(axis=1, keepdims=True)

    figure, ax = new_axes(ax, (0.5 * len(columns) + 3.0, 0.4 * len(rows) + 2.2))
    vmax = 1.0 if values == "fraction" else max(matrix.max(), 1.0)
    image = ax.imshow(matrix, cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        text = f"{value:.2f}" if values == "fraction" else f"{int(value)}"
        if value > 0 and text != "0.00":  # a share too small to print is left blank
            colour = "white" if value > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.axvline(len(columns) - 1.5, color="black", linewidth=1)
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(readable(label_column, key_added))
    ax.set_ylabel(f"true type ({true_key})")
    figure.colorbar(
        image,
        ax=ax,
        label="share of the true type's cells" if values == "fraction" else "cells",
        shrink=0.8,
    )
    return finish(figure, ax, show, return_fig)
