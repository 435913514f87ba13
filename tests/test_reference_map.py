"""The reference map: fitted once, kept in the bundle without pickle, and queries placed on it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mapcell as mc
from mapcell._constants import BUNDLE_CONFIG_FILE, BUNDLE_WEIGHTS_FILE
from mapcell.hub import BundleError, ReferenceMap
from mapcell.tl._reference_map import even_subsample
from tests.conftest import KNOWN_TYPES, make_counts


@pytest.fixture(scope="module")
def _mapped(_trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("mapped") / "tiny"
    _trained_model.save(path)
    model = mc.MapCell.load(path)
    mc.tl.fit_reference_map(model, make_counts(seed=0, types=KNOWN_TYPES), seed=0)
    return model


@pytest.fixture
def mapped(_mapped, tmp_path):
    """The tiny model with a map of its reference (fitted once; a fresh copy per test)."""
    _mapped.save(tmp_path / "mapped")
    return mc.MapCell.load(tmp_path / "mapped")


def test_fit_keeps_every_reference_cell_and_its_type(mapped, reference):
    reference_map = mapped.reference_map
    assert isinstance(reference_map, ReferenceMap)
    assert reference_map.n_cells == reference.n_obs
    assert reference_map.labels == sorted(KNOWN_TYPES)
    labels = np.asarray(reference_map.labels)[reference_map.types.numpy()]
    np.testing.assert_array_equal(labels, reference.obs["cell_type"].astype(str))
    assert reference_map.coordinates.shape == (reference.n_obs, 2)
    assert reference_map.coordinates.dtype == torch.float32
    assert reference_map.embedding.shape == (reference.n_obs, 8)
    assert reference_map.k == 15


def test_a_reference_cell_lands_on_its_own_map_position(mapped, reference):
    mc.tl.map_to_reference(reference, mapped)
    placed = reference.obsm["X_mapcell_umap"]
    assert placed.dtype == np.float32
    np.testing.assert_allclose(placed, mapped.reference_map.coordinates.numpy(), atol=1e-3)


def test_placement_is_the_distance_weighted_mean_of_the_nearest_map_cells(mapped, query):
    mc.tl.embed(query, mapped)
    mc.tl.map_to_reference(query, mapped, use_rep="X_mapcell", k=4)
    cells = mapped.reference_map.embedding.numpy()
    coordinates = mapped.reference_map.coordinates.numpy()
    for row in (0, 77, query.n_obs - 1):
        distance = np.linalg.norm(cells - query.obsm["X_mapcell"][row], axis=1)
        nearest = np.argsort(distance)[:4]
        weight = 1 / distance[nearest]
        expected = (weight[:, None] * coordinates[nearest]).sum(0) / weight.sum()
        np.testing.assert_allclose(query.obsm["X_mapcell_umap"][row], expected, rtol=1e-4)
    assert query.uns["mapcell_umap"]["params"] == {
        "k": 4,
        "n_reference_cells": mapped.reference_map.n_cells,
    }


def test_embedding_here_or_from_obsm_gives_the_same_places(mapped, query):
    embedded = mc.tl.map_to_reference(query, mapped, copy=True)
    mc.tl.annotate(query, mapped)
    mc.tl.map_to_reference(query, mapped, use_rep="X_mapcell")
    np.testing.assert_allclose(
        embedded.obsm["X_mapcell_umap"], query.obsm["X_mapcell_umap"], atol=1e-5
    )


def test_copy_leaves_the_input_alone(mapped, query):
    placed = mc.tl.map_to_reference(query, mapped, copy=True)
    assert "X_mapcell_umap" in placed.obsm
    assert "X_mapcell_umap" not in query.obsm
    assert "mapcell_umap" not in query.uns


def test_docstring_lists_every_field_map_to_reference_writes(mapped, query):
    mc.tl.map_to_reference(query, mapped, key_added="mc")
    documented = set(
        re.findall(r'``adata\.(?:obs|obsm|uns)\["([^"]+)"\]``', mc.tl.map_to_reference.__doc__)
    )
    assert documented == {"X_mapcell_umap", "mapcell_umap"}
    assert "X_mc_umap" in query.obsm
    assert "mc_umap" in query.uns


def test_the_map_is_capped_and_spread_evenly_over_types(model, reference):
    mc.tl.fit_reference_map(model, reference, max_cells=50, seed=0)
    reference_map = model.reference_map
    assert reference_map.n_cells == 50
    assert sorted(np.bincount(reference_map.types.numpy()).tolist()) == [16, 17, 17]
    assert reference_map.params["n_cells_available"] == reference.n_obs


def test_even_subsample_gives_small_types_all_their_cells():
    codes = np.repeat([0, 1, 2], [5, 100, 1000])
    chosen = even_subsample(codes, 61, seed=0)
    assert len(chosen) == 61
    assert np.bincount(codes[chosen]).tolist() == [5, 28, 28]
    assert len(np.unique(chosen)) == 61
    np.testing.assert_array_equal(even_subsample(codes[:50], 61, seed=0), np.arange(50))


def test_without_adata_the_map_shows_the_cells_the_model_trained_on(model):
    mc.tl.fit_reference_map(model, seed=0)
    assert model.reference_map.n_cells == len(model.reference.reference_embedding)


def test_bundle_round_trip_keeps_the_map(mapped, query, tmp_path):
    before = mc.tl.map_to_reference(query, mapped, copy=True).obsm["X_mapcell_umap"]
    mapped.save(tmp_path / "again")

    config = json.loads((tmp_path / "again" / BUNDLE_CONFIG_FILE).read_text())
    assert config["reference_map"]["k"] == 15
    assert config["reference_map"]["n_cells"] == mapped.reference_map.n_cells
    keys = set(load_file(tmp_path / "again" / BUNDLE_WEIGHTS_FILE))
    assert {key for key in keys if key.startswith("reference_map.")} == {
        "reference_map.embedding",
        "reference_map.coordinates",
        "reference_map.types",
    }

    loaded = mc.MapCell.load(tmp_path / "again")
    for name in ("embedding", "coordinates", "types"):
        torch.testing.assert_close(
            getattr(loaded.reference_map, name), getattr(mapped.reference_map, name)
        )
    assert loaded.reference_map.labels == mapped.reference_map.labels
    after = mc.tl.map_to_reference(query, str(tmp_path / "again"), copy=True)
    np.testing.assert_array_equal(after.obsm["X_mapcell_umap"], before)


def test_a_bundle_without_a_map_loads_without_one(model):
    assert model.reference_map is None
    with pytest.raises(ValueError, match=r"no reference map; fit one with mc\.tl\.fit_"):
        mc.tl.map_to_reference(make_counts(seed=1), model)


def test_a_map_that_does_not_fit_its_arrays_is_refused(mapped, tmp_path):
    mapped.save(tmp_path / "damaged")
    path = tmp_path / "damaged" / BUNDLE_CONFIG_FILE
    config = json.loads(path.read_text())
    config["reference_map"]["n_cells"] += 1
    path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"reference map in this bundle is damaged: .*shape"):
        mc.MapCell.load(tmp_path / "damaged")


def test_the_map_stays_small(mapped, tmp_path):
    mapped.save(tmp_path / "small")
    tensors = load_file(tmp_path / "small" / BUNDLE_WEIGHTS_FILE)
    size = sum(t.numel() * t.element_size() for k, t in tensors.items() if "reference_map" in k)
    # embedding (8 floats), 2 coordinates and a type code per cell, nothing else
    assert size == mapped.reference_map.n_cells * (8 * 4 + 2 * 4 + 8)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_cells": 10}, ValueError, r"max_cells must be at least 2 \* n_neighbors"),
        ({"k": 0}, ValueError, r"k must be a positive number of map cells"),
        ({"labels_key": "tissue"}, KeyError, r"labels_key 'tissue' is not a column"),
    ],
    ids=["max_cells", "k", "labels_key"],
)
def test_fit_refuses_bad_options(model, reference, options, error, match):
    with pytest.raises(error, match=match):
        mc.tl.fit_reference_map(model, reference, **options)
    assert model.reference_map is None


def test_fit_needs_more_cells_than_neighbours(model, reference):
    with pytest.raises(ValueError, match=r"needs more than n_neighbors=15 cells, but there are 9"):
        mc.tl.fit_reference_map(model, reference[:9])


def test_fit_refuses_cells_without_a_label(model, reference):
    reference.obs["cell_type"] = reference.obs["cell_type"].astype(object)
    reference.obs.iloc[3, 0] = None
    with pytest.raises(ValueError, match=r"1 cells without a label; drop them"):
        mc.tl.fit_reference_map(model, reference)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"use_rep": "X_pca"}, KeyError, r"use_rep='X_pca' is not in adata\.obsm"),
        ({"use_rep": "X_wrong"}, ValueError, r"made by another model: pass use_rep=None"),
        ({"k": -1}, ValueError, r"k must be a positive number of map cells"),
    ],
    ids=["absent", "wrong-width", "k"],
)
def test_map_to_reference_refuses_bad_options(mapped, query, options, error, match):
    query.obsm["X_wrong"] = np.zeros((query.n_obs, 3), dtype=np.float32)
    with pytest.raises(error, match=match):
        mc.tl.map_to_reference(query, mapped, **options)
    assert "X_mapcell_umap" not in query.obsm
