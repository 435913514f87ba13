"""Quick check of mapcell on the three shared transfer tasks of the core issue.

Run: ``python benchmarks/quick_tasks.py [--n-shots 20] [--loss contrastive]``. Prints, per task,
accuracy and macro F1 on known types, novelty AUROC and the shares called Unknown.
"""

from __future__ import annotations

import argparse
import time

import anndata as ad

import mapcell as mc


def tasks(data):
    kang_ref = ad.read_h5ad(data / "kang2018_pbmc/kang_ctrl_8684_ensembl.h5ad")
    kang_query = ad.read_h5ad(data / "kang2018_pbmc/kang_ctrl_stim_1556.h5ad")
    yield "kang", kang_ref, kang_query, "cluster_id", "cluster_id", {"batch_key": "sample_id"}
    xin = ad.read_h5ad(data / "pancreas_xin_wang/xin_subset.h5ad")
    wang = ad.read_h5ad(data / "pancreas_xin_wang/wang_subset.h5ad")
    yield "xin_wang", xin, wang, "cell_type", "cell_type", {"genes": wang.var_names}
    cel3 = ad.read_h5ad(data / "cellbench_mixology/sc_celseq2.h5ad")
    cel5 = ad.read_h5ad(data / "cellbench_mixology/sc_celseq2_5cl_p1.h5ad")
    yield "celseq2_3to5", cel3, cel5, "cell_line_demuxlet", "cell_line_demuxlet", {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-shots", type=int)
    parser.add_argument("--loss", default="contrastive")
    parser.add_argument("--mode", default="prototype")
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--quantile", type=float, default=0.95)
    parser.add_argument("--shared-genes", action="store_true", help="train on genes the query has")
    args = parser.parse_args()
    mc.settings.verbosity = "warning"
    mc.settings.progress_bar = False
    data = mc.datasets.shared_data_dir()
    for name, ref, query, ref_key, query_key, options in tasks(data):
        if args.no_batch:
            options.pop("batch_key", None)
        if args.shared_genes:
            options["genes"] = query.var_names
        start = time.perf_counter()
        model = mc.tl.train(
            ref,
            ref_key,
            n_shots=args.n_shots,
            loss=args.loss,
            calibration_quantile=args.quantile,
            **options,
        )
        fit = time.perf_counter() - start
        mc.tl.annotate(query, model, mode=args.mode)
        scores = mc.tl.evaluate(query, query_key)
        print(
            f"{name:14s} fit {fit:5.1f}s epochs {model.training_summary['epochs_run']:3d} "
            + " ".join(f"{k}={v:.3f}" for k, v in scores.items() if isinstance(v, float)),
            flush=True,
        )


if __name__ == "__main__":
    main()
