"""The tutorials run top to bottom, so they cannot rot."""

from __future__ import annotations

import runpy
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path):
    namespace = runpy.run_path(str(path), run_name="__main__")
    plt.close("all")
    # Every tutorial ends with an annotated query and the scores it reports in its text.
    assert "mapcell_label" in namespace["query"].obs
    assert namespace["scores"]["novelty_auroc"] > 0.7
