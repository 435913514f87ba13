import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from mapcell._constants import TARGET_SUM
from mapcell.pp import ValueReport, detect_values, expression_source, iter_model_input

N_CELLS, N_GENES = 12, 8


def _counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.uniform(0.5, 6, size=N_GENES), size=(N_CELLS, N_GENES))
    counts[:, 0] += 1  # every cell has a library
    return counts.astype(np.float32)


def _log_cp10k(counts: np.ndarray) -> np.ndarray:
    """What mapcell should feed its model: log1p(CP10k) over all genes, in float64."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.log1p(np.divide(counts * TARGET_SUM, totals, where=totals > 0, out=counts * 0))


def _adata(X, **layers) -> ad.AnnData:
    var = pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)])
    return ad.AnnData(X=X, var=var, layers=layers)


def _model_input(X, gene_index=None, chunk_size=5) -> np.ndarray:
    source = expression_source(_adata(X))
    gene_index = np.arange(N_GENES) if gene_index is None else np.asarray(gene_index)
    report = detect_values(source)
    chunks = iter_model_input(source, report, gene_index, chunk_size)
    return np.concatenate([block for _, block in chunks])


def _log_normalised(counts, target_sum, storage) -> np.ndarray | sparse.csr_matrix:
    adata = _adata(sparse.csr_matrix(counts) if storage == "csr" else counts.copy())
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    return adata.X


@pytest.fixture
def adata() -> ad.AnnData:
    counts = _counts()
    return _adata(_log_cp10k(counts).astype(np.float32), counts=counts)


def test_source_x(adata):
    source = expression_source(adata)

    assert source.matrix is adata.X
    assert source.var is adata.var
    assert (source.where, source.n_obs) == ("adata.X", N_CELLS)


def test_source_layer(adata):
    source = expression_source(adata, layer="counts")

    assert source.matrix is adata.layers["counts"]
    assert source.where == "adata.layers['counts']"


def test_source_raw(adata):
    adata.raw = adata
    subset = adata[:, :3].copy()

    source = expression_source(subset, use_raw=True)

    assert source.where == "adata.raw.X"
    assert source.matrix.shape == (N_CELLS, N_GENES)
    assert list(source.var.index) == list(adata.var_names)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer": "missing"}, KeyError, r"layer 'missing' is not in adata\.layers.*\['counts'\]"),
        ({"layer": "counts", "use_raw": True}, ValueError, r"either layer= or use_raw=True"),
        ({"use_raw": True}, ValueError, r"use_raw=True, but adata\.raw is None"),
    ],
    ids=["missing-layer", "layer-and-raw", "no-raw"],
)
def test_source_errors(adata, kwargs, error, match):
    with pytest.raises(error, match=match):
        expression_source(adata, **kwargs)


def test_source_without_x():
    adata = ad.AnnData(obs=pd.DataFrame(index=["c0", "c1"]), var=pd.DataFrame(index=["g0"]))

    with pytest.raises(ValueError, match=r"adata\.X is empty; pass layer="):
        expression_source(adata)


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_detect_counts(storage):
    counts = _counts()
    X = sparse.csr_matrix(counts) if storage == "csr" else counts

    assert detect_values(expression_source(_adata(X))) == ValueReport("counts", rescale=False)


@pytest.mark.parametrize("target_sum", [1e4, 1e6, None], ids=["cp10k", "cpm", "median"])
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_detect_log1p_of_all_genes_rescales(target_sum, storage):
    X = _log_normalised(_counts(), target_sum, storage)

    assert detect_values(expression_source(_adata(X))) == ValueReport("log1p", rescale=True)


def test_detect_log1p_of_a_gene_subset_is_kept():
    counts = np.hstack([_counts(0), _counts(1)])
    X = _log_cp10k(counts)[:, :N_GENES].astype(np.float32)

    assert detect_values(expression_source(_adata(X))) == ValueReport("log1p", rescale=False)


def test_detect_negative_values_name_the_alternatives(adata):
    adata.raw = adata
    adata.X = adata.X - adata.X.mean(axis=0)

    with pytest.raises(
        ValueError, match=r"negative values.*this AnnData has: layer='counts', use_raw=True"
    ):
        detect_values(expression_source(adata), adata)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_detect_non_finite(bad):
    X = _counts()
    X[3, 2] = bad

    with pytest.raises(ValueError, match=r"adata\.X holds NaN or infinite values"):
        detect_values(expression_source(_adata(X)))


def test_detect_normalised_but_not_logged():
    counts = _counts()
    X = (counts / counts.sum(axis=1, keepdims=True) * TARGET_SUM).astype(np.float32)

    with pytest.raises(ValueError, match=r"normalised but not log-transformed; run sc\.pp\.log1p"):
        detect_values(expression_source(_adata(X)))


def test_model_input_chunks_cover_all_rows_in_order():
    counts = _counts()
    source = expression_source(_adata(counts))
    report = detect_values(source)

    chunks = list(iter_model_input(source, report, np.arange(N_GENES), chunk_size=5))

    assert [rows for rows, _ in chunks] == [slice(0, 5), slice(5, 10), slice(10, 12)]
    assert [block.shape for _, block in chunks] == [(5, N_GENES), (5, N_GENES), (2, N_GENES)]
    assert all(block.dtype == np.float32 for _, block in chunks)
    stacked = np.concatenate([block for _, block in chunks])
    np.testing.assert_allclose(stacked, _log_cp10k(counts), rtol=1e-5)


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_model_input_fills_missing_genes_with_zeros(storage):
    counts = _counts()
    X = sparse.csr_matrix(counts) if storage == "csr" else counts

    result = _model_input(X, gene_index=[2, -1, 0, -1])

    expected = _log_cp10k(counts)
    np.testing.assert_array_equal(result[:, [1, 3]], 0)
    np.testing.assert_allclose(result[:, [0, 2]], expected[:, [2, 0]], rtol=1e-5)


@pytest.mark.parametrize(
    "target_sum", [1.0, 1e4, 1e6, None], ids=["one", "cp10k", "cpm", "median"]
)
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_counts_and_their_log1p_give_one_model_input(target_sum, storage):
    counts = _counts()
    raw = sparse.csr_matrix(counts) if storage == "csr" else counts

    from_counts = _model_input(raw)
    from_log = _model_input(_log_normalised(counts, target_sum, storage))

    np.testing.assert_allclose(from_counts, _log_cp10k(counts), rtol=1e-5)
    np.testing.assert_allclose(from_log, from_counts, atol=1e-4)


@pytest.mark.parametrize("kind", ["counts", "log1p"])
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_library_size_uses_every_gene_of_the_source(kind, storage):
    counts = _counts()
    X = counts if kind == "counts" else _log_cp10k(counts).astype(np.float32)
    X = sparse.csr_matrix(X) if storage == "csr" else X

    result = _model_input(X, gene_index=[0, 3])

    np.testing.assert_allclose(result, _log_cp10k(counts)[:, [0, 3]], rtol=1e-4)
    assert not np.allclose(result, _log_cp10k(counts[:, [0, 3]]), rtol=1e-2)


def test_log1p_not_rescaled_is_used_as_it_is():
    X = np.log1p(_counts())  # log1p without size normalisation: totals differ per cell
    source = expression_source(_adata(X))
    report = detect_values(source)

    (_, block), *_ = iter_model_input(source, report, np.array([4, 1]), chunk_size=N_CELLS)

    assert report == ValueReport("log1p", rescale=False)
    np.testing.assert_array_equal(block, X[:, [4, 1]])


@pytest.mark.parametrize("kind", ["counts", "log1p"])
def test_empty_cells_give_zeros(kind):
    counts = _counts()
    counts[4] = 0
    X = counts if kind == "counts" else _log_cp10k(counts).astype(np.float32)

    result = _model_input(X)

    np.testing.assert_array_equal(result[4], 0)
    assert np.isfinite(result).all()
