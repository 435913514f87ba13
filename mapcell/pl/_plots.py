from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import scanpy as sc

from mapcell._constants import DEFAULT_KEY_ADDED, UNKNOWN

#: Unknown cells are drawn in this grey, so known types keep the palette's colours.
UNKNOWN_COLOR = "#b0b0b0"


def embedding(
    adata: ad.AnnData,
    basis: str = "umap",
    color: str = "label",
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    ax: plt.Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """Draw cells on ``obsm[f"X_{basis}"]`` coloured by a mapcell field, Unknown in grey.

    Parameters
    ----------
    adata
        Annotated by :func:`mapcell.tl.annotate`.
    basis
        The embedding to draw (``"umap"`` for ``obsm["X_umap"]``).
    color
        A field written by annotate (``"label"``, ``"nearest"``, ``"novelty"``,
        ``"confidence"``) or any ``obs`` column.
    key_added
        The ``key_added`` of the annotation.
    ax, show, return_fig
        As in scanpy: draw into ``ax``; show the figure; return it instead.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.
    """
    column = f"{key_added}_{color}" if f"{key_added}_{color}" in adata.obs else color
    if column not in adata.obs:
        msg = f"{column!r} is not in adata.obs; run mc.tl.annotate first or pick an obs column"
        raise KeyError(msg)
    if f"X_{basis}" not in adata.obsm:
        msg = (
            f"adata.obsm has no 'X_{basis}'; compute it (sc.tl.umap) or choose basis= "
            f"among {list(adata.obsm)}"
        )
        raise KeyError(msg)
    palette = kwargs.pop("palette", None)
    if adata.obs[column].dtype == "category" and UNKNOWN in adata.obs[column].cat.categories:
        categories = list(adata.obs[column].cat.categories)
        base = sc.pl.palettes.default_20
        palette = palette or {
            c: (UNKNOWN_COLOR if c == UNKNOWN else base[i % len(base)])
            for i, c in enumerate(categories)
        }
    figure = sc.pl.embedding(
        adata,
        basis=basis,
        color=column,
        palette=palette,
        ax=ax,
        show=False,
        return_fig=return_fig,
        **kwargs,
    )
    if return_fig:
        return figure
    if show:
        plt.show()
    return None if show is not False else figure
