"""Shared fixtures: tiny synthetic data, scanpy's pbmc68k_reduced, and one tiny trained model.

Session-scoped objects are built once; tests receive copies, so no test can change another's data.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import mapcell as mc
from mapcell.datasets import shared_data_dir

N_GENES, N_MARKERS, CELLS_PER_TYPE = 120, 15, 40
TYPES = ("alpha", "beta", "gamma", "delta")
KNOWN_TYPES = TYPES[:3]
NOVEL_TYPE = TYPES[3]


def make_counts(seed: int = 0, types=TYPES, cells_per_type: int = CELLS_PER_TYPE) -> ad.AnnData:
    """Poisson counts; each type expresses its own block of marker genes 8-fold higher."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(2021).gamma(2.0, 1.0, N_GENES)  # shared by every seed
    rows, labels = [], []
    for index, name in enumerate(TYPES):
        if name not in types:
            continue
        rate = base.copy()
        rate[index * N_MARKERS : (index + 1) * N_MARKERS] *= 8
        size = rng.uniform(0.6, 1.6, (cells_per_type, 1))
        rows.append(rng.poisson(rate * size))
        labels += [name] * cells_per_type
    genes = [f"GENE{i:04d}" for i in range(N_GENES)]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(labels),
            "donor": pd.Categorical(rng.choice(["d1", "d2"], len(labels))),
        }
    )
    obs.index = [f"cell{seed}_{i}" for i in range(len(labels))]
    var = pd.DataFrame({"ensembl": [f"ENSG{i:011d}" for i in range(N_GENES)]}, index=genes)
    return ad.AnnData(sparse.csr_matrix(np.vstack(rows).astype(np.float32)), obs=obs, var=var)


@pytest.fixture(autouse=True)
def _quiet_settings():
    mc.settings.progress_bar = False
    mc.settings.verbosity = "warning"
    yield
    mc.settings.progress_bar = True
    mc.settings.verbosity = "info"


@pytest.fixture
def reference() -> ad.AnnData:
    """Counts of the three known types (40 cells each)."""
    return make_counts(seed=0, types=KNOWN_TYPES)


@pytest.fixture
def query() -> ad.AnnData:
    """Counts of all four types, from another seed; delta is novel to the reference."""
    return make_counts(seed=1)


@pytest.fixture(scope="session")
def _trained_model() -> mc.MapCell:
    mc.settings.progress_bar = False
    return mc.tl.train(
        make_counts(seed=0, types=KNOWN_TYPES),
        "cell_type",
        n_top_genes=None,
        n_latent=8,
        max_epochs=15,
        seed=0,
    )


@pytest.fixture
def model(_trained_model, tmp_path_factory) -> mc.MapCell:
    """A tiny trained model (a fresh load of its bundle, so tests may change it freely)."""
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    _trained_model.save(path)
    return mc.MapCell.load(path)


@pytest.fixture(scope="session")
def _pbmc() -> ad.AnnData:
    return mc.datasets.pbmc68k_reduced()


@pytest.fixture
def pbmc(_pbmc) -> ad.AnnData:
    """scanpy's pbmc68k_reduced with log1p values in X (700 cells, 765 genes)."""
    return _pbmc.copy()


@pytest.fixture(scope="session")
def shared_data():
    """The shared benchmark data folder; tests that need it skip when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is not here (set MAPCELL_SHARED_DATA to its path)")
    return path
