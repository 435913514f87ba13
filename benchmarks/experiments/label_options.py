"""Experiment: training options against known-type macro F1 (and novelty AUROC) on every task.

Each line: one task, one option set, defaults otherwise (trained on the query's genes, seed 0).
Run: ``python benchmarks/experiments/label_options.py [task ...]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from metrics import score
from tasks import load_task

import mapcell as mc

mc.settings.verbosity = "error"
mc.settings.progress_bar = False
torch.set_num_threads(2)

OPTIONS = {
    "defaults": {},
    "triplet": {"loss": "triplet"},
    "supcon": {"loss": "supcon"},
    "all genes": {"n_top_genes": None},
    "4000 genes": {"n_top_genes": 4000},
    "3 prototypes": {"n_prototypes": 3},
    "knn mode": {},
}


def main(names):
    data = mc.datasets.shared_data_dir()
    for name in names:
        task = load_task(name, data)
        for label, options in OPTIONS.items():
            start = time.perf_counter()
            model = mc.tl.train(
                task.reference,
                task.ref_key,
                seed=0,
                genes=task.query.var_names,
                **{**task.mapcell_options, **options},
            )
            frame = model.predict(task.query, mode="knn" if label == "knn mode" else "prototype")
            s = score(
                task.query.obs[task.query_key],
                frame["label"].astype(str).to_numpy(),
                frame["novelty"].to_numpy(),
                task.known,
            )
            print(
                f"{name:16s} {label:13s} F1 {s['macro_f1']:.3f} known->Unknown "
                f"{s['known_unknown']:.3f} AUROC {s['novelty_auroc']:.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main(
        sys.argv[1:]
        or ["kang", "xin_wang", "celseq2", "dropseq_indrops", "10x_3p_5p", "pbmc3k_split"]
    )
