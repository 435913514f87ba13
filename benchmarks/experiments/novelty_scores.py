"""Experiment: novelty scores beyond one cell's distance to its nearest prototype.

Trains mapcell once per task with defaults (on the query's genes; cached under
``$MAPCELL_EXPERIMENT_CACHE`` or /tmp/mapcell_experiments), then scores the query cells several
ways and prints the novelty AUROC and the shares called Unknown (score > 1) for each:

- ``cell``: the per-cell score mapcell gives today (distance over the type's threshold);
- ``cluster-K``: the median of ``cell`` over k-means clusters (K) of the query's own PCA;
- ``knn-median-k``: the median of ``cell`` over each cell's k nearest query cells in that PCA
  (what mapcell now does by default, entry 8), and with the labels voted among neighbours;
- ``deviation``: per query cluster, how the cluster's mean differs from the mean of the type it
  was assigned (in the reference's PCA of the model input), after removing the part of that
  deviation that another cluster assigned to another type shares (a shift of condition or lab
  moves every type alike; a new type's deviation is its own). Scaled by the type's own spread.
- combinations of the above.

Run: ``python benchmarks/experiments/novelty_scores.py [task ...]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).parents[1]))
from tasks import load_task

import mapcell as mc
from mapcell.pp._values import detect_values, expression_source, iter_model_input

mc.settings.verbosity = "error"
mc.settings.progress_bar = False
torch.set_num_threads(2)
VARIANTS = [("ref-pca", "between", 0.5)]
CACHE = Path(os.environ.get("MAPCELL_EXPERIMENT_CACHE", "/tmp/mapcell_experiments"))


def model_input(model, adata):
    source = expression_source(adata)
    report = detect_values(source)
    match = model._match(source)
    return np.concatenate([c for _, c in iter_model_input(source, report, match.index, 4096)])


def trained(task, tag=""):
    path = CACHE / f"{task.name}{tag}"
    if (path / "mapcell.json").exists():
        return mc.MapCell.load(str(path))
    model = mc.tl.train(
        task.reference, task.ref_key, seed=0, genes=task.query.var_names, **task.mapcell_options
    )
    model.save(str(path), overwrite=True)
    return model


def query_clusters(x_query, n_clusters, seed=0):
    z = (x_query - x_query.mean(0)) / (x_query.std(0) + 1e-6)
    pcs = PCA(n_components=min(30, z.shape[1] - 1), random_state=seed).fit_transform(z)
    return KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(pcs)


def query_pcs(x_query, seed=0):
    z = (x_query - x_query.mean(0)) / (x_query.std(0) + 1e-6)
    return PCA(n_components=min(30, z.shape[1] - 1), random_state=seed).fit_transform(z)


def neighbour_median(values, pcs, k):
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k).fit(pcs).kneighbors(pcs, return_distance=False)
    return np.median(values[index], axis=1)


def cluster_median(values, clusters):
    out = np.empty_like(values)
    for c in np.unique(clusters):
        out[clusters == c] = np.median(values[clusters == c])
    return out


def deviation_score(
    model,
    x_ref,
    ref_codes,
    x_query,
    nearest,
    clusters,
    space="ref-pca",
    scale="radius",
    quantile=0.9,
):
    mean, std = x_ref.mean(0), x_ref.std(0) + 1e-6
    z_ref, z_query = (x_ref - mean) / std, np.clip((x_query - mean) / std, -10, 10)
    if space == "genes":
        p_ref, p_query = z_ref, z_query
    else:
        fit_on = z_ref if space == "ref-pca" else np.concatenate([z_ref, z_query])
        pca = PCA(n_components=50, random_state=0).fit(fit_on)
        p_ref, p_query = pca.transform(z_ref), pca.transform(z_query)
    n_types = len(model.labels)
    centres = np.stack([p_ref[ref_codes == t].mean(0) for t in range(n_types)])
    spread = np.array(
        [
            np.median(np.linalg.norm(p_ref[ref_codes == t] - centres[t], axis=1))
            for t in range(n_types)
        ]
    )
    ids = np.unique(clusters)
    types, deviations = [], []
    for c in ids:
        members = clusters == c
        t = np.bincount(nearest[members], minlength=n_types).argmax()
        types.append(t)
        deviations.append(p_query[members].mean(0) - centres[t])
    types, deviations = np.array(types), np.stack(deviations)
    if scale == "between":
        # Half the way to the nearest other type's centre.
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        np.fill_diagonal(gaps, np.inf)
        spread = quantile * gaps.min(1)
    if scale == "subclusters":
        # How far a sub-population of the same type sits from its centre in the reference:
        # k-means of each type's reference cells into groups the size of the query's clusters.
        size = max(5, int(np.median(np.bincount(clusters))))
        offsets = []
        for t in range(n_types):
            cells = p_ref[ref_codes == t]
            m = max(1, len(cells) // size)
            if m < 2:
                offsets.append(np.array([np.nan]))
                continue
            groups = KMeans(n_clusters=m, n_init=2, random_state=0).fit_predict(cells)
            offsets.append(
                np.array(
                    [np.linalg.norm(cells[groups == g].mean(0) - centres[t]) for g in range(m)]
                )
            )
        pooled = np.nanquantile(np.concatenate(offsets), quantile)
        spread = np.array(
            [
                pooled if np.isnan(o).all() else max(np.quantile(o, quantile), pooled * 0.5)
                for o in offsets
            ]
        )
    score = np.empty(len(ids))
    raw = np.empty(len(ids))
    for i in range(len(ids)):
        others = types != types[i]
        raw[i] = np.linalg.norm(deviations[i]) / spread[types[i]]
        if others.any():
            residual = np.linalg.norm(deviations[others] - deviations[i], axis=1).min()
            residual = min(residual, np.linalg.norm(deviations[i]))
        else:
            residual = np.linalg.norm(deviations[i])
        score[i] = residual / spread[types[i]]
    by_cluster = dict(zip(ids, score, strict=True))
    raw_by_cluster = dict(zip(ids, raw, strict=True))
    return (
        np.array([by_cluster[c] for c in clusters]),
        np.array([raw_by_cluster[c] for c in clusters]),
    )


def report(name, label, values, novel, truth, nearest_labels):
    auroc = roc_auc_score(novel, values) if novel.any() else float("nan")
    called = np.where(values > 1, "Unknown", nearest_labels)
    known = ~novel
    f1 = f1_score(truth[known], called[known], average="macro", labels=np.unique(truth[known]))
    print(
        f"{name:14s} {label:30s} AUROC {auroc:.3f} F1 {f1:.3f} "
        f"novel>1 {(values[novel] > 1).mean() if novel.any() else float('nan'):.3f} "
        f"known>1 {(values[known] > 1).mean():.3f}",
        flush=True,
    )


def main(names):
    data = mc.datasets.shared_data_dir()
    for name in names:
        task = load_task(name, data)
        model = trained(task)
        x_ref, x_query = model_input(model, task.reference), model_input(model, task.query)
        ref_labels = task.reference.obs[task.ref_key].astype(str).to_numpy()
        ref_codes = np.array([model.labels.index(v) for v in ref_labels])
        frame = model.predict(task.query)
        nearest_labels = frame["nearest"].astype(str).to_numpy()
        nearest = np.array([model.labels.index(v) for v in nearest_labels])
        truth = task.query.obs[task.query_key].astype(str).to_numpy()
        novel = ~np.isin(truth, model.labels)
        cell = frame["novelty"].to_numpy()
        knn = model.predict(task.query, mode="knn")["novelty"].to_numpy()
        report(name, "cell", cell, novel, truth, nearest_labels)
        report(name, "cell knn", knn, novel, truth, nearest_labels)
        pcs = query_pcs(x_query)
        from sklearn.neighbors import NearestNeighbors

        for kn in (15, 30):
            index = (
                NearestNeighbors(n_neighbors=kn).fit(pcs).kneighbors(pcs, return_distance=False)
            )
            votes = np.stack([np.bincount(r, minlength=len(model.labels)) for r in nearest[index]])
            voted = np.array(model.labels)[votes.argmax(1)]
            smooth30 = neighbour_median(cell, pcs, 30)
            report(name, f"median30 + vote{kn}", smooth30, novel, truth, voted)
        for kn in (10, 20, 30, 50):
            report(
                name,
                f"knn-median-{kn}",
                neighbour_median(cell, pcs, kn),
                novel,
                truth,
                nearest_labels,
            )
        for k in (20, 50):
            clusters = query_clusters(x_query, max(2, task.query.n_obs // 30))
            report(
                name,
                "cluster-size30",
                cluster_median(cell, clusters),
                novel,
                truth,
                nearest_labels,
            )
            if os.environ.get("SMOOTH_ONLY"):
                break
            if k == 20 and os.environ.get("ONLY50"):
                continue
            clusters = query_clusters(x_query, min(k, task.query.n_obs // 10))
            smooth = cluster_median(cell, clusters)
            report(name, f"cluster-{k}", smooth, novel, truth, nearest_labels)
            for space, scale, q in VARIANTS:
                dev, raw = deviation_score(
                    model, x_ref, ref_codes, x_query, nearest, clusters, space, scale, q
                )
                tag = f"{space}-{scale[:3]}{q}-{k}"
                report(name, f"dev {tag}", dev, novel, truth, nearest_labels)
                for r in (2, 3, 4):
                    rel = dev / np.median(dev) / r
                    report(name, f"rel{r} {tag}", rel, novel, truth, nearest_labels)
                    report(
                        name,
                        f"max(cl,rel{r}) {tag}",
                        np.maximum(smooth, rel),
                        novel,
                        truth,
                        nearest_labels,
                    )
                    report(
                        name,
                        f"mean(cl,rel{r}) {tag}",
                        (smooth + rel) / 2,
                        novel,
                        truth,
                        nearest_labels,
                    )
                report(name, f"raw {tag}", raw, novel, truth, nearest_labels)
                report(
                    name,
                    f"max(cl,dev) {tag}",
                    np.maximum(smooth, dev),
                    novel,
                    truth,
                    nearest_labels,
                )
                report(
                    name, f"mean(cl,dev) {tag}", (smooth + dev) / 2, novel, truth, nearest_labels
                )
                report(
                    name,
                    f"gmean(cl,dev) {tag}",
                    np.sqrt(smooth * dev),
                    novel,
                    truth,
                    nearest_labels,
                )


if __name__ == "__main__":
    main(sys.argv[1:] or ["pbmc3k_split", "kang", "xin_wang", "celseq2"])
