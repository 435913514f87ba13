"""The tutorials run top to bottom, so they cannot rot; what their text claims is checked here.

Each tutorial's figures are written as PNG files into the test's temporary folder (run with
``--basetemp=DIR`` to keep them and look at them).
"""

from __future__ import annotations

import runpy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mapcell._constants import UNKNOWN
from mapcell.datasets import shared_data_dir
from mapcell.pl._model import _type_distances

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))
#: Tutorials that read ../shared/data; they skip where it is absent.
NEEDS_SHARED_DATA = {"02_reference_and_query", "03_few_shot"}


def _check_quickstart(namespace: dict) -> None:
    query = namespace["query"]
    assert namespace["scores"]["novelty_auroc"] > 0.7
    # the text: B cells score higher than every known type; the lower cutoff makes most of
    # them Unknown at the price of a few known cells
    novelty = query.obs.groupby("bulk_labels", observed=True)["mapcell_novelty"].median()
    assert novelty.idxmax() == "CD19+ B"
    assert namespace["scores"]["novel_called_unknown"] > 0.5
    assert namespace["scores"]["known_called_unknown"] < 0.1
    assert query.obsm["X_mapcell_umap"].shape == (query.n_obs, 2)


def _check_reference_and_query(namespace: dict) -> None:
    query, first, last = namespace["query"], namespace["first_scores"], namespace["scores"]
    assert query.uns["mapcell"]["gene_overlap"]["fraction"] == 1.0
    # the text: the held-out loss is still falling when the 30 epochs end
    validation = namespace["model"].history_["validation_loss"].to_numpy().ravel()
    assert np.argmin(validation) >= len(validation) - 5
    assert first["macro_f1"] > 0.85
    assert first["novel_called_unknown"] < 0.05
    # the text: among control cells CD8 T cells score highest, control FCGR3A+ monocytes next but
    # only a little above the known types, the stimulation raises every known type's scores,
    # and stimulated B cells score like CD8 T cells; nothing reaches the default cutoff
    obs = query.obs
    median = obs.groupby(["cluster_id", "group_id"], observed=True)["mapcell_novelty"].median()
    control = median.xs("ctrl", level="group_id").sort_values(ascending=False)
    assert list(control.index[:2]) == ["CD8 T cells", "FCGR3A+ Monocytes"]
    assert control["FCGR3A+ Monocytes"] < 1.2 * control[["B cells", "CD4 T cells"]].max()
    for name in ("B cells", "CD14+ Monocytes", "CD4 T cells"):
        assert median[name, "stim"] > median[name, "ctrl"]
    assert median["B cells", "stim"] > 0.9 * median["CD8 T cells", "ctrl"]
    share = (obs["mapcell_novelty"] > 1).groupby(obs["cluster_id"], observed=True).mean()
    assert share.max() < 0.05
    # ... and at 0.45 the Unknown cells come from both new types and from stimulated B cells
    unknown = obs.loc[obs["mapcell_label"] == UNKNOWN, "type and condition"].value_counts()
    for group in ("CD8 T cells (ctrl)", "FCGR3A+ Monocytes (stim)", "B cells (stim)"):
        assert unknown[group] >= 20
    # the new types were added, and the rest of the query now gets them
    assert {"CD8 T cells", "FCGR3A+ Monocytes"} <= set(namespace["model"].labels)
    assert last["n_novel"] == 0
    assert last["macro_f1"] > 0.55
    rest = namespace["rest"].obs
    for name in ("CD8 T cells", "FCGR3A+ Monocytes"):
        called = rest.loc[rest["cluster_id"] == name, "mapcell_label"].astype(str)
        assert (called == name).mean() > 0.35
    # the text: the FCGR3A+ prototype lies next to the CD14+ one
    model = namespace["model"]
    distances = _type_distances(model)[model.labels.index("FCGR3A+ Monocytes")]
    distances[model.labels.index("FCGR3A+ Monocytes")] = np.inf
    assert model.labels[int(np.argmin(distances))] == "CD14+ Monocytes"


def _check_few_shot(namespace: dict) -> None:
    table = namespace["table"]
    assert list(table.index) == [5, 10, 20, 50]
    # the text: labels get better with more shots; the B cells rank above the known cells at
    # every size, yet no cell is Unknown at any size
    assert table["macro_f1"].iloc[-1] > 0.75
    assert table["macro_f1"].iloc[-1] > table["macro_f1"].iloc[0] + 0.1
    assert table["novelty_auroc"].min() > 0.8
    assert table["novel_called_unknown"].max() < 0.02
    assert table["known_called_unknown"].max() < 0.02
    medians = namespace["medians"]
    assert (medians["B cells (novel)"] > medians["known cells"]).all()
    assert (medians.max() < 1).all()
    # ... and with 50 cells per type most B cells take a T-cell label
    query = namespace["query"].obs
    b_labels = query.loc[query["classified"] == "B", "mapcell_label"].astype(str)
    assert b_labels.str.contains(" T").mean() > 0.5


CHECKS = {
    "01_quickstart": _check_quickstart,
    "02_reference_and_query": _check_reference_and_query,
    "03_few_shot": _check_few_shot,
}


def test_every_tutorial_has_its_checks():
    assert {path.stem for path in TUTORIALS} == set(CHECKS)


@pytest.fixture
def _one_torch_thread():
    # On 2 cores shared with anything else, torch's busy-waiting threads (one per core) made
    # these trainings ten times slower than one thread; the setting is restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("_one_torch_thread")
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    if path.stem in NEEDS_SHARED_DATA and shared_data_dir() is None:
        pytest.skip("../shared/data is not here (set MAPCELL_SHARED_DATA to its path)")
    plt.close("all")
    try:
        namespace = runpy.run_path(str(path), run_name="__main__")
        numbers = plt.get_fignums()
        for number in numbers:
            plt.figure(number).savefig(
                tmp_path / f"{path.stem}_{number:02d}.png", dpi=90, bbox_inches="tight"
            )
    finally:
        plt.close("all")
    assert len(numbers) >= 3
    CHECKS[path.stem](namespace)
    assert UNKNOWN in set(np.asarray(namespace["query"].obs["mapcell_label"].cat.categories))
