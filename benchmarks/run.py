"""Run mapcell and its peers on every task and write ``docs/benchmarks.md`` and a figure.

Usage: ``python benchmarks/run.py`` (all tasks, all methods, full and few-shot references), or
``--tasks kang xin_wang --methods mapcell CellTypist --shots full 20`` for a part. Tables and the
figure are produced from the measured results, never typed by hand; the raw results also go to
``benchmarks/results/results.csv``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
import warnings
from datetime import date
from importlib.metadata import version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from methods import METHODS
from metrics import score
from tasks import TASKS, few_shot, load_task

import mapcell as mc

ROOT = Path(__file__).parents[1]
SHOTS = ("full", 5, 10, 20)
VERSIONED = ("mapcell", "torch", "scvi-tools", "scanpy", "anndata", "scikit-learn", "celltypist")


def run(task_names, method_names, shots, csv: Path | None = None) -> pd.DataFrame:
    """Every (task, reference size, method) once; a row of scores and seconds each.

    With ``csv``, the rows so far are rewritten there after every method, so a run that is
    stopped part-way keeps what it measured (``--report-only`` turns such a file into the report).
    """
    data = mc.datasets.shared_data_dir()
    if data is None:
        sys.exit("../shared/data is missing; set MAPCELL_SHARED_DATA to the datasets folder")
    rows = []
    for task_name in task_names:
        task = load_task(task_name, data)
        for n_shots in shots:
            current = task if n_shots == "full" else few_shot(task, int(n_shots))
            for method in method_names:
                if method == "scANVI + scArches" and current.counts is None:
                    continue  # scANVI models counts; these files hold log values only
                start = time.perf_counter()
                try:
                    prediction = METHODS[method](current)
                except Exception as error:  # a peer that fails is reported, not hidden
                    print(
                        f"{task_name:16s} {n_shots!s:5s} {method:22s} FAILED: {error}", flush=True
                    )
                    rows.append(
                        {
                            "task": task_name,
                            "shots": str(n_shots),
                            "method": method,
                            "error": str(error)[:200],
                        }
                    )
                    continue
                scores = score(
                    current.query.obs[current.query_key],
                    prediction.labels,
                    prediction.novelty,
                    current.known,
                )
                rows.append(
                    {
                        "task": task_name,
                        "shots": str(n_shots),
                        "method": method,
                        **scores,
                        "fit_s": prediction.fit_seconds,
                        "predict_s": prediction.predict_seconds,
                    }
                )
                if csv is not None:
                    pd.DataFrame(rows).to_csv(csv, index=False)
                print(
                    f"{task_name:16s} {n_shots!s:5s} {method:22s} "
                    f"F1 {scores['macro_f1']:.3f} AUROC {scores['novelty_auroc']:.3f} "
                    f"({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    return pd.DataFrame(rows)


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[["method", *columns]].copy()
    for column in columns:
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    header = "| " + " | ".join(["method", *columns]) + " |"
    rule = "|" + "---|" * (len(columns) + 1)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_report(results: pd.DataFrame, seconds: float) -> None:
    """docs/benchmarks.md with one table per task, a few-shot table, versions and a figure."""
    took = "" if seconds != seconds else f", {seconds / 60:.1f} minutes in all"  # NaN: rebuilt
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `python benchmarks/run.py` on {date.today().isoformat()} "
        f"({platform.machine()}, Python {platform.python_version()}{took}). "
        "Every number below was measured by that script; nothing is typed by hand.",
        "",
        "Metrics (computed once, in `benchmarks/metrics.py`): `accuracy` and `macro_f1` on "
        "query cells of types the reference knows (Unknown counts as wrong); `known_unknown` "
        "and `novel_unknown`, the shares of known and of novel cells called Unknown; "
        "`novelty_auroc`, novel vs known cells ranked by each method's novelty score; "
        "`open_f1`, macro F1 with Unknown as one more class; fit and predict seconds.",
        "",
        "Peers and their wraps are described in `benchmarks/methods.py`: CellTypist 1.7.1 needed "
        "a wrap (scikit-learn 1.8 removed `LogisticRegression(multi_class=...)`, so the model is "
        "multinomial; its Unassigned call is read from the probability matrix, because its "
        "'prob match' mode truncates the label); scANVI's epochs are capped (100 / 20 / 100) "
        "to fit "
        "2 CPU cores.",
        "",
    ]
    metrics = [
        "accuracy",
        "macro_f1",
        "known_unknown",
        "novel_unknown",
        "novelty_auroc",
        "open_f1",
        "fit_s",
        "predict_s",
    ]
    full = results[results["shots"] == "full"]
    for task_name, frame in full.groupby("task", sort=False):
        lines += [f"## {task_name}", "", _table(frame, metrics), ""]
    few = results[results["shots"] != "full"]
    if len(few):
        pivot = few.pivot_table(index=["task", "method"], columns="shots", values="macro_f1")
        pivot = pivot.reindex(columns=[c for c in ("5", "10", "20") if c in pivot.columns])
        lines += [
            "## Few-shot references: macro F1 on known types",
            "",
            "| task | method | " + " | ".join(f"{c} cells/type" for c in pivot.columns) + " |",
            "|---|---|" + "---|" * len(pivot.columns),
        ]
        for (task_name, method), row in pivot.iterrows():
            lines.append(
                f"| {task_name} | {method} | " + " | ".join(f"{v:.3f}" for v in row) + " |"
            )
        lines.append("")
    errors = (
        results[results.get("error", pd.Series(dtype=str)).notna()] if "error" in results else []
    )
    if len(errors):
        lines += (
            ["## Failures", ""]
            + [f"- {r.task} / {r.shots} / {r.method}: {r.error}" for r in errors.itertuples()]
            + [""]
        )
    lines += ["![mapcell and peers](benchmarks.png)", "", "## Versions", ""]
    lines += [f"- {name} {_version(name)}" for name in VERSIONED]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _figure(results)


def _version(name: str) -> str:
    try:
        return version(name)
    except Exception:
        return "not installed"


def _figure(results: pd.DataFrame) -> None:
    full = results[(results["shots"] == "full") & results["macro_f1"].notna()]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric, title in (
        (axes[0], "macro_f1", "macro F1 on known types"),
        (axes[1], "novelty_auroc", "novelty AUROC (novel vs known)"),
    ):
        table = full.pivot_table(index="task", columns="method", values=metric)
        table.plot.bar(ax=ax, width=0.8, legend=ax is axes[1])
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "benchmarks.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--shots", nargs="+", default=[str(s) for s in SHOTS])
    parser.add_argument("--no-report", action="store_true", help="print and save the CSV only")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from benchmarks/results/results.csv, run nothing",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "results.csv",
        help="where the raw results go (default: %(default)s)",
    )
    args = parser.parse_args()
    shots = [s if s == "full" else int(s) for s in args.shots]

    mc.settings.verbosity = "error"
    mc.settings.progress_bar = False
    for name in ("scvi", "lightning", "lightning.pytorch", "celltypist"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    if args.report_only:
        write_report(pd.read_csv(args.csv, dtype={"shots": str}), seconds=float("nan"))
        return
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run(args.tasks, args.methods, shots, csv=args.csv)
    results.to_csv(args.csv, index=False)
    if not args.no_report:
        write_report(results, time.perf_counter() - start)
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
