"""Experiment: what helps mapcell's labels with 5 to 20 reference cells per type.

With 5 cells per type mapcell trains on 4 and calibrates on 1, and its MLP encoder may overfit
where a linear model (CellTypist) does not. Tried: fewer epochs, more input dropout, a smaller
network, more weight decay. Each line: task, cells per type, option, macro F1 and AUROC.
Run: ``python benchmarks/experiments/few_shot_options.py [task ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from metrics import score
from tasks import few_shot, load_task

import mapcell as mc

mc.settings.verbosity = "error"
mc.settings.progress_bar = False

#: (model options, train options) per label.
OPTIONS = {
    "defaults": ({}, {}),
    "20 epochs": ({}, {"max_epochs": 20}),
    "input dropout 0.5": ({"input_dropout": 0.5}, {}),
    "hidden 64": ({"n_hidden": 64}, {}),
    "weight decay 1e-3": ({}, {"weight_decay": 1e-3}),
    "1 layer": ({"n_layers": 1}, {}),
}


def main(names):
    data = mc.datasets.shared_data_dir()
    for name in names:
        full = load_task(name, data)
        for shots in (5, 20):
            task = few_shot(full, shots)
            for label, (model_options, train_options) in OPTIONS.items():
                reference = task.reference.copy()
                batch_key = task.mapcell_options.get("batch_key")
                mc.MapCell.setup_anndata(reference, labels_key=task.ref_key, batch_key=batch_key)
                model = mc.MapCell(reference, genes=task.query.var_names, **model_options)
                model.train(seed=0, **train_options)
                frame = model.predict(task.query)
                s = score(
                    task.query.obs[task.query_key],
                    frame["label"].astype(str).to_numpy(),
                    frame["novelty"].to_numpy(),
                    task.known,
                )
                print(
                    f"{name:14s} {shots:3d} {label:18s} F1 {s['macro_f1']:.3f} "
                    f"AUROC {s['novelty_auroc']:.3f} epochs "
                    f"{model.training_summary.get('epochs_run')}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:] or ["kang", "pbmc3k_split", "10x_3p_5p", "xin_wang"])
