"""Experiment: a type-deviation score per query neighbourhood, beside mapcell's smoothed score.

For each query cell: the mean, in the reference's PCA of the model input, of the cell and its
29 nearest query cells (found in the query's own PCA, as for mapcell's smoothing); its deviation
from the centre of the type mapcell assigned; minus the nearest deviation of a neighbourhood
assigned to *another* type (a condition or lab shift moves every type alike; a new type's
deviation is its own); over the type's spread. Printed beside mapcell's scores and combinations.
Run: ``python benchmarks/experiments/neighbourhood_deviation.py [task ...]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from novelty_scores import model_input, trained
from tasks import few_shot, load_task

import mapcell as mc

mc.settings.verbosity = "error"
mc.settings.progress_bar = False


def deviations(model, task):
    x_ref, x_query = model_input(model, task.reference), model_input(model, task.query)
    codes = np.array([model.labels.index(v) for v in task.reference.obs[task.ref_key].astype(str)])
    mean, std = x_ref.mean(0), x_ref.std(0) + 1e-6
    pca = PCA(n_components=50, random_state=0).fit((x_ref - mean) / std)
    p_ref = pca.transform((x_ref - mean) / std)
    p_query = pca.transform(np.clip((x_query - mean) / std, -10, 10))
    n_types = len(model.labels)
    centres = np.stack([p_ref[codes == t].mean(0) for t in range(n_types)])
    radius = np.array(
        [np.median(np.linalg.norm(p_ref[codes == t] - centres[t], axis=1)) for t in range(n_types)]
    )
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(gaps, np.inf)
    frame = model.predict(task.query)
    nearest = np.array([model.labels.index(v) for v in frame["nearest"].astype(str)])
    neighbours = model.query_neighbours(task.query)
    local = p_query[neighbours].mean(1)
    delta = local - centres[nearest]
    d = torch.cdist(torch.as_tensor(delta), torch.as_tensor(delta)).numpy()
    d[nearest[:, None] == nearest[None]] = np.inf
    residual = np.minimum(d.min(1), np.linalg.norm(delta, axis=1))
    # Direction only: the part of a deviation no other type's deviation of comparable size
    # points along (a shift may move types by different amounts).
    size = np.linalg.norm(delta, axis=1)
    unit = delta / np.maximum(size, 1e-12)[:, None]
    along = delta @ unit.T
    allowed = (nearest[:, None] != nearest[None]) & (size[None] >= 0.5 * size[:, None])
    best = np.where(allowed, np.clip(along, 0, None), 0).max(1)
    projected = np.sqrt(np.clip(size**2 - best**2, 0, None))
    return (
        frame,
        residual / radius[nearest],
        residual / (0.5 * gaps.min(1)[nearest]),
        projected / (0.5 * gaps.min(1)[nearest]),
    )


def main(names):
    data = mc.datasets.shared_data_dir()
    for name in names:
        task = load_task(name, data)
        shots = int(os.environ.get("SHOTS", 0))
        if shots:
            task = few_shot(task, shots)
        model = trained(task, f"_{shots}" if shots else "")
        frame, by_radius, by_gap, by_direction = deviations(model, task)
        truth = task.query.obs[task.query_key].astype(str).to_numpy()
        novel = ~np.isin(truth, model.labels)
        if not novel.any():  # no new type: only the share of known cells past 1 can be read
            novel[0] = True
        smooth = frame["novelty"].to_numpy()
        for label, values in (
            ("smoothed", smooth),
            ("dev/radius", by_radius),
            ("dev/gap", by_gap),
            ("max(sm, dev/gap)", np.maximum(smooth, by_gap)),
            ("mean(sm, dev/gap)", (smooth + by_gap) / 2),
            ("gmean(sm, dev/gap)", np.sqrt(smooth * by_gap)),
            ("gmean(sm, dev/radius)", np.sqrt(smooth * by_radius)),
            ("direction/gap", by_direction),
            ("mean(sm, direction/gap)", (smooth + by_direction) / 2),
            ("max(sm, direction/gap)", np.maximum(smooth, by_direction)),
            ("gmean(sm, direction/gap)", np.sqrt(smooth * by_direction)),
        ):
            called = np.where(values > 1, "Unknown", frame["nearest"].astype(str).to_numpy())
            present = sorted(set(truth[~novel]))
            f1 = f1_score(truth[~novel], called[~novel], labels=present, average="macro")
            print(
                f"{name:14s} {label:24s} AUROC {roc_auc_score(novel, values):.3f} F1 {f1:.3f} "
                f"novel>1 {(values[novel] > 1).mean():.3f} "
                f"known>1 {(values[~novel] > 1).mean():.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["kang", "pbmc3k_split", "xin_wang", "celseq2"])
