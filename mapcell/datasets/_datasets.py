from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc

SHARED_DATA_ENV = "MAPCELL_SHARED_DATA"


def pbmc68k_reduced() -> ad.AnnData:
    """Scanpy's ``pbmc68k_reduced`` (700 cells, shipped with scanpy) with log1p values in ``X``.

    scanpy keeps the scaled matrix in ``X`` and the log-normalised one in ``.raw``; mapcell
    needs the latter, so it becomes ``X`` here (765 genes, labels in ``obs['bulk_labels']``).
    """
    source = sc.datasets.pbmc68k_reduced()
    return ad.AnnData(
        X=source.raw.X.copy(),
        obs=source.obs.copy(),
        var=source.raw.var.copy(),
        obsm={"X_umap": source.obsm["X_umap"].copy()},
    )


def demo_split(
    adata: ad.AnnData,
    labels_key: str,
    held_out: str,
    *,
    query_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[ad.AnnData, ad.AnnData]:
    """Split cells into a reference and a query, stratified by type; ``held_out`` is query-only.

    The held-out type plays a novel type: the reference never sees it.
    """
    labels = adata.obs[labels_key].astype(str).to_numpy()
    if held_out not in set(labels):
        msg = f"held_out={held_out!r} is not a label in adata.obs[{labels_key!r}]"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    in_query = np.zeros(adata.n_obs, dtype=bool)
    for label in np.unique(labels):
        cells = rng.permutation(np.flatnonzero(labels == label))
        n_query = len(cells) if label == held_out else round(query_fraction * len(cells))
        in_query[cells[:n_query]] = True
    return adata[~in_query].copy(), adata[in_query].copy()


def shared_data_dir() -> Path | None:
    """The folder of the shared benchmark datasets, or None when it is not there.

    ``MAPCELL_SHARED_DATA`` names it; otherwise ``../shared/data`` beside the source tree or
    beside the working directory.
    """
    if SHARED_DATA_ENV in os.environ:
        candidates = [Path(os.environ[SHARED_DATA_ENV])]
    else:
        candidates = [
            Path(__file__).resolve().parents[3] / "shared" / "data",
            Path.cwd().parent / "shared" / "data",
        ]
    return next((path for path in candidates if path.is_dir()), None)
