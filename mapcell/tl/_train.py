from __future__ import annotations

from collections.abc import Sequence

import anndata as ad

from mapcell._logging import timed
from mapcell.model import MapCell
from mapcell.nn._losses import LossName
from mapcell.pp._values import expression_source


def train(
    adata: ad.AnnData,
    labels_key: str,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    genes: Sequence[str] | None = None,
    n_top_genes: int | None = 2000,
    loss: LossName = "contrastive",
    n_latent: int = 32,
    n_shots: int | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
    progress_bar: bool | None = None,
    **train_kwargs,
) -> MapCell:
    """Train a :class:`~mapcell.MapCell` reference on a labelled AnnData in one call.

    ``adata`` itself is not modified: the model registers a light AnnData that shares its
    matrix and holds only the label (and batch) columns.

    Parameters
    ----------
    adata
        The reference: raw counts or log1p-normalised values.
    labels_key
        ``obs`` column with the cell types.
    batch_key
        ``obs`` column with batches; positive pairs are then drawn across batches.
    layer
        Layer with the values, if not ``X``.
    use_raw
        Read the values and genes from ``adata.raw`` (for example when ``X`` is scaled).
    genes
        Restrict the model to these genes (for example ``query.var_names``).
    n_top_genes
        Number of highly variable genes to train on (``None``: all genes).
    loss
        ``"contrastive"``, ``"triplet"`` or ``"supcon"``.
    n_latent
        Size of the embedding.
    n_shots
        Cells per type used for training (10 to 50 is typical); the rest calibrate thresholds.
        ``None`` trains on all cells but a held-out fraction.
    max_epochs
        Upper bound on epochs (by default about 1500 steps).
    seed
        Seed of the split, batches and weights (default ``mc.settings.seed``).
    progress_bar
        Show one bar per epoch (default ``mc.settings.progress_bar``).
    **train_kwargs
        Passed to :meth:`mapcell.MapCell.train` (for example ``calibration_quantile``).

    Returns
    -------
    The trained model.

    Examples
    --------
    >>> model = mc.tl.train(ref, labels_key="cell_type", n_shots=20)
    """
    source = expression_source(adata, layer=layer, use_raw=use_raw)
    columns = [labels_key] + (
        [batch_key] if batch_key is not None and batch_key != labels_key else []
    )
    missing = [key for key in columns if key not in adata.obs]
    if missing:
        msg = (
            f"{missing[0]!r} is not a column of adata.obs; the columns are "
            f"{list(adata.obs.columns)}"
        )
        raise KeyError(msg)
    light = ad.AnnData(X=source.matrix, obs=adata.obs[columns].copy(), var=source.var.copy())

    with timed(f"training a MapCell reference on {adata.n_obs} cells"):
        MapCell.setup_anndata(light, labels_key=labels_key, batch_key=batch_key)
        model = MapCell(light, genes=genes, n_top_genes=n_top_genes, loss=loss, n_latent=n_latent)
        model.train(
            max_epochs, n_shots=n_shots, seed=seed, progress_bar=progress_bar, **train_kwargs
        )
    return model
