from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from mapcell._constants import DEFAULT_KEY_ADDED, UNKNOWN


def evaluate(
    adata: ad.AnnData,
    true_key: str,
    *,
    key_added: str = DEFAULT_KEY_ADDED,
    known_types: Sequence[str] | None = None,
) -> dict[str, float]:
    """Score an annotation against ground truth.

    Cells whose true type the model knows are "known"; the others are "novel" and should be
    called Unknown.

    Parameters
    ----------
    adata
        Annotated by :func:`mapcell.tl.annotate`.
    true_key
        ``obs`` column with the true types.
    key_added
        The ``key_added`` of the annotation.
    known_types
        Types the model knows; by default the model's labels recorded in ``adata.uns[key_added]``.

    Returns
    -------
    A dict: ``accuracy`` and ``macro_f1`` on known cells (Unknown counts as wrong; F1 over the
    known types present), ``known_called_unknown`` and ``novel_called_unknown`` (shares),
    ``novelty_auroc`` (novel vs known cells ranked by the novelty score; NaN without both),
    ``n_known`` and ``n_novel``. Nothing is written to ``adata``.
    """
    label_key, novelty_key = f"{key_added}_label", f"{key_added}_novelty"
    if label_key not in adata.obs or novelty_key not in adata.obs:
        msg = (
            f"adata.obs has no {label_key!r}; run mc.tl.annotate(adata, model, "
            f"key_added={key_added!r}) first"
        )
        raise KeyError(msg)
    if true_key not in adata.obs:
        msg = (
            f"true_key {true_key!r} is not a column of adata.obs; the columns are "
            f"{list(adata.obs.columns)}"
        )
        raise KeyError(msg)
    if known_types is None:
        known_types = list(adata.uns.get(key_added, {}).get("model", {}).get("labels", []))
        if not known_types:
            msg = f"adata.uns[{key_added!r}] does not list the model's labels; pass known_types="
            raise ValueError(msg)

    truth = adata.obs[true_key].astype(str).to_numpy()
    predicted = adata.obs[label_key].astype(str).to_numpy()
    novelty = adata.obs[novelty_key].to_numpy(dtype=float)
    known = np.isin(truth, list(known_types))
    called_unknown = predicted == UNKNOWN

    present = sorted(set(truth[known]))
    both = known.any() and (~known).any()
    return {
        "accuracy": float((predicted[known] == truth[known]).mean())
        if known.any()
        else float("nan"),
        "macro_f1": float(
            f1_score(
                truth[known], predicted[known], labels=present, average="macro", zero_division=0
            )
        )
        if known.any()
        else float("nan"),
        "known_called_unknown": float(called_unknown[known].mean())
        if known.any()
        else float("nan"),
        "novel_called_unknown": float(called_unknown[~known].mean())
        if (~known).any()
        else float("nan"),
        "novelty_auroc": float(roc_auc_score(~known, novelty)) if both else float("nan"),
        "n_known": int(known.sum()),
        "n_novel": int((~known).sum()),
    }
