from __future__ import annotations

import os

import anndata as ad
import numpy as np

from mapcell import __version__
from mapcell._constants import DEFAULT_KEY_ADDED, NOVELTY_CUTOFF, NOVELTY_NEIGHBORS, OBS_FIELDS
from mapcell._logging import log_added, timed
from mapcell.hub._bundle import package_versions
from mapcell.hub._resolve import load_model
from mapcell.model import MapCell
from mapcell.model._mapcell import DEFAULT_K, Mode


def _resolve_model(model: MapCell | str | os.PathLike) -> MapCell:
    # A path, an archive, a URL, a registry name ("pbmc@1.0") or "hf://owner/repo": one
    # resolver (mapcell.hub.resolve) turns each into a checked local bundle.
    if isinstance(model, MapCell):
        model._check_trained()
        return model
    if isinstance(model, str | os.PathLike):
        return load_model(model)
    msg = (
        "model must be a trained MapCell or the path, URL or registry name of a saved "
        f"bundle, not {type(model).__name__}"
    )
    raise TypeError(msg)


def _json_safe(record: dict) -> dict:
    # h5ad cannot store None: leave such entries out rather than invent a value.
    return {
        key: _json_safe(value) if isinstance(value, dict) else value
        for key, value in record.items()
        if value is not None
    }


def annotate(
    adata: ad.AnnData,
    model: MapCell | str | os.PathLike,
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    layer: str | None = None,
    use_raw: bool = False,
    gene_key: str | None = None,
    mode: Mode = "prototype",
    k: int = DEFAULT_K,
    novelty_cutoff: float = NOVELTY_CUTOFF,
    novelty_neighbors: int = NOVELTY_NEIGHBORS,
    copy: bool = False,
) -> ad.AnnData | None:
    """Label every cell of a query by its nearest cell type, or "Unknown" when it is far from all.

    Genes are matched to the model's by symbol or Ensembl ID (see
    :func:`mapcell.pp.match_genes`); raw counts and log1p-normalised values are both accepted.
    Everything is computed first and written at the end, so on an error ``adata`` is unchanged.

    Parameters
    ----------
    adata
        The query.
    model
        A trained :class:`~mapcell.MapCell`; the path of a bundle saved by it (a folder or
        a ``.tar.gz``); a registry name (``"pbmc"``, ``"pbmc@1.0"``, looked up at
        ``mc.settings.registry_url``); an ``https://`` URL of a bundle archive; or
        ``"hf://owner/repo@revision"``. Downloads are verified and cached, see
        :func:`mapcell.hub.resolve`.
    key_added
        Prefix of the fields written.
    layer
        Layer with the values, if not ``X``.
    use_raw
        Read the values and genes from ``adata.raw``.
    gene_key
        ``var`` column with gene identifiers to match; by default found by itself.
    mode
        ``"prototype"``: nearest type prototype; ``"knn"``: majority vote of the ``k`` nearest
        training cells of the reference, as the original MapCell did.
    k
        Neighbours in ``"knn"`` mode.
    novelty_cutoff
        Novelty score above which a cell is called "Unknown" (1.0: the calibrated threshold;
        raise it to call fewer cells novel, lower it to call more).
    novelty_neighbors
        Judge novelty by groups of similar query cells: a cell's novelty score is the median
        of the per-cell scores of itself and its ``novelty_neighbors - 1`` nearest query cells,
        found in the query's own principal components. A new type forms its own group and
        keeps its distance; stray known cells do not. ``0`` judges each cell alone, as
        ``mapcell_cell_novelty`` does. Labels (the nearest type) are always per cell. With
        smoothing, a cell's call depends on the query it comes with; the neighbour search
        grows with the square of the number of cells (on 2 CPU cores, measured by
        ``benchmarks/speed_neighbours.py``: 3 s for 10,000 cells, 53 s for 100,000).
    copy
        Return an annotated copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the annotated copy with ``copy=True``. Sets, with ``key_added="mapcell"``:

    ``adata.obs["mapcell_label"]`` : categorical
        The nearest type, or "Unknown" when the novelty score is above ``novelty_cutoff``.
    ``adata.obs["mapcell_nearest"]`` : categorical
        The nearest known type, also for Unknown cells.
    ``adata.obs["mapcell_distance"]`` : float32
        Distance to that type (to its nearest prototype, or mean distance to its kNN voters).
    ``adata.obs["mapcell_novelty"]`` : float32
        The novelty score that decides "Unknown": the median of ``mapcell_cell_novelty`` over
        the cell's query neighbourhood (``novelty_neighbors``).
    ``adata.obs["mapcell_cell_novelty"]`` : float32
        The cell's own distance over its nearest type's calibrated threshold; above 1 means
        farther than the held-out quantile of the reference's own cells.
    ``adata.obs["mapcell_confidence"]`` : float32
        In [0, 1]: ``1 - d1 / d2`` for the nearest and second-nearest types (prototype mode), or
        the share of the ``k`` votes won (kNN mode).
    ``adata.obsm["X_mapcell"]`` : float32 array (cells x n_latent)
        The embedding.
    ``adata.uns["mapcell"]`` : dict
        ``params``, ``model`` (source, name and version when the bundle has them, mapcell
        version, labels), ``thresholds`` per type, ``gene_overlap``, ``values`` (what the input
        held) and package ``versions``.
    """
    model = _resolve_model(model)
    with timed(f"annotating {adata.n_obs} cells with MapCell ({mode} mode)"):
        frame, embedding, match, report = model._annotation(
            adata,
            layer=layer,
            use_raw=use_raw,
            gene_key=gene_key,
            mode=mode,
            k=k,
            novelty_cutoff=novelty_cutoff,
            novelty_neighbors=novelty_neighbors,
        )
        record = {
            "params": {
                "mode": mode,
                "k": k,
                "novelty_cutoff": novelty_cutoff,
                "novelty_neighbors": novelty_neighbors,
                "layer": layer,
                "use_raw": use_raw,
                "gene_key": gene_key,
            },
            "model": {
                "source": getattr(model, "bundle_source", getattr(model, "bundle_path", None))
                or "in memory",
                "name": getattr(model, "about", {}).get("name"),
                "version": getattr(model, "about", {}).get("version"),
                "mapcell_version": __version__,
                "labels": list(model.labels),
                "n_genes": len(model.genes),
            },
            "thresholds": dict(
                zip(
                    model.labels,
                    model.reference.thresholds[mode].astype(float).tolist(),
                    strict=True,
                )
            ),
            "gene_overlap": match.summary(),
            "values": {"kind": report.kind, "rescaled": report.rescale},
            "versions": package_versions(),
        }

        target = adata.copy() if copy else adata
        obs_keys = [f"{key_added}_{name}" for name in OBS_FIELDS]
        for key, name in zip(obs_keys, OBS_FIELDS, strict=True):
            target.obs[key] = frame[name].values  # positional: the frame follows adata's rows
        target.obsm[f"X_{key_added}"] = embedding.astype(np.float32)
        target.uns[key_added] = _json_safe(record)
    log_added(
        [f"'{key}', (adata.obs)" for key in obs_keys]
        + [f"'X_{key_added}', (adata.obsm)", f"'{key_added}', (adata.uns)"]
    )
    return target if copy else None


def embed(
    adata: ad.AnnData,
    model: MapCell | str | os.PathLike,
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    layer: str | None = None,
    use_raw: bool = False,
    gene_key: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Write only the mapcell embedding of ``adata``, for plots or neighbours.

    Parameters are those of :func:`annotate`.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Sets ``adata.obsm["X_mapcell"]`` (float32,
    cells x n_latent) with ``key_added="mapcell"``.
    """
    model = _resolve_model(model)
    embedding, _, _ = model.embed_query(adata, layer=layer, use_raw=use_raw, gene_key=gene_key)
    target = adata.copy() if copy else adata
    target.obsm[f"X_{key_added}"] = embedding.astype(np.float32)
    log_added([f"'X_{key_added}', (adata.obsm)"])
    return target if copy else None
