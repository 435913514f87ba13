"""Find the expression matrix, tell counts from log-normalised values, build the model input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from mapcell._constants import (
    CONSTANT_TOTAL_TOLERANCE,
    LOG_VALUE_CEILING,
    TARGET_SUM,
    VALUE_SAMPLE_ROWS,
)

ValueKind = Literal["counts", "log1p"]


@dataclass(frozen=True)
class ExpressionSource:
    """The matrix mapcell reads from an AnnData, with its gene table and a name for messages."""

    matrix: object
    var: pd.DataFrame
    where: str

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return self.matrix.shape[0]


def expression_source(
    adata: ad.AnnData, *, layer: str | None = None, use_raw: bool = False
) -> ExpressionSource:
    """Pick ``adata.X``, ``adata.layers[layer]`` or ``adata.raw.X``, with clear errors."""
    if layer is not None and use_raw:
        msg = "pass either layer= or use_raw=True, not both"
        raise ValueError(msg)
    if use_raw:
        if adata.raw is None:
            msg = "use_raw=True, but adata.raw is None; use layer= or the values in adata.X"
            raise ValueError(msg)
        return ExpressionSource(adata.raw.X, adata.raw.var, "adata.raw.X")
    if layer is not None:
        if layer not in adata.layers:
            msg = f"layer {layer!r} is not in adata.layers; the layers are {list(adata.layers)}"
            raise KeyError(msg)
        return ExpressionSource(adata.layers[layer], adata.var, f"adata.layers[{layer!r}]")
    if adata.X is None:
        msg = "adata.X is empty; pass layer= with the layer that holds counts or log values"
        raise ValueError(msg)
    return ExpressionSource(adata.X, adata.var, "adata.X")


def _rows(matrix, rows) -> np.ndarray | sparse.csr_matrix:
    block = matrix[rows]
    if sparse.issparse(block):
        return sparse.csr_matrix(block, dtype=np.float32)
    if hasattr(block, "to_memory"):  # a backed sparse dataset
        return sparse.csr_matrix(block.to_memory(), dtype=np.float32)
    return np.asarray(block, dtype=np.float32)


def _values_of(block) -> np.ndarray:
    return block.data if sparse.issparse(block) else np.asarray(block).ravel()


def _alternatives(adata: ad.AnnData | None) -> str:
    if adata is None:
        return ""
    options = [f"layer={name!r}" for name in adata.layers]
    if adata.raw is not None:
        options.append("use_raw=True")
    return f" (this AnnData has: {', '.join(options)})" if options else ""


def check_values(values: np.ndarray, where: str, adata: ad.AnnData | None = None) -> None:
    """Raise when values are non-finite or negative, naming what to pass instead."""
    if not np.isfinite(values).all():
        msg = (
            f"{where} holds NaN or infinite values; mapcell needs raw counts or log1p-normalised "
            f"expression{_alternatives(adata)}"
        )
        raise ValueError(msg)
    if values.size and values.min() < 0:
        msg = (
            f"{where} has negative values (smallest {values.min():.3g}), so it looks scaled or "
            "z-scored; mapcell needs raw counts or log1p-normalised expression: pass the layer "
            f"that holds them or use_raw=True{_alternatives(adata)}"
        )
        raise ValueError(msg)


@dataclass(frozen=True)
class ValueReport:
    """What a matrix holds and how it is brought to the model's input.

    ``kind`` is ``"counts"`` (normalised to :data:`TARGET_SUM` per cell, then ``log1p``) or
    ``"log1p"``; ``rescale`` is True for log1p data whose ``expm1`` totals are the same in every
    cell, which are brought to the same CP10k scale exactly (so counts and their log1p form give
    one model input). Other log data (a gene subset, or another base) are used as they are.
    """

    kind: ValueKind
    rescale: bool


def detect_values(source: ExpressionSource, adata: ad.AnnData | None = None) -> ValueReport:
    """Tell raw counts from log1p-normalised values on evenly spaced rows of ``source``."""
    n_sample = min(source.n_obs, VALUE_SAMPLE_ROWS)
    rows = np.unique(np.linspace(0, source.n_obs - 1, n_sample).astype(np.int64))
    block = _rows(source.matrix, rows)
    values = _values_of(block)
    check_values(values, source.where, adata)

    if np.array_equal(values, np.round(values)):
        return ValueReport("counts", rescale=False)
    if values.max() > LOG_VALUE_CEILING:
        msg = (
            f"{source.where} is not integer but reaches {values.max():.4g}, so it looks "
            "normalised but not log-transformed; run sc.pp.log1p on it, or pass the layer "
            f"with raw counts{_alternatives(adata)}"
        )
        raise ValueError(msg)

    totals = np.asarray(_expm1(block).sum(axis=1)).ravel()
    totals = totals[totals > 0]
    spread = totals.std() / totals.mean() if totals.size else np.inf
    return ValueReport("log1p", rescale=bool(spread < CONSTANT_TOTAL_TOLERANCE))


def _expm1(block):
    if sparse.issparse(block):
        out = block.copy()
        out.data = np.expm1(out.data)
        return out
    return np.expm1(block)


def _scale_rows(block, factors: np.ndarray):
    if sparse.issparse(block):
        return sparse.diags(factors.astype(np.float32)) @ block
    return block * factors[:, None].astype(np.float32)


def _normalise_block(block, report: ValueReport):
    """log1p(CP10k) of one block of rows, over all its genes."""
    if report.kind == "log1p" and not report.rescale:
        return block
    linear = block if report.kind == "counts" else _expm1(block)
    totals = np.asarray(linear.sum(axis=1), dtype=np.float64).ravel()
    factors = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    scaled = _scale_rows(linear, factors)
    if sparse.issparse(scaled):
        scaled = sparse.csr_matrix(scaled)
        scaled.data = np.log1p(scaled.data)
        return scaled
    return np.log1p(scaled)


def iter_model_input(
    source: ExpressionSource,
    report: ValueReport,
    gene_index: np.ndarray,
    chunk_size: int,
    adata: ad.AnnData | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, X)``: dense float32 model input for each chunk of ``chunk_size`` cells.

    ``gene_index`` gives, per model gene, its column in ``source`` or -1 (filled with zeros).
    Library sizes use every gene of ``source``, as normalisation of the whole matrix would.
    Only one chunk is dense in memory at a time.
    """
    found = np.flatnonzero(gene_index >= 0)
    columns = gene_index[found]
    for start in range(0, source.n_obs, chunk_size):
        rows = slice(start, min(start + chunk_size, source.n_obs))
        block = _rows(source.matrix, rows)
        check_values(_values_of(block), source.where, adata)
        block = _normalise_block(block, report)[:, columns]
        dense = np.zeros((rows.stop - rows.start, len(gene_index)), dtype=np.float32)
        dense[:, found] = block.toarray() if sparse.issparse(block) else block
        yield rows, dense


def normalised_matrix(source: ExpressionSource, report: ValueReport) -> sparse.csr_matrix:
    """The whole matrix as log1p(CP10k) (sparse), for choosing variable genes at training time."""
    return sparse.csr_matrix(_normalise_block(_rows(source.matrix, slice(None)), report))
