"""Experiment: train the metric on sub-clusters of each type, so it keeps within-type structure.

A metric trained only to separate the reference's types may collapse a new type onto the known
type it resembles (NK cells onto CD8 T on pbmc3k). Here each reference type is split by k-means
(on the reference's PCA of log1p CP10k values) into up to K sub-types of at least 30 cells,
mapcell is trained on the sub-type labels (so it must keep what tells them apart), and each
query cell's predicted sub-type is mapped back to its type. Novelty: mapcell's score, per
sub-type threshold, smoothed over query neighbourhoods as usual.
Run: ``python benchmarks/experiments/subtype_labels.py [task ...]`` (K = 1, 3, 6).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scanpy as sc
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).parents[1]))
from metrics import score
from tasks import load_task

import mapcell as mc

mc.settings.verbosity = "error"
mc.settings.progress_bar = False
MIN_CELLS = 30


def subtype_labels(task, k, seed=0):
    ref = task.shared[0].copy()  # log1p CP10k on the shared genes, same cells as task.reference
    sc.pp.scale(ref, max_value=10)
    pcs = sc.pp.pca(ref.X, n_comps=30, random_state=seed)
    labels = task.reference.obs[task.ref_key].astype(str).to_numpy()
    out = labels.astype(object).copy()
    for t in np.unique(labels):
        cells = np.flatnonzero(labels == t)
        n = min(k, len(cells) // MIN_CELLS)
        if n < 2:
            continue
        groups = KMeans(n_clusters=n, n_init=3, random_state=seed).fit_predict(pcs[cells])
        out[cells] = [f"{t}|{g}" for g in groups]
    return out


def main(names):
    data = mc.datasets.shared_data_dir()
    for name in names:
        task = load_task(name, data)
        for k in (1, 3, 6):
            reference = task.reference.copy()
            reference.obs["subtype"] = subtype_labels(task, k)
            model = mc.tl.train(
                reference, "subtype", seed=0, genes=task.query.var_names, **task.mapcell_options
            )
            frame = model.predict(task.query)
            parent = frame["label"].astype(str).str.split("|").str[0].to_numpy()
            s = score(
                task.query.obs[task.query_key], parent, frame["novelty"].to_numpy(), task.known
            )
            print(
                f"{name:16s} K {k} subtypes {len(model.labels):3d} F1 {s['macro_f1']:.3f} "
                f"AUROC {s['novelty_auroc']:.3f} known->U {s['known_unknown']:.3f} "
                f"novel->U {s['novel_unknown']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["pbmc3k_split", "kang", "xin_wang", "celseq2", "10x_3p_5p"])
