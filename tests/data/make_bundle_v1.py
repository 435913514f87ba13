"""Write ``tests/data/bundle_v1``: a tiny bundle of schema 1, kept to prove old bundles load.

The bundle in the repository was written by this script with mapcell 0.1.0, before the
weights checksum and ``about`` were added to ``mapcell.json``; ``test_bundle.py`` loads it with
the current code and checks that it annotates the query exactly as it did when it was made
(``bundle_v1_expected.json``). Keep it as it is: run with a later mapcell, this script writes
that release's format instead. For a new schema, copy the script to ``make_bundle_v2.py`` and
commit its output beside this one. It was run from the repository root as

    .venv/bin/python tests/data/make_bundle_v1.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root, for tests.conftest

import mapcell as mc  # noqa: E402
from tests.conftest import KNOWN_TYPES, make_counts  # noqa: E402

#: Small enough to keep in git (a few kilobytes), big enough to separate the synthetic types.
N_TOP_GENES, N_LATENT, N_HIDDEN, N_LAYERS, MAX_EPOCHS = 40, 4, 16, 1, 40


def main() -> None:
    """Train the tiny model, save the bundle and the annotation it gives the query."""
    mc.settings.progress_bar = False
    reference = make_counts(seed=0, types=KNOWN_TYPES)
    mc.MapCell.setup_anndata(reference, labels_key="cell_type")
    model = mc.MapCell(
        reference,
        n_latent=N_LATENT,
        n_hidden=N_HIDDEN,
        n_layers=N_LAYERS,
        n_top_genes=N_TOP_GENES,
    )
    model.train(MAX_EPOCHS, seed=0)
    model.save(HERE / "bundle_v1", overwrite=True)

    frame = mc.MapCell.load(HERE / "bundle_v1").predict(make_counts(seed=1))
    expected = {
        "label": frame["label"].astype(str).tolist(),
        "distance": [round(float(d), 6) for d in frame["distance"]],
    }
    (HERE / "bundle_v1_expected.json").write_text(json.dumps(expected), encoding="utf-8")


if __name__ == "__main__":
    main()
