"""The metrics, computed once here for every method."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

UNKNOWN = "Unknown"


def score(truth, labels, novelty, known_types) -> dict[str, float]:
    """Known-type accuracy and macro F1 (Unknown is wrong), Unknown shares, AUROC, open-set F1."""
    truth = np.asarray(truth, dtype=str)
    labels = np.asarray(labels, dtype=str)
    known = np.isin(truth, list(known_types))
    unknown = labels == UNKNOWN
    present = sorted(set(truth[known]))
    open_truth = np.where(known, truth, UNKNOWN)
    open_classes = sorted(set(open_truth))
    both = known.any() and (~known).any()
    nan = float("nan")
    return {
        "accuracy": float((labels[known] == truth[known]).mean()),
        "macro_f1": float(
            f1_score(truth[known], labels[known], labels=present, average="macro", zero_division=0)
        ),
        "known_unknown": float(unknown[known].mean()),
        "novel_unknown": float(unknown[~known].mean()) if (~known).any() else nan,
        "novelty_auroc": float(roc_auc_score(~known, novelty)) if both else nan,
        "open_f1": float(
            f1_score(open_truth, labels, labels=open_classes, average="macro", zero_division=0)
        ),
    }
