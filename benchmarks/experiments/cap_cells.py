"""Experiment: train on at most N cells per type (``n_shots=N``) instead of every reference cell.

Few-shot runs on pancreas beat the full reference (NOTES entry 7); does a cap help every task?
Prints macro F1 on known types, novelty AUROC and the Unknown shares, defaults otherwise.
Run: ``python benchmarks/experiments/cap_cells.py [task ...]``.
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


def main(names, caps=(None, 50, 100, 200)):
    data = mc.datasets.shared_data_dir()
    for name in names:
        task = load_task(name, data)
        for cap in caps:
            start = time.perf_counter()
            model = mc.tl.train(
                task.reference,
                task.ref_key,
                seed=0,
                n_shots=cap,
                genes=task.query.var_names,
                **task.mapcell_options,
            )
            frame = model.predict(task.query)
            scores = score(
                task.query.obs[task.query_key],
                frame["label"].astype(str).to_numpy(),
                frame["novelty"].to_numpy(),
                task.known,
            )
            print(
                f"{name:14s} cap {cap!s:5s} "
                + " ".join(f"{k} {v:.3f}" for k, v in scores.items())
                + f" ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["kang", "xin_wang", "celseq2", "pbmc3k_split"])
