"""Experiment: add an unsupervised novelty score (kNN distance in reference PCA) to mapcell's.

For each task: train mapcell with defaults; then, on the model's own input genes, standardise
with the reference mean/std, fit PCA (50) on the training cells, and score every cell by its mean
distance to the 10 nearest training cells. Thresholds per type (the 0.99 quantile over held-out
reference cells of that type) turn both scores into ratios. Prints AUROC and Unknown shares for the
supervised score, the unsupervised score, and their max.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).parents[1]))
from tasks import load_task

import mapcell as mc
from mapcell.model._training import split_cells
from mapcell.pp._values import detect_values, expression_source, iter_model_input

mc.settings.verbosity = "error"
mc.settings.progress_bar = False
torch.set_num_threads(1)


def model_input(model, adata):
    source = expression_source(adata)
    report = detect_values(source)
    match = model._match(source)
    x = np.concatenate([c for _, c in iter_model_input(source, report, match.index, 4096)])
    mean, std = model.encoder.gene_mean.numpy(), model.encoder.gene_std.numpy()
    return np.clip((x - mean) / std, -10, 10)


def main(names):
    data = mc.datasets.shared_data_dir()
    for name in names:
        task = load_task(name, data)
        model = mc.tl.train(
            task.reference,
            task.ref_key,
            seed=0,
            genes=task.query.var_names,
            **task.mapcell_options,
        )
        labels = task.reference.obs[task.ref_key].astype(str).to_numpy()
        codes = np.array([model.labels.index(v) for v in labels])
        train, heldout = split_cells(codes, n_shots=None, calibration_fraction=0.2, seed=0)
        x_ref, x_query = model_input(model, task.reference), model_input(model, task.query)
        pca = PCA(n_components=min(50, len(train) - 1), random_state=0).fit(x_ref[train])
        index = NearestNeighbors(n_neighbors=10).fit(pca.transform(x_ref[train]))
        held_distance = index.kneighbors(pca.transform(x_ref[heldout]))[0].mean(1)
        query_distance = index.kneighbors(pca.transform(x_query))[0].mean(1)
        frame = model.predict(task.query)
        nearest = np.array([model.labels.index(v) for v in frame["nearest"].astype(str)])
        thresholds = np.array(
            [
                np.quantile(held_distance[codes[heldout] == t], 0.99)
                for t in range(len(model.labels))
            ]
        )
        unsupervised = query_distance / thresholds[nearest]
        supervised = frame["novelty"].to_numpy()
        truth = task.query.obs[task.query_key].astype(str).to_numpy()
        novel = ~np.isin(truth, model.labels)
        for label, values in (
            ("supervised", supervised),
            ("unsupervised", unsupervised),
            ("max", np.maximum(supervised, unsupervised)),
            ("product", np.sqrt(supervised * unsupervised)),
        ):
            auroc = roc_auc_score(novel, values) if novel.any() else float("nan")
            print(
                f"{name:14s} {label:12s} AUROC {auroc:.3f} "
                f"novel>1 {(values[novel] > 1).mean():.3f} "
                f"known>1 {(values[~novel] > 1).mean():.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["pbmc3k_split", "kang", "xin_wang", "celseq2"])
