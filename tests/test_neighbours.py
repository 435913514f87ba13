"""Novelty judged over query neighbourhoods: the PCA, the neighbour search and their use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import mapcell as mc
from mapcell._constants import NOVELTY_NEIGHBORS, UNKNOWN
from mapcell.search._neighbours import neighbour_indices, neighbour_median, standardised_pcs
from tests.conftest import NOVEL_TYPE, make_counts

CPU = torch.device("cpu")


def _blocks(x, size):
    return lambda: (x[i : i + size] for i in range(0, len(x), size))


def test_standardised_pcs_match_a_pca_of_z_scored_genes_whatever_the_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 15)) @ rng.normal(size=(15, 15))
    x[:, 3] = 2.0  # a constant gene must not break the scaling
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    expected = PCA(n_components=5).fit_transform(z)
    for size in (7, 120):
        got = standardised_pcs(_blocks(x.astype(np.float32), size), 5, device=CPU)
        assert got.shape == (120, 5)
        signs = np.sign((got * expected).sum(0))
        np.testing.assert_allclose(got * signs, expected, atol=1e-3)


def test_standardised_pcs_keep_no_more_components_than_informative_genes():
    x = np.zeros((10, 4), dtype=np.float32)
    x[:, 0] = np.arange(10)
    assert standardised_pcs(_blocks(x, 3), 30, device=CPU).shape == (10, 1)


def test_neighbour_indices_are_exact_and_start_with_the_cell_itself():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    points[1] = points[0]  # a duplicate must not displace the cell itself
    brute = np.argsort(((points[:, None] - points[None]) ** 2).sum(-1), axis=1, kind="stable")
    for chunk in (4, 50):
        got = neighbour_indices(points, 6, device=CPU, chunk_size=chunk)
        np.testing.assert_array_equal(got[:, 0], np.arange(50))
        for row in range(50):
            assert set(got[row, 1:]) <= set(brute[row, :7])
    assert neighbour_indices(points, 500, device=CPU, chunk_size=8).shape == (50, 50)


def test_neighbour_median_takes_the_median_over_each_row():
    values = np.array([0.0, 10.0, 2.0, 4.0])
    neighbours = np.array([[0, 1, 2], [1, 2, 3], [2, 0, 0], [3, 3, 1]])
    np.testing.assert_array_equal(neighbour_median(values, neighbours), [2.0, 4.0, 0.0, 4.0])


def test_annotate_smooths_novelty_over_the_query_neighbourhood(model, query):
    mc.tl.annotate(query, model)
    obs = query.obs
    neighbours = model.query_neighbours(query)
    assert neighbours.shape == (query.n_obs, NOVELTY_NEIGHBORS)
    np.testing.assert_allclose(
        obs["mapcell_novelty"], np.median(obs["mapcell_cell_novelty"].to_numpy()[neighbours], 1)
    )
    assert query.uns["mapcell"]["params"]["novelty_neighbors"] == NOVELTY_NEIGHBORS
    unknown = obs["mapcell_label"] == UNKNOWN
    assert (obs.loc[unknown, "mapcell_novelty"] > 1).all()


def test_novelty_neighbors_zero_judges_each_cell_alone(model, query):
    mc.tl.annotate(query, model, novelty_neighbors=0)
    np.testing.assert_array_equal(query.obs["mapcell_novelty"], query.obs["mapcell_cell_novelty"])
    assert model.query_neighbours(query, 1) is None
    assert model.query_neighbours(query[:2].copy()) is None


def test_smoothing_separates_a_novel_type_better_than_single_cells(model):
    from sklearn.metrics import roc_auc_score

    # A quarter of the query is a type the model never saw, with its own marker genes.
    query = make_counts(seed=3, cells_per_type=60)
    frame = model.predict(query)
    novel = (query.obs["cell_type"] == NOVEL_TYPE).to_numpy()
    smoothed = roc_auc_score(novel, frame["novelty"])
    single = roc_auc_score(novel, frame["cell_novelty"])
    assert smoothed >= single
    assert smoothed > 0.9


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, r"novelty_neighbors must be 0 \(judge each cell alone\)"),
        (2.5, TypeError, r"novelty_neighbors must be a whole number of cells, not 2\.5"),
        (True, TypeError, r"novelty_neighbors must be a whole number"),
    ],
)
def test_bad_novelty_neighbors_is_refused_before_anything_is_written(
    model, query, value, error, match
):
    before = set(query.obs)
    with pytest.raises(error, match=match):
        mc.tl.annotate(query, model, novelty_neighbors=value)
    assert set(query.obs) == before


def test_classify_refuses_neighbours_of_another_query(model, query):
    embedding = model.get_latent_representation(query)
    with pytest.raises(ValueError, match=r"one row of cell indices per embedded cell"):
        model.classify(embedding, neighbours=np.zeros((3, 5), dtype=int))
