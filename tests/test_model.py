from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

import mapcell as mc
from mapcell._constants import UNKNOWN
from mapcell.model._training import split_cells
from tests.conftest import KNOWN_TYPES, NOVEL_TYPE, make_counts

QUICK = {"n_top_genes": None, "n_latent": 8, "max_epochs": 2}


def _setup(adata, **kwargs):
    mc.MapCell.setup_anndata(adata, labels_key="cell_type", **kwargs)
    return mc.MapCell(adata, n_top_genes=None, n_latent=8)


# ------------------------------------------------------------------ registration errors


def test_setup_rejects_missing_labels_key(reference):
    with pytest.raises(KeyError, match="labels_key 'celltype' is not a column"):
        mc.MapCell.setup_anndata(reference, labels_key="celltype")


def test_setup_rejects_missing_batch_key(reference):
    with pytest.raises(KeyError, match="batch_key 'sample' is not a column"):
        mc.MapCell.setup_anndata(reference, labels_key="cell_type", batch_key="sample")


def test_setup_rejects_unlabelled_cells(reference):
    labels = reference.obs["cell_type"].astype(object)
    labels.iloc[:3] = np.nan
    reference.obs["cell_type"] = labels
    with pytest.raises(ValueError, match="has 3 cells without a label; drop them"):
        mc.MapCell.setup_anndata(reference, labels_key="cell_type")


def test_setup_rejects_a_single_type(reference):
    reference.obs["cell_type"] = "alpha"
    with pytest.raises(ValueError, match="has 1 cell type"):
        mc.MapCell.setup_anndata(reference, labels_key="cell_type")


def test_setup_rejects_unknown_as_a_label(reference):
    reference.obs["cell_type"] = reference.obs["cell_type"].cat.rename_categories(
        {"alpha": UNKNOWN}
    )
    with pytest.raises(ValueError, match="keeps for novel cells"):
        mc.MapCell.setup_anndata(reference, labels_key="cell_type")


def test_setup_rejects_scaled_values_and_names_raw():
    scaled = sc.datasets.pbmc68k_reduced()
    with pytest.raises(ValueError, match="use_raw=True"):
        mc.MapCell.setup_anndata(scaled, labels_key="bulk_labels")
    assert "_scvi_labels" not in scaled.obs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_shots": 0}, "n_shots must be a positive"),
        ({"calibration_fraction": 1.5}, "calibration_fraction must lie between 0 and 1"),
        ({"calibration_quantile": 1.0}, "calibration_quantile must lie between 0 and 1"),
        ({"n_prototypes": 0}, "n_prototypes must be at least 1"),
    ],
    ids=["n_shots", "calibration_fraction", "quantile", "n_prototypes"],
)
def test_train_rejects_bad_parameters(reference, kwargs, message):
    model = _setup(reference)
    with pytest.raises(ValueError, match=message):
        model.train(max_epochs=1, **kwargs)


def test_unknown_loss_is_refused(reference):
    mc.MapCell.setup_anndata(reference, labels_key="cell_type")
    with pytest.raises(ValueError, match="loss must be one of"):
        mc.MapCell(reference, loss="hinge")


def test_untrained_model_cannot_annotate(reference, query):
    model = _setup(reference)
    with pytest.raises(RuntimeError, match="not trained yet"):
        mc.tl.annotate(query, model)


# ------------------------------------------------------------------ training


def test_split_keeps_calibration_apart_from_training():
    codes = np.repeat([0, 1, 2], [30, 5, 1])
    train, calibration = split_cells(codes, n_shots=10, calibration_fraction=0.2, seed=0)
    assert not set(train) & set(calibration)
    assert sorted([*train, *calibration]) == list(range(len(codes)))
    assert np.bincount(codes[train]).tolist() == [10, 4, 1]  # one cell of each type stays out


def test_n_shots_trains_on_that_many_cells_per_type(reference):
    model = mc.tl.train(reference, "cell_type", n_shots=7, **QUICK)
    counts = model.reference.cell_counts
    assert {label: c["train"] for label, c in counts.items()} == dict.fromkeys(KNOWN_TYPES, 7)
    assert all(c["calibration"] == 33 for c in counts.values())
    assert model.training_summary["n_train"] == 21


def test_seeded_training_repeats_exactly(reference):
    first = mc.tl.train(reference, "cell_type", seed=3, **QUICK)
    second = mc.tl.train(reference.copy(), "cell_type", seed=3, **QUICK)
    other = mc.tl.train(reference.copy(), "cell_type", seed=4, **QUICK)
    assert torch.equal(first.reference.prototypes, second.reference.prototypes)
    assert not torch.equal(first.reference.prototypes, other.reference.prototypes)


def test_training_does_not_change_the_users_anndata(reference):
    before_obs, before_uns = reference.obs.copy(), dict(reference.uns)
    mc.tl.train(reference, "cell_type", batch_key="donor", **QUICK)
    pd.testing.assert_frame_equal(reference.obs, before_obs)
    assert dict(reference.uns) == before_uns


def test_history_logs_siamese_metrics_not_elbo(reference):
    model = mc.tl.train(reference, "cell_type", **QUICK)
    assert {"train_loss", "validation_loss", "train_positive_distance"} <= set(model.history)
    assert not any("elbo" in key or "kl_" in key for key in model.history)
    assert len(model.history["train_loss"]) == 2


def test_early_stopping_ends_before_max_epochs(reference):
    model = mc.tl.train(
        reference,
        "cell_type",
        n_top_genes=None,
        n_latent=8,
        max_epochs=300,
        early_stopping_patience=1,
    )
    assert model.training_summary["epochs_run"] < 300


@pytest.mark.parametrize("shown", [True, False], ids=["bar", "no-bar"])
def test_progress_bar_can_be_turned_off(reference, capsys, shown):
    mc.tl.train(reference, "cell_type", progress_bar=shown, **QUICK)
    captured = capsys.readouterr()
    assert ("Epoch 2/2" in captured.out + captured.err) is shown


@pytest.mark.parametrize("loss", ["contrastive", "triplet", "supcon"])
def test_every_loss_separates_known_types(reference, query, loss):
    model = mc.tl.train(
        reference, "cell_type", loss=loss, n_top_genes=None, n_latent=8, max_epochs=8
    )
    frame = model.predict(query)
    known = query.obs["cell_type"].isin(KNOWN_TYPES).to_numpy()
    assert (
        frame["nearest"].to_numpy()[known] == query.obs["cell_type"].to_numpy()[known]
    ).mean() > 0.9


def test_batch_key_trains_with_cross_batch_pairs(reference):
    model = mc.tl.train(reference, "cell_type", batch_key="donor", **QUICK)
    assert model.training_summary["batch_key"] == "donor"


def test_several_prototypes_per_type(reference):
    model = mc.tl.train(reference, "cell_type", n_prototypes=3, **QUICK)
    assert np.bincount(model.reference.prototype_types.numpy()).tolist() == [3, 3, 3]


def test_variable_genes_are_chosen_from_the_reference(reference):
    model = mc.tl.train(reference, "cell_type", n_top_genes=30, n_latent=8, max_epochs=1)
    assert len(model.genes) == 30
    assert set(model.gene_ids) == {"symbol", "ensembl"}


def test_genes_restricts_the_model_to_shared_genes(reference, query):
    shared = query.var_names[:50]
    model = mc.tl.train(reference, "cell_type", genes=shared, **QUICK)
    assert set(model.genes) == set(shared)


def test_genes_with_no_overlap_is_refused(reference):
    with pytest.raises(ValueError, match="none of the genes= passed"):
        mc.tl.train(reference, "cell_type", genes=["NOPE1", "NOPE2"], **QUICK)


def test_latent_representation_is_unit_norm(model, query):
    embedding = model.get_latent_representation(query)
    assert embedding.shape == (query.n_obs, 8)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1, rtol=1e-5)


# ------------------------------------------------------------------ labels and novelty


def test_counts_and_their_log1p_form_get_the_same_labels(model, query):
    as_log = query.copy()
    sc.pp.normalize_total(as_log)  # scanpy's default target is the median total, not 1e4
    sc.pp.log1p(as_log)
    from_counts, from_log = model.predict(query), model.predict(as_log)
    np.testing.assert_array_equal(from_counts["label"], from_log["label"])
    np.testing.assert_allclose(from_counts["distance"], from_log["distance"], atol=1e-4)


def test_knn_mode_votes_among_reference_cells(model, query):
    frame = model.predict(query, mode="knn", k=5)
    known = query.obs["cell_type"].isin(KNOWN_TYPES).to_numpy()
    assert (
        frame["nearest"].to_numpy()[known] == query.obs["cell_type"].to_numpy()[known]
    ).mean() > 0.9
    assert frame["confidence"].between(0, 1).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "cosine"}, "mode must be one of"),
        ({"k": 0}, "k must be a positive"),
        ({"novelty_cutoff": 0}, "novelty_cutoff must be positive"),
    ],
    ids=["mode", "k", "cutoff"],
)
def test_classify_rejects_bad_options(model, query, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model.predict(query, **kwargs)


def test_novel_type_is_called_unknown(model, query):
    frame = model.predict(query)
    novel = (query.obs["cell_type"] == NOVEL_TYPE).to_numpy()
    assert (frame["label"].to_numpy()[novel] == UNKNOWN).mean() > 0.9
    assert (frame["label"].to_numpy()[~novel] == UNKNOWN).mean() < 0.2


# ------------------------------------------------------------------ new types


def _novel_cells(seed):
    cells = make_counts(seed=seed, types=(NOVEL_TYPE,), cells_per_type=20)
    cells.obs["cell_type"] = cells.obs["cell_type"].astype(str)
    return cells


def test_add_cell_types_labels_a_new_type_without_retraining(model, query):
    weights = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    added = model.add_cell_types(_novel_cells(seed=5), "cell_type")
    assert added == [NOVEL_TYPE]
    assert model.labels == [*KNOWN_TYPES, NOVEL_TYPE]
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in weights.items())
    frame = model.predict(query)
    novel = (query.obs["cell_type"] == NOVEL_TYPE).to_numpy()
    assert (frame["label"].to_numpy()[novel] == NOVEL_TYPE).mean() > 0.8
    for mode in ("prototype", "knn"):
        assert len(model.reference.thresholds[mode]) == 4


def test_add_cell_types_ignores_known_and_unknown_cells(model):
    cells = _novel_cells(seed=5)
    cells.obs.iloc[:3, 0] = "alpha"
    cells.obs.iloc[3:5, 0] = UNKNOWN
    model.add_cell_types(cells, "cell_type")
    assert (
        model.reference.cell_counts[NOVEL_TYPE]["train"]
        + model.reference.cell_counts[NOVEL_TYPE]["calibration"]
        == 15
    )


def test_add_cell_types_refuses_when_nothing_is_new(model, reference):
    before = model.labels
    with pytest.raises(ValueError, match="already a type of the model"):
        model.add_cell_types(reference, "cell_type")
    assert model.labels == before


def test_add_cell_types_leaves_the_model_unchanged_on_error(model):
    cells = _novel_cells(seed=5)
    cells.X = cells.X * -1
    prototypes = model.reference.prototypes.clone()
    with pytest.raises(ValueError, match="negative values"):
        model.add_cell_types(cells, "cell_type")
    assert model.labels == list(KNOWN_TYPES)
    assert torch.equal(model.reference.prototypes, prototypes)
