import warnings

import numpy as np
import pandas as pd
import pytest

from mapcell._warnings import GeneOverlapWarning
from mapcell.pp import GeneMatch, gene_id_kind, match_genes, reference_gene_ids
from mapcell.pp._genes import normalise_gene_id

SYMBOLS = [f"GENE{i}" for i in range(10)]
ENSEMBL = [f"ENSG{i:011d}" for i in range(10)]


def _var(index, **columns) -> pd.DataFrame:
    return pd.DataFrame(columns, index=pd.Index(index))


@pytest.mark.parametrize(
    ("gene_id", "expected"),
    [
        ("ENSG00000141510", "ENSG00000141510"),
        ("ENSG00000141510.5", "ENSG00000141510"),
        ("ensg00000141510.12", "ENSG00000141510"),
        ("ENSMUSG00000000001.3", "ENSMUSG00000000001"),
        (" cd3e ", "CD3E"),
        ("HLA-A.1", "HLA-A.1"),
    ],
    ids=["ensembl", "version", "lower-version", "mouse", "symbol-spaces", "symbol-dot-kept"],
)
def test_normalise_gene_id(gene_id, expected):
    assert normalise_gene_id(gene_id) == expected


@pytest.mark.parametrize(
    ("gene_ids", "expected"),
    [
        (ENSEMBL, "ensembl"),
        (SYMBOLS, "symbol"),
        ([g.lower() + ".7" for g in ENSEMBL], "ensembl"),
        (ENSEMBL[:6] + SYMBOLS[:4], "ensembl"),
        (ENSEMBL[:5] + SYMBOLS[:5], "symbol"),
        ([], "symbol"),
    ],
    ids=["ensembl", "symbol", "lower-version", "mostly-ensembl", "half", "empty"],
)
def test_gene_id_kind(gene_ids, expected):
    assert gene_id_kind(gene_ids) == expected


def test_reference_gene_ids_ensembl_names_with_symbol_column():
    var = _var(ENSEMBL, symbol=SYMBOLS, feature_types=["Gene Expression"] * 10, n_cells=range(10))

    ids = reference_gene_ids(var)

    assert list(ids) == ["ensembl", "symbol"]
    assert ids == {"ensembl": ENSEMBL, "symbol": SYMBOLS}


def test_reference_gene_ids_keeps_var_names_for_a_kind_seen_twice():
    var = _var(SYMBOLS, alias=[f"ALIAS{i}" for i in range(10)])

    assert reference_gene_ids(var) == {"symbol": SYMBOLS}


def test_match_symbols_to_symbols():
    order = [3, 0, 9, 1, 7, 2, 8, 4, 6, 5]
    query = _var([SYMBOLS[i].lower() for i in order] + ["EXTRA1", "EXTRA2"])

    match = match_genes(query, {"symbol": SYMBOLS})

    np.testing.assert_array_equal(match.index, np.argsort(order))
    assert (match.model_kind, match.data_source) == ("symbol", "var_names")


def test_match_picks_the_symbol_list_of_an_ensembl_reference():
    model_ids = reference_gene_ids(_var(ENSEMBL, symbol=SYMBOLS))
    query = _var(SYMBOLS[::-1])

    match = match_genes(query, model_ids)

    assert (match.model_kind, match.data_source) == ("symbol", "var_names")
    np.testing.assert_array_equal(match.index, np.arange(10)[::-1])


@pytest.mark.parametrize(
    "transform",
    [lambda g: g + ".5", lambda g: g.lower() + ".12", str.lower],
    ids=["upper-version", "lower-version", "lower"],
)
def test_match_ensembl_in_a_var_column(transform):
    query = _var(
        [f"barcode_gene_{i}" for i in range(10)], gene_ids=[transform(g) for g in ENSEMBL]
    )

    match = match_genes(query, {"symbol": SYMBOLS, "ensembl": ENSEMBL})

    assert (match.model_kind, match.data_source) == ("ensembl", "var['gene_ids']")
    np.testing.assert_array_equal(match.index, np.arange(10))


def test_match_explicit_gene_key():
    alt = [*SYMBOLS[:9], "OTHER"]
    query = _var([f"x{i}" for i in range(10)], gene_ids=ENSEMBL, alt=alt)

    auto = match_genes(query, {"ensembl": ENSEMBL, "symbol": SYMBOLS})
    chosen = match_genes(query, {"ensembl": ENSEMBL, "symbol": SYMBOLS}, gene_key="alt")

    assert auto.data_source == "var['gene_ids']"
    assert (chosen.model_kind, chosen.data_source) == ("symbol", "var['alt']")
    np.testing.assert_array_equal(chosen.index, [*range(9), -1])


@pytest.mark.parametrize("where", ["adata", "adata.raw"], ids=["X", "raw"])
def test_match_missing_gene_key(where):
    query = _var(SYMBOLS, gene_ids=ENSEMBL)

    with pytest.raises(KeyError, match=rf"gene_key='nope' is not a column of {where}\.var"):
        match_genes(query, {"symbol": SYMBOLS}, gene_key="nope", where=where)


def test_match_zero_overlap_suggests_what_to_check():
    query = _var([f"OTHER{i}" for i in range(10)])

    with pytest.raises(ValueError, match=r"none of the 10 model genes .* are in adata\.var_names"):
        match_genes(query, {"symbol": SYMBOLS})
    with pytest.raises(ValueError, match=r"same species.*\(gene_key=\.\.\.\)"):
        match_genes(query, {"symbol": SYMBOLS})


def test_match_wrong_gene_key_names_the_matching_column():
    model_ids = reference_gene_ids(_var(ENSEMBL, symbol=SYMBOLS))
    query = _var([f"x{i}" for i in range(10)], symbol=SYMBOLS, other=[f"o{i}" for i in range(10)])

    with pytest.raises(
        ValueError, match=r"10 of them match adata\.var\['symbol'\]: pass gene_key='symbol'"
    ):
        match_genes(query, model_ids, gene_key="other")


def test_match_wrong_gene_key_names_var_names():
    model_ids = reference_gene_ids(_var(ENSEMBL, symbol=SYMBOLS))  # ensembl listed first
    query = _var(SYMBOLS, other=[f"o{i}" for i in range(10)])

    with pytest.raises(ValueError, match=r"10 of them match adata\.var_names: omit gene_key"):
        match_genes(query, model_ids, gene_key="other")


def test_match_wrong_gene_key_names_var_names_when_symbols_come_first():
    model_ids = reference_gene_ids(_var(SYMBOLS, gene_ids=ENSEMBL))  # symbol listed first
    query = _var(SYMBOLS, other=[f"o{i}" for i in range(10)])

    with pytest.raises(ValueError, match=r"10 of them match adata\.var_names: omit gene_key"):
        match_genes(query, model_ids, gene_key="other")


@pytest.mark.parametrize(("n_found", "percent"), [(1, "10.0"), (7, "70.0")], ids=["10%", "70%"])
def test_match_warns_under_80_percent(n_found, percent):
    query = _var(SYMBOLS[:n_found] + [f"OTHER{i}" for i in range(10 - n_found)])

    with pytest.warns(
        GeneOverlapWarning, match=rf"only {n_found} of 10 model genes \({percent}%\)"
    ):
        match = match_genes(query, {"symbol": SYMBOLS})

    assert match.n_found == n_found


def test_overlap_warning_points_at_the_caller():
    query = _var(SYMBOLS[:5] + [f"OTHER{i}" for i in range(5)])

    with pytest.warns(GeneOverlapWarning, match="only 5 of 10") as record:
        match_genes(query, {"symbol": SYMBOLS})

    assert record[0].filename == __file__


@pytest.mark.parametrize("n_found", [8, 10], ids=["80%", "100%"])
def test_match_does_not_warn_at_80_percent(n_found):
    query = _var(SYMBOLS[:n_found] + [f"OTHER{i}" for i in range(10 - n_found)])

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        match = match_genes(query, {"symbol": SYMBOLS})

    assert match.n_found == n_found
    assert not [w for w in record if issubclass(w.category, GeneOverlapWarning)]


def test_match_duplicated_var_names_take_the_first():
    query = _var(["GENE1", "GENE0", "gene1", "GENE2", "GENE0", *SYMBOLS[3:]])

    match = match_genes(query, {"symbol": SYMBOLS})

    np.testing.assert_array_equal(match.index[:3], [1, 0, 3])


def test_match_duplicated_symbol_column_takes_the_first():
    symbols = [*SYMBOLS[:9], "GENE4"]  # GENE4 at rows 4 and 9; still 90% distinct
    query = _var(ENSEMBL[::-1], symbol=symbols)

    match = match_genes(query, {"symbol": SYMBOLS[:9]})

    assert match.data_source == "var['symbol']"
    np.testing.assert_array_equal(match.index, np.arange(9))


def test_gene_match_summary():
    match = GeneMatch(index=np.array([4, -1, 0, 2, -1, -1]), model_kind="ensembl", data_source="x")

    assert (match.n_model_genes, match.n_found) == (6, 3)
    assert match.summary() == {
        "n_model_genes": 6,
        "n_found": 3,
        "fraction": 0.5,
        "model_id_kind": "ensembl",
        "data_source": "x",
    }


def test_match_summary_from_match_genes():
    query = _var([*SYMBOLS[:8], "OTHER"])

    summary = match_genes(query, {"symbol": SYMBOLS[:9]}).summary()

    assert summary == {
        "n_model_genes": 9,
        "n_found": 8,
        "fraction": 0.8889,
        "model_id_kind": "symbol",
        "data_source": "var_names",
    }
