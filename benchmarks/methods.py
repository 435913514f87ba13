"""mapcell and its peers behind one interface: ``run(task) -> Prediction``.

Every peer sees the same cells, on the genes reference and query share, as log1p(CP10k) (or raw
counts, for scANVI). Defaults are the peers' documented ones; where a peer needed a wrap to run
on current library versions, its docstring says what and why.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse

UNKNOWN = "Unknown"


@dataclass
class Prediction:
    """Per query cell: a label (``"Unknown"`` for rejected cells) and a novelty score."""

    labels: np.ndarray
    novelty: np.ndarray
    fit_seconds: float
    predict_seconds: float


def _dense(x) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def _timed(fit, predict):
    start = time.perf_counter()
    state = fit()
    middle = time.perf_counter()
    labels, novelty = predict(state)
    end = time.perf_counter()
    return Prediction(
        np.asarray(labels, dtype=object),
        np.asarray(novelty, dtype=float),
        middle - start,
        end - middle,
    )


def run_mapcell(task, **options) -> Prediction:
    """mapcell with its defaults, on the files' own values and genes (it matches them itself)."""
    import mapcell as mc

    kwargs = {**task.mapcell_options, **options}
    if "genes" not in kwargs:
        kwargs["genes"] = task.query.var_names  # train on the genes the query has

    def fit():
        return mc.tl.train(task.reference, task.ref_key, seed=0, **kwargs)

    def predict(model):
        frame = model.predict(task.query)
        return frame["label"].astype(str).to_numpy(), frame["novelty"].to_numpy()

    return _timed(fit, predict)


def run_celltypist(task) -> Prediction:
    """CellTypist 1.7: its own ``train`` and ``annotate``, Unassigned under probability 0.5.

    Wraps: CellTypist 1.7.1 builds ``LogisticRegression(multi_class='ovr')``, which scikit-learn
    1.8 removed; the wrap drops that argument (so the model is multinomial). In "prob match"
    mode CellTypist cuts "Unassigned" to the length of the longest label, so the decision is read
    from its probability matrix instead (max probability under 0.5 -> Unknown).
    """
    import importlib

    import celltypist
    from sklearn.linear_model import LogisticRegression

    celltypist_train = importlib.import_module("celltypist.train")  # the module, not the function

    def logistic_regression(*args, multi_class=None, **kwargs):
        return LogisticRegression(*args, **kwargs)  # multi_class is gone from scikit-learn 1.8

    ref, query = task.shared

    def fit():
        original = celltypist_train.LogisticRegression
        celltypist_train.LogisticRegression = logistic_regression
        try:
            return celltypist.train(ref, labels="label", check_expression=False, n_jobs=1)
        finally:
            celltypist_train.LogisticRegression = original

    def predict(model):
        result = celltypist.annotate(query, model=model, mode="prob match", p_thres=0.5)
        probability = result.probability_matrix
        best = probability.to_numpy().max(axis=1)
        labels = np.where(best >= 0.5, probability.idxmax(axis=1).to_numpy(), UNKNOWN)
        return labels, 1 - best

    return _timed(fit, predict)


def run_svm(task) -> Prediction:
    """Linear SVM with calibrated probabilities, rejecting under 0.7 (Abdelaal et al. 2019)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    ref, query = task.shared
    labels = ref.obs["label"].to_numpy()
    folds = int(min(3, np.unique(labels, return_counts=True)[1].min()))

    def fit():
        return CalibratedClassifierCV(LinearSVC(), cv=max(folds, 2)).fit(_dense(ref.X), labels)

    def predict(model):
        probability = model.predict_proba(_dense(query.X))
        best = probability.max(axis=1)
        return np.where(best >= 0.7, model.classes_[probability.argmax(axis=1)], UNKNOWN), 1 - best

    return _timed(fit, predict)


def run_knn(task, k: int = 10) -> Prediction:
    """kNN vote (k=10) in the reference's PCA (50 components); Unknown when under half agree.

    Novelty score: the mean distance to the k nearest reference cells.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    ref, query = task.shared
    labels = ref.obs["label"].to_numpy()

    def fit():
        pca = PCA(n_components=min(50, ref.n_obs - 1, ref.n_vars), random_state=0).fit(
            _dense(ref.X)
        )
        return pca, NearestNeighbors(n_neighbors=min(k, ref.n_obs)).fit(
            pca.transform(_dense(ref.X))
        )

    def predict(state):
        pca, index = state
        distance, neighbours = index.kneighbors(pca.transform(_dense(query.X)))
        votes = labels[neighbours]
        winner, share = [], []
        for row in votes:
            names, counts = np.unique(row, return_counts=True)
            winner.append(names[counts.argmax()])
            share.append(counts.max() / len(row))
        share = np.asarray(share)
        return np.where(share > 0.5, winner, UNKNOWN), distance.mean(axis=1)

    return _timed(fit, predict)


def run_centroid(task, cutoff: float = 0.7, n_features: int = 500) -> Prediction:
    """scmap-cluster-like: cosine similarity to type centroids on 500 variable genes, cut 0.7."""
    ref, query = task.shared
    labels = ref.obs["label"].to_numpy()

    def fit():
        x = _dense(ref.X)
        features = np.argsort(x.var(axis=0))[::-1][:n_features]
        types = np.unique(labels)
        centroids = np.stack([x[labels == t][:, features].mean(axis=0) for t in types])
        return features, types, centroids

    def predict(state):
        features, types, centroids = state
        q = _dense(query.X)[:, features]
        similarity = (q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-12)) @ (
            centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        ).T
        best = similarity.max(axis=1)
        return np.where(best >= cutoff, types[similarity.argmax(axis=1)], UNKNOWN), 1 - best

    return _timed(fit, predict)


#: scVI's training is bounded by this many steps (its default, up to 400 epochs, would take
#: about 15 minutes on the full Kang reference on 2 CPU cores); smaller references keep
#: scvi-tools' own default epochs.
SCVI_STEP_BUDGET = 7000
#: Query epochs of the scArches surgery, as in scvi-tools' scArches tutorial.
QUERY_EPOCHS = 100


def _scvi_epochs(n_cells: int) -> int:
    from scvi.model._utils import get_max_epochs_heuristic

    steps_per_epoch = max(1, math.ceil(0.9 * n_cells / 128))  # train_size 0.9, batch 128
    return min(get_max_epochs_heuristic(n_cells), max(100, SCVI_STEP_BUDGET // steps_per_epoch))


def run_scanvi(task) -> Prediction:
    """scVI -> scANVI on the reference counts, scArches surgery on the query; Unknown under 0.5.

    scVI: scvi-tools' default epochs (400 up to 20,000 cells), bounded by
    :data:`SCVI_STEP_BUDGET` steps for large references (the full Kang reference gets about 100
    epochs); scANVI: its own default after a pretrained scVI (at most 10 epochs); query: 100
    epochs without weight decay, as the scArches tutorial does. Novelty score: 1 - the highest
    class probability.
    """
    import scvi

    ref, query = task.counts

    def fit():
        scvi.settings.seed = 0
        reference = ref.copy()
        scvi.model.SCVI.setup_anndata(reference)
        vae = scvi.model.SCVI(
            reference,
            n_layers=2,
            encode_covariates=True,
            deeply_inject_covariates=False,
            use_layer_norm="both",
            use_batch_norm="none",
        )
        vae.train(max_epochs=_scvi_epochs(reference.n_obs), enable_progress_bar=False)
        scanvi = scvi.model.SCANVI.from_scvi_model(
            vae, labels_key="label", unlabeled_category="unlabelled_"
        )
        scanvi.train(enable_progress_bar=False)  # scvi-tools' default epochs
        return scanvi

    def predict(scanvi):
        target = query.copy()
        target.obs["label"] = "unlabelled_"
        model = scvi.model.SCANVI.load_query_data(target, scanvi)
        model.train(
            max_epochs=QUERY_EPOCHS, plan_kwargs={"weight_decay": 0.0}, enable_progress_bar=False
        )
        probability = model.predict(soft=True)
        best = probability.to_numpy().max(axis=1)
        return np.where(best >= 0.5, probability.idxmax(axis=1).to_numpy(), UNKNOWN), 1 - best

    return _timed(fit, predict)


METHODS = {
    "mapcell": run_mapcell,
    "CellTypist": run_celltypist,
    "SVM (reject < 0.7)": run_svm,
    "kNN on PCA": run_knn,
    "scmap-like centroid": run_centroid,
    "scANVI + scArches": run_scanvi,
}
