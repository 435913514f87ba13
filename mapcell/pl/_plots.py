from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from matplotlib.axes import Axes

from mapcell._constants import DEFAULT_KEY_ADDED, UNKNOWN
from mapcell.model import MapCell
from mapcell.pl._utils import (
    UNKNOWN_COLOR,
    UNKNOWN_EDGE,
    finish,
    model_labels,
    new_axes,
    novelty_cutoff,
    obs_column,
    readable,
    resolve_model,
    type_palette,
)

#: Reference cells are drawn this transparent behind the query on the reference map.
REFERENCE_ALPHA = 0.35


def embedding(
    adata: ad.AnnData,
    basis: str = "umap",
    color: str = "label",
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """Draw cells on ``obsm[f"X_{basis}"]``, coloured by a mapcell field; Unknown stands out.

    Unknown cells are grey with a dark outline and drawn last, on top of the known types, so
    that none hides under a dense cluster. Types keep the colours of the model's label order in
    every figure. The novelty score is coloured blue below and red above the annotation's
    cutoff. ``adata`` is not changed (scanpy would store colours in ``adata.uns``).

    Parameters
    ----------
    adata
        Annotated by :func:`mapcell.tl.annotate`.
    basis
        The embedding to draw: ``"umap"`` for ``obsm["X_umap"]`` (scanpy's UMAP, for example of
        ``sc.pp.neighbors(adata, use_rep="X_mapcell")``), or ``"mapcell_umap"`` for the position
        on the reference map written by :func:`mapcell.tl.map_to_reference`.
    color
        A field written by annotate (``"label"``, ``"nearest"``, ``"distance"``, ``"novelty"``,
        ``"confidence"``) or any ``obs`` column.
    key_added
        The ``key_added`` of the annotation.
    ax
        Draw into these axes instead of a new figure.
    show
        Show the figure (default: scanpy's ``sc.settings.autoshow``).
    return_fig
        Return the figure instead of showing it.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``size``, ``legend_loc``, ``title``, ...).

    Returns
    -------
    The figure with ``return_fig=True``; otherwise ``None`` when shown, else the axes.
    """
    column = obs_column(adata, color, key_added, "color")
    if f"X_{basis}" not in adata.obsm:
        msg = (
            f"adata.obsm has no 'X_{basis}'; compute it (sc.tl.umap, or "
            f"mc.tl.map_to_reference for basis='{key_added}_umap') or choose basis= among "
            f"{[key.removeprefix('X_') for key in adata.obsm]}"
        )
        raise KeyError(msg)
    values = adata.obs[column]
    categorical = isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object
    longest = max((len(str(c)) for c in pd.unique(values)), default=0) if categorical else 0
    figure, ax = new_axes(ax, (5.0 + 0.075 * longest, 4.2))
    if categorical:
        _draw_categories(adata, basis, column, key_added, ax, kwargs)
    else:
        _draw_values(adata, basis, column, key_added, ax, kwargs)
    return finish(figure, ax, show, return_fig)


def _light(obs: pd.DataFrame, basis: str, coordinates: np.ndarray) -> ad.AnnData:
    # What scanpy needs to draw, and no more: plotting then cannot write into the user's AnnData.
    return ad.AnnData(obs=obs, obsm={f"X_{basis}": np.asarray(coordinates)})


def _draw_categories(adata, basis, column, key_added, ax, kwargs) -> None:
    values = adata.obs[column].astype("category")
    categories = [str(c) for c in values.cat.categories]
    palette = kwargs.pop("palette", None)
    if palette is None:
        given = adata.uns.get(f"{column}_colors")
        if given is not None and len(given) == len(categories):
            palette = dict(zip(categories, given, strict=True))
        else:
            full = type_palette([*model_labels(adata, key_added), *categories])
            palette = {c: full[c] for c in categories}
    # Unknown last: scanpy draws categories in the order of the cells, so it lands on top.
    names = values.astype(str).to_numpy()
    order = np.argsort(names == UNKNOWN, kind="stable")
    light = _light(
        pd.DataFrame(
            {column: pd.Categorical(names[order], categories=categories)},
            index=adata.obs_names[order],
        ),
        basis,
        np.asarray(adata.obsm[f"X_{basis}"])[order],
    )
    kwargs.setdefault("title", readable(column, key_added))
    sc.pl.embedding(light, basis, color=column, palette=palette, ax=ax, show=False, **kwargs)

    unknown = names == UNKNOWN
    if unknown.any():
        xy = np.asarray(adata.obsm[f"X_{basis}"])[unknown][:, :2]
        size = kwargs.get("size") or 120000 / adata.n_obs  # scanpy's documented default
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=size,
            marker=".",  # scanpy's marker, so the outlined points have the size of the others
            c=UNKNOWN_COLOR,
            edgecolors=UNKNOWN_EDGE,
            linewidths=0.5,
            zorder=3,
            label="_unknown cells",  # kept out of the legend, which scanpy has drawn
        )


def _draw_values(adata, basis, column, key_added, ax, kwargs) -> None:
    if column == f"{key_added}_novelty" and not {"cmap", "color_map", "norm"} & set(kwargs):
        cutoff = novelty_cutoff(adata, key_added)
        kwargs.update(cmap="RdBu_r", vcenter=cutoff)
        kwargs.setdefault("vmin", 0)
        kwargs.setdefault("vmax", max(2 * cutoff, float(np.nanquantile(adata.obs[column], 0.99))))
        kwargs.setdefault("title", f"novelty score (above {cutoff:g}: Unknown)")
    kwargs.setdefault("title", readable(column, key_added))
    light = _light(adata.obs[[column]].copy(), basis, adata.obsm[f"X_{basis}"])
    sc.pl.embedding(light, basis, color=column, ax=ax, show=False, **kwargs)


def reference_map(
    adata: ad.AnnData,
    model: MapCell | str | os.PathLike,
    color: str = "label",
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    reference_size: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """Draw a query on the model's reference map: the reference light, by type; the query on top.

    The reference cells kept with the model (:func:`mapcell.tl.fit_reference_map`) form a pale
    background with each type's name at its centre; the query cells, placed by
    :func:`mapcell.tl.map_to_reference`, are drawn over it in full colour, Unknown in grey with
    a dark outline. A type keeps one colour in the background and in the query.

    Parameters
    ----------
    adata
        The query, placed with :func:`mapcell.tl.map_to_reference` (and usually annotated).
    model
        The model whose map ``adata`` was placed on, or the path of its bundle.
    color
        What colours the query, as in :func:`embedding`.
    key_added
        The ``key_added`` of the annotation and the placement.
    reference_size
        Point size of the reference cells. The query's is ``size`` (in ``kwargs``); by default
        ``120000 / n`` (scanpy's rule, ``n`` counting query and reference cells) for the query and
        half that for the reference.
    ax
        Draw into these axes instead of a new figure.
    show
        Show the figure (default: scanpy's ``sc.settings.autoshow``).
    return_fig
        Return the figure instead of showing it.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` for the query (``size``, ``title``, ...).

    Returns
    -------
    The figure with ``return_fig=True``; otherwise ``None`` when shown, else the axes.
    """
    model = resolve_model(model)
    reference = getattr(model, "reference_map", None)
    if reference is None:
        msg = "this model has no reference map; fit one with mc.tl.fit_reference_map(model, ref)"
        raise ValueError(msg)
    basis = f"{key_added}_umap"
    if f"X_{basis}" not in adata.obsm:
        msg = (
            f"adata.obsm has no 'X_{basis}'; place the cells first with "
            f"mc.tl.map_to_reference(adata, model, key_added={key_added!r})"
        )
        raise KeyError(msg)
    column = obs_column(adata, color, key_added, "color")

    query_types = []
    if not pd.api.types.is_numeric_dtype(adata.obs[column]):
        query_types = [str(c) for c in adata.obs[column].astype("category").cat.categories]
    longest = max(len(label) for label in [*reference.labels, *query_types])
    figure, ax = new_axes(ax, (5.5 + 0.075 * longest, 5))
    n_cells = adata.n_obs + reference.n_cells
    palette = type_palette([*model.labels, *reference.labels, *query_types])
    types = pd.Categorical.from_codes(reference.types.numpy(), categories=reference.labels)
    background = _light(
        pd.DataFrame({"reference type": types}, index=[str(i) for i in range(len(types))]),
        "map",
        reference.coordinates.numpy(),
    )
    sc.pl.embedding(
        background,
        "map",
        color="reference type",
        palette={label: palette[label] for label in reference.labels},
        alpha=REFERENCE_ALPHA,
        size=reference_size or 60000 / n_cells,
        legend_loc="on data",
        legend_fontweight="normal",
        legend_fontsize=8,
        legend_fontoutline=2,
        ax=ax,
        show=False,
    )
    if query_types:
        kwargs.setdefault("palette", {label: palette[label] for label in query_types})
    kwargs.setdefault("size", 120000 / n_cells)
    kwargs.setdefault(
        "title",
        f"{readable(column, key_added)} on the reference map\n(pale: reference cells, by type)",
    )
    embedding(adata, basis, color, key_added=key_added, ax=ax, show=False, **kwargs)
    ax.set_xlabel("reference map 1")
    ax.set_ylabel("reference map 2")
    return finish(figure, ax, show, return_fig)
