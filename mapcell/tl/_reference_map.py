from __future__ import annotations

import os
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import torch

from mapcell._constants import DEFAULT_KEY_ADDED, MAX_DISTANCE_BLOCK
from mapcell._logging import log_added, timed
from mapcell._settings import settings
from mapcell.hub._reference_map import ReferenceMap
from mapcell.model import MapCell
from mapcell.tl._annotate import _resolve_model

#: Most reference cells kept on a map; 5000 cells of 32 dimensions take about 0.7 MB.
MAX_MAP_CELLS = 5000
#: Reference cells whose map positions a query cell's position is averaged from.
MAP_NEIGHBOURS = 15
#: UMAP's optimisation epochs: 200 gives a settled layout of a few thousand cells in seconds.
UMAP_EPOCHS = 200
#: Distances below this count as this, so a cell that sits on a reference cell lands on it.
MIN_PLACEMENT_DISTANCE = 1e-6


def fit_reference_map(
    model: MapCell,
    adata: ad.AnnData | None = None,
    *,
    labels_key: str | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    gene_key: str | None = None,
    max_cells: int = MAX_MAP_CELLS,
    k: int = MAP_NEIGHBOURS,
    n_neighbors: int = 15,
    min_dist: float = 0.3,
    seed: int | None = None,
) -> None:
    """Draw the reference as a 2-D map (a UMAP of its mapcell embedding), kept with the model.

    The map is fitted once, with umap-learn, on at most ``max_cells`` reference cells, spread as
    evenly over the types as their numbers allow. It travels in the model's bundle
    (:meth:`~mapcell.MapCell.save`), so queries annotated anywhere later land on the same
    picture: :func:`map_to_reference` places them without refitting.

    Parameters
    ----------
    model
        A trained model; the map is stored as ``model.reference_map``, replacing any other.
    adata
        The reference (or any labelled cells to draw the map from). ``None`` uses the cells the
        model trained on, which it keeps for kNN mode; with ``n_shots`` those are few.
    labels_key
        ``obs`` column with the cell types; by default the one the model was trained with.
    layer, use_raw, gene_key
        Where the values and gene identifiers of ``adata`` are, as in
        :func:`mapcell.tl.annotate`.
    max_cells
        Most cells on the map. It has to stay small enough to ship in the bundle: 5000 cells of
        a 32-dimensional embedding take about 0.7 MB.
    k
        Default number of map cells a query cell's position is averaged from.
    n_neighbors, min_dist
        UMAP's neighbourhood size and how tightly it packs points (as in :func:`scanpy.tl.umap`).
    seed
        Seeds the choice of cells and UMAP (default ``mc.settings.seed``).

    Returns
    -------
    ``None``. Sets ``model.reference_map``, a :class:`~mapcell.hub.ReferenceMap` with the
    cells' embedding (float32, cells x ``n_latent``), map coordinates (float32, cells x 2),
    type codes and labels. ``adata`` is not changed; place its cells with
    :func:`map_to_reference`.
    """
    model._check_trained()
    if max_cells < 2 * n_neighbors:
        msg = f"max_cells must be at least 2 * n_neighbors ({2 * n_neighbors}), not {max_cells}"
        raise ValueError(msg)
    _check_k(k)
    seed = settings.seed if seed is None else seed
    embedding, labels = _map_cells(model, adata, labels_key, layer, use_raw, gene_key)
    if len(embedding) <= n_neighbors:
        msg = (
            f"a reference map needs more than n_neighbors={n_neighbors} cells, but there are "
            f"{len(embedding)}; pass the reference AnnData (adata=) or lower n_neighbors"
        )
        raise ValueError(msg)

    with timed(f"fitting a reference map of {min(len(embedding), max_cells)} cells"):
        codes = pd.Categorical(labels)
        chosen = even_subsample(codes.codes, max_cells, seed)
        cells = torch.as_tensor(embedding[chosen], dtype=torch.float32)
        coordinates = _umap(cells, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed)
        model.reference_map = ReferenceMap(
            embedding=cells,
            coordinates=torch.as_tensor(coordinates, dtype=torch.float32),
            types=torch.as_tensor(codes.codes[chosen], dtype=torch.int64),
            labels=[str(label) for label in codes.categories],
            k=k,
            params={
                "n_neighbors": n_neighbors,
                "min_dist": min_dist,
                "n_epochs": UMAP_EPOCHS,
                "seed": seed,
                "n_cells_available": len(embedding),
            },
        )
    log_added(["'reference_map', (model)"])


def map_to_reference(
    adata: ad.AnnData,
    model: MapCell | str | os.PathLike,
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    use_rep: str | None = None,
    k: int | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    gene_key: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Place cells on the model's reference map, without refitting it.

    A cell's position is the distance-weighted mean of the map positions of its ``k`` nearest
    map cells in the mapcell embedding (weights ``1 / distance``); a cell that coincides with a
    map cell lands on it. Distances are computed in chunks on ``mc.settings.device``. UMAP's own
    ``transform`` is not used: it needs the pickled UMAP object, which a bundle never holds.

    A cell of a type the reference lacks lands beside the reference cells it is nearest to: the
    map shows *where* the model puts a cell, its label (or novelty) shows whether it belongs.

    Parameters
    ----------
    adata
        The cells to place (a query, or the reference itself).
    model
        A model with a reference map (:func:`fit_reference_map`), or the path of its bundle.
    key_added
        Prefix of the field written.
    use_rep
        An ``obsm`` key holding the cells' embedding by this model (such as ``"X_mapcell"``,
        written by :func:`mapcell.tl.annotate`). ``None`` embeds the cells here.
    k
        Map cells to average over (default: the map's, 15 unless set when it was fitted).
    layer, use_raw, gene_key
        Where the values and gene identifiers are, as in :func:`mapcell.tl.annotate`; used
        when ``use_rep`` is ``None``.
    copy
        Return a copy with the field instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Sets, with ``key_added="mapcell"``:

    ``adata.obsm["X_mapcell_umap"]`` : float32 array (cells x 2)
        The position on the reference map; draw it with
        ``mc.pl.embedding(adata, basis="mapcell_umap")`` or :func:`mapcell.pl.reference_map`.
    ``adata.uns["mapcell_umap"]`` : dict
        ``params``: ``k`` and ``n_reference_cells``.
    """
    model = _resolve_model(model)
    reference_map = getattr(model, "reference_map", None)
    if reference_map is None:
        msg = (
            "this model has no reference map; fit one with mc.tl.fit_reference_map(model, "
            "reference) (and save the model again to keep it in the bundle)"
        )
        raise ValueError(msg)
    k = reference_map.k if k is None else k
    _check_k(k)
    embedding = _query_embedding(adata, model, use_rep, layer, use_raw, gene_key)

    positions = place_on_map(torch.as_tensor(embedding, dtype=torch.float32), reference_map, k)
    target = adata.copy() if copy else adata
    target.obsm[f"X_{key_added}_umap"] = positions
    target.uns[f"{key_added}_umap"] = {
        "params": {"k": int(k), "n_reference_cells": reference_map.n_cells}
    }
    log_added([f"'X_{key_added}_umap', (adata.obsm)", f"'{key_added}_umap', (adata.uns)"])
    return target if copy else None


def place_on_map(embedding: torch.Tensor, reference_map: ReferenceMap, k: int) -> np.ndarray:
    """Map positions (cells x 2, float32) of embedded cells, by their ``k`` nearest map cells."""
    device = settings.device
    cells = reference_map.embedding.to(device)
    coordinates = reference_map.coordinates.to(device)
    positions = np.empty((len(embedding), 2), dtype=np.float32)
    for rows, index, distance in _nearest(embedding, cells, min(k, len(cells)), device):
        weight = 1 / distance.clamp_min(MIN_PLACEMENT_DISTANCE)
        weighted = (weight[..., None] * coordinates[index]).sum(dim=1)
        positions[rows] = (weighted / weight.sum(dim=1, keepdim=True)).cpu().numpy()
    return positions


def _nearest(query: torch.Tensor, cells: torch.Tensor, k: int, device, *, skip_self=False):
    # Chunks of query rows against all cells, at most MAX_DISTANCE_BLOCK distances at a time.
    # cdist ranks the neighbours; their distances are then recomputed exactly, because cdist's
    # fast path puts a cell's distance to itself at about 1e-3 rather than 0.
    step = max(1, min(settings.batch_size, MAX_DISTANCE_BLOCK // max(len(cells), 1)))
    for start in range(0, len(query), step):
        rows = slice(start, start + step)
        block = query[rows].to(device)
        distance = torch.cdist(block, cells)
        if skip_self:  # the reference against itself: every cell is its own first neighbour
            own = torch.arange(start, start + len(block), device=device)
            distance[torch.arange(len(block), device=device), own] = -1.0
        index = distance.topk(k, dim=1, largest=False).indices
        exact = (block[:, None, :] - cells[index]).norm(dim=-1)
        yield rows, index, exact


def _umap(cells: torch.Tensor, *, n_neighbors: int, min_dist: float, seed: int | None):
    # The neighbour graph comes from torch, exact and chunked: umap-learn then only lays it out.
    graph = list(_nearest(cells, cells, n_neighbors, torch.device("cpu"), skip_self=True))
    index = torch.cat([part[1] for part in graph]).numpy()
    distance = torch.cat([part[2] for part in graph]).numpy()
    with warnings.catch_warnings():
        # umap-learn warns on import that TensorFlow (for ParametricUMAP) is absent, and that
        # a precomputed graph leaves it unable to `transform`; neither matters here.
        warnings.filterwarnings("ignore", category=ImportWarning)
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        import umap

        layout = umap.UMAP(
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            n_epochs=UMAP_EPOCHS,
            random_state=seed,
            n_jobs=1,  # what a seed needs; umap-learn warns otherwise
            precomputed_knn=(index, distance),
        )
        return layout.fit_transform(cells.numpy())


def _map_cells(model, adata, labels_key, layer, use_raw, gene_key):
    if adata is None:
        state = model.reference
        labels = np.asarray(state.labels, dtype=object)[state.reference_types.numpy()]
        return state.reference_embedding.numpy(), labels.astype(str)
    labels_key = labels_key or model.setup.get("labels_key")
    if labels_key is None or labels_key not in adata.obs:
        msg = (
            f"labels_key {labels_key!r} is not a column of adata.obs; pass the column with the "
            f"cell types (labels_key=), one of {list(adata.obs.columns)}"
        )
        raise KeyError(msg)
    labels = adata.obs[labels_key]
    if labels.isna().any():
        msg = (
            f"adata.obs[{labels_key!r}] has {int(labels.isna().sum())} cells without a label; "
            "drop them before fitting the map"
        )
        raise ValueError(msg)
    embedding, _, _ = model.embed_query(adata, layer=layer, use_raw=use_raw, gene_key=gene_key)
    return embedding, labels.astype(str).to_numpy()


def _query_embedding(adata, model, use_rep, layer, use_raw, gene_key) -> np.ndarray:
    if use_rep is None:
        return model.embed_query(adata, layer=layer, use_raw=use_raw, gene_key=gene_key)[0]
    if use_rep not in adata.obsm:
        msg = (
            f"use_rep={use_rep!r} is not in adata.obsm (keys: {list(adata.obsm)}); run "
            "mc.tl.annotate or mc.tl.embed with this model first, or pass use_rep=None"
        )
        raise KeyError(msg)
    embedding = np.asarray(adata.obsm[use_rep], dtype=np.float32)
    n_latent = model.reference_map.embedding.shape[1]
    if embedding.ndim != 2 or embedding.shape[1] != n_latent:
        msg = (
            f"adata.obsm[{use_rep!r}] has shape {embedding.shape}, but the model embeds in "
            f"{n_latent} dimensions; it was made by another model: pass use_rep=None"
        )
        raise ValueError(msg)
    return embedding


def _check_k(k: int) -> None:
    if int(k) != k or k < 1:
        msg = f"k must be a positive number of map cells (15 is typical), not {k!r}"
        raise ValueError(msg)


def even_subsample(codes: np.ndarray, max_cells: int, seed: int | None) -> np.ndarray:
    """Sorted indices of at most ``max_cells`` cells, spread as evenly over the types as can be.

    Every type keeps up to the same number of cells; a type smaller than that keeps all its
    cells, and what it leaves over goes to the larger types.
    """
    if len(codes) <= max_cells:
        return np.arange(len(codes))
    types, counts = np.unique(codes, return_counts=True)
    quota = np.zeros(len(types), dtype=int)
    left, open_types = max_cells, list(np.argsort(counts, kind="stable"))
    while open_types:
        share = left // len(open_types)
        smallest = open_types[0]
        if counts[smallest] <= share:  # a small type keeps all its cells
            quota[smallest] = counts[smallest]
            left -= counts[smallest]
            open_types.pop(0)
            continue
        extra = left - share * len(open_types)  # the remainder, one cell each to the largest
        for rank, index in enumerate(open_types):
            quota[index] = share + (rank >= len(open_types) - extra)
        break
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(codes == code), size=n, replace=False)
        for code, n in zip(types, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))
