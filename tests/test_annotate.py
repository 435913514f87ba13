from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import mapcell as mc
from mapcell._constants import OBS_FIELDS, UNKNOWN
from mapcell._warnings import GeneOverlapWarning
from tests.conftest import KNOWN_TYPES


def _snapshot(adata: ad.AnnData) -> tuple:
    return adata.obs.copy(), dict(adata.obsm), dict(adata.uns), adata.X.copy()


def _assert_unchanged(adata: ad.AnnData, snapshot: tuple) -> None:
    obs, obsm, uns, x = snapshot
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert set(adata.obsm) == set(obsm)
    assert set(adata.uns) == set(uns)
    assert (x != adata.X).nnz == 0


def test_annotate_writes_the_documented_fields(model, query):
    assert mc.tl.annotate(query, model) is None
    obs = query.obs
    assert obs["mapcell_label"].dtype == "category"
    assert list(obs["mapcell_label"].cat.categories) == [*KNOWN_TYPES, UNKNOWN]
    assert list(obs["mapcell_nearest"].cat.categories) == list(KNOWN_TYPES)
    for name in ("distance", "novelty", "confidence"):
        assert obs[f"mapcell_{name}"].dtype == np.float32
    assert query.obsm["X_mapcell"].shape == (query.n_obs, 8)
    assert {"params", "model", "thresholds", "gene_overlap", "values", "versions"} <= set(
        query.uns["mapcell"]
    )
    unknown = obs["mapcell_label"] == UNKNOWN
    assert (obs.loc[unknown, "mapcell_novelty"] > 1).all()
    assert (obs.loc[~unknown, "mapcell_novelty"] <= 1).all()


def test_docstring_lists_every_field_annotate_writes(model, query):
    mc.tl.annotate(query, model, key_added="mc")
    documented = set(
        re.findall(r'``adata\.(?:obs|obsm|uns)\["([^"]+)"\]``', mc.tl.annotate.__doc__)
    )
    written = {f"mapcell_{name}" for name in OBS_FIELDS} | {"X_mapcell", "mapcell"}
    assert documented == written
    assert {f"mc_{name}" for name in OBS_FIELDS} <= set(query.obs)


def test_annotated_query_can_be_written_to_h5ad(model, query, tmp_path):
    mc.tl.annotate(query, model)
    query.write_h5ad(tmp_path / "q.h5ad")
    back = ad.read_h5ad(tmp_path / "q.h5ad")
    assert back.uns["mapcell"]["params"]["mode"] == "prototype"
    np.testing.assert_array_equal(back.obs["mapcell_label"], query.obs["mapcell_label"])


def test_copy_returns_an_annotated_copy_and_leaves_the_input(model, query):
    snapshot = _snapshot(query)
    annotated = mc.tl.annotate(query, model, copy=True)
    _assert_unchanged(query, snapshot)
    assert "mapcell_label" in annotated.obs


@pytest.mark.parametrize(
    ("break_query", "error", "message"),
    [
        (lambda q: setattr(q, "X", q.X * -1), ValueError, "negative values"),
        (
            lambda q: (
                setattr(q, "var_names", [f"X{i}" for i in range(q.n_vars)])
                or q.var.drop(columns="ensembl", inplace=True)
            ),
            ValueError,
            "none of the 120 model genes",
        ),
    ],
    ids=["negative", "no-genes"],
)
def test_an_error_leaves_the_query_unchanged(model, query, break_query, error, message):
    break_query(query)
    snapshot = _snapshot(query)
    with pytest.raises(error, match=message):
        mc.tl.annotate(query, model)
    _assert_unchanged(query, snapshot)


def test_bad_option_leaves_the_query_unchanged(model, query):
    snapshot = _snapshot(query)
    with pytest.raises(ValueError, match="mode must be one of"):
        mc.tl.annotate(query, model, mode="cosine")
    _assert_unchanged(query, snapshot)


def test_model_may_be_a_bundle_path(model, query, tmp_path):
    model.save(tmp_path / "bundle")
    mc.tl.annotate(query, str(tmp_path / "bundle"))
    expected = model.predict(query)["label"].to_numpy()
    np.testing.assert_array_equal(query.obs["mapcell_label"].to_numpy(), expected)
    assert query.uns["mapcell"]["model"]["source"] == str(tmp_path / "bundle")


def test_model_of_the_wrong_type_is_refused(query):
    with pytest.raises(TypeError, match="must be a trained MapCell or the path"):
        mc.tl.annotate(query, 42)


def test_embed_writes_only_the_embedding(model, query):
    obs = query.obs.copy()
    mc.tl.embed(query, model)
    pd.testing.assert_frame_equal(query.obs, obs)
    assert set(query.obsm) == {"X_mapcell"}
    assert "mapcell" not in query.uns


def test_genes_are_matched_through_ensembl_ids(model, query):
    expected = model.predict(query)["label"].to_numpy()
    by_id = query.copy()
    by_id.var["symbol"] = by_id.var_names.to_numpy()
    by_id.var_names = by_id.var["ensembl"].to_numpy()
    by_id.var = by_id.var.drop(columns="ensembl")
    mc.tl.annotate(by_id, model)
    np.testing.assert_array_equal(by_id.obs["mapcell_label"].to_numpy(), expected)


def test_low_gene_overlap_warns_with_counts(model, query):
    partial = query[:, 40:].copy()
    with pytest.warns(GeneOverlapWarning, match=r"only 80 of 120 model genes \(66.7%\)"):
        mc.tl.annotate(partial, model)
    assert partial.uns["mapcell"]["gene_overlap"]["n_found"] == 80


def test_a_higher_cutoff_calls_fewer_cells_unknown(model, query):
    # Cell by cell: smoothed scores of this well-separated query sit far from any cutoff.
    alone = {"novelty_neighbors": 0}
    strict = (model.predict(query, novelty_cutoff=0.5, **alone)["label"] == UNKNOWN).sum()
    default = (model.predict(query, **alone)["label"] == UNKNOWN).sum()
    lenient = (model.predict(query, novelty_cutoff=3, **alone)["label"] == UNKNOWN).sum()
    assert strict > default > lenient


def test_chunk_size_does_not_change_results(model, query):
    expected = model.predict(query)
    mc.settings.batch_size = 7
    try:
        chunked = model.predict(query)
    finally:
        mc.settings.batch_size = 1024
    np.testing.assert_array_equal(chunked["label"], expected["label"])
    np.testing.assert_allclose(chunked["distance"], expected["distance"], atol=1e-5)


def test_backed_query_gets_the_same_labels(model, query, tmp_path):
    query.write_h5ad(tmp_path / "q.h5ad")
    backed = ad.read_h5ad(tmp_path / "q.h5ad", backed="r")
    np.testing.assert_array_equal(model.predict(backed)["label"], model.predict(query)["label"])
    backed.file.close()


def test_scaled_x_is_refused_and_use_raw_works(model):
    data = sc.datasets.pbmc68k_reduced()
    with pytest.raises(ValueError, match=r"negative values .* use_raw=True"):
        mc.tl.embed(data, model)


# ------------------------------------------------------------------ evaluate


def _hand_annotated() -> ad.AnnData:
    obs = pd.DataFrame(
        {
            "truth": ["a", "a", "b", "b", "new", "new"],
            "mapcell_label": ["a", UNKNOWN, "b", "a", UNKNOWN, "b"],
            "mapcell_novelty": [0.2, 1.5, 0.3, 0.9, 2.0, 0.8],
        },
        index=[f"c{i}" for i in range(6)],
    )
    adata = ad.AnnData(np.zeros((6, 1), dtype=np.float32), obs=obs)
    adata.uns["mapcell"] = {"model": {"labels": ["a", "b"]}}
    return adata


def test_evaluate_computes_each_metric():
    scores = mc.tl.evaluate(_hand_annotated(), "truth")
    assert scores["accuracy"] == pytest.approx(2 / 4)
    # F1 on known cells only. a: precision 1/2, recall 1/2 -> 1/2; b: predicted once, correctly,
    # so precision 1, recall 1/2 -> 2/3 (the novel cell called b does not count).
    assert scores["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert scores["known_called_unknown"] == pytest.approx(1 / 4)
    assert scores["novel_called_unknown"] == pytest.approx(1 / 2)
    # novel scores 2.0 and 0.8 against known 0.2, 1.5, 0.3, 0.9: 2.0 beats 4, 0.8 beats 2 -> 6/8
    assert scores["novelty_auroc"] == pytest.approx(6 / 8)
    assert (scores["n_known"], scores["n_novel"]) == (4, 2)


def test_evaluate_without_novel_cells_gives_nan_auroc():
    adata = _hand_annotated()[:4].copy()
    assert np.isnan(mc.tl.evaluate(adata, "truth")["novelty_auroc"])


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "message"),
    [
        (
            lambda a: a.obs.drop(columns="mapcell_label", inplace=True),
            {},
            KeyError,
            "run mc.tl.annotate",
        ),
        (
            lambda a: None,
            {"true_key": "cell_type"},
            KeyError,
            "true_key 'cell_type' is not a column",
        ),
        (lambda a: a.uns.clear(), {}, ValueError, "pass known_types="),
    ],
    ids=["not-annotated", "no-truth", "no-labels"],
)
def test_evaluate_errors(change, kwargs, error, message):
    adata = _hand_annotated()
    change(adata)
    with pytest.raises(error, match=message):
        mc.tl.evaluate(adata, kwargs.get("true_key", "truth"))


def test_evaluate_on_pbmc68k_demo_split(pbmc):
    reference, query = mc.datasets.demo_split(pbmc, "bulk_labels", "CD19+ B")
    assert "CD19+ B" not in set(reference.obs["bulk_labels"])
    model = mc.tl.train(reference, "bulk_labels", max_epochs=3, n_top_genes=300)
    mc.tl.annotate(query, model)
    scores = mc.tl.evaluate(query, "bulk_labels")
    assert scores["n_novel"] == 95
    assert scores["novelty_auroc"] > 0.7


@pytest.mark.parametrize("shown", [True, False], ids=["bar", "no-bar"])
def test_a_query_of_several_chunks_shows_progress(model, query, capsys, shown):
    mc.settings.batch_size, mc.settings.progress_bar = 50, shown
    try:
        model.predict(query)
    finally:
        mc.settings.batch_size = 1024
    captured = capsys.readouterr()
    assert ("embedding" in captured.out + captured.err) is shown
