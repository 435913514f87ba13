"""Benchmark tasks over ../shared/data: a reference, a query, and the types only the query has.

Each task is loaded into a :class:`Task`: the reference and query as AnnData (values as the files
hold them, for mapcell), the same cells on the genes both share as log1p(CP10k) (for the peers,
which all see the same genes and values), and raw counts where the files have them (for scANVI).
Log data of another base or scale (the pancreas files reach 17) are brought back to ln(CP10k + 1)
on the shared genes for the peers, since CellTypist refuses anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
from scipy import sparse

from mapcell.pp._genes import gene_id_sources, normalise_gene_id
from mapcell.pp._values import detect_values, expression_source, normalised_matrix


@dataclass
class Task:
    """One reference -> query transfer."""

    name: str
    description: str
    reference: ad.AnnData
    query: ad.AnnData
    ref_key: str
    query_key: str
    mapcell_options: dict = field(default_factory=dict)
    shared: tuple[ad.AnnData, ad.AnnData] | None = None  # log1p CP10k on shared genes
    counts: tuple[ad.AnnData, ad.AnnData] | None = None  # raw counts on shared genes

    @property
    def known(self) -> list[str]:
        """Types of the reference."""
        return sorted(set(self.reference.obs[self.ref_key].astype(str)))

    @property
    def novel(self) -> list[str]:
        """Types only the query has."""
        return sorted(set(self.query.obs[self.query_key].astype(str)) - set(self.known))


#: One line per task, for the report.
DESCRIPTIONS = {
    "kang": "Kang control -> control + IFN-beta stimulated (10x); Ensembl vs symbols",
    "xin_wang": "Xin (SMARTer) -> Wang (Fluidigm C1) pancreas",
    "celseq2": "CellBench CEL-seq2: 3 cell lines -> a 5-line plate",
    "dropseq_indrops": "PBMC Drop-seq -> inDrops (Ding et al. 2020)",
    "10x_3p_5p": "PBMC 10x 3' (v1 + v2) -> 5'",
    "pbmc3k_split": "pbmc3k halves; NK and DC held out of the reference",
}


def _symbols(adata: ad.AnnData) -> np.ndarray:
    # The symbol list of a file: var_names, or a var column when var_names are Ensembl IDs.
    sources = gene_id_sources(adata.var)
    for values in sources.values():
        if not str(values[0]).upper().startswith("ENS"):
            return np.array([normalise_gene_id(v) for v in values])
    return np.array([normalise_gene_id(v) for v in sources["var_names"]])


def _prepare_shared(task: Task) -> None:
    ref_ids, query_ids = _symbols(task.reference), _symbols(task.query)
    common = sorted(set(ref_ids) & set(query_ids))
    ref_pos = {g: i for i, g in reversed(list(enumerate(ref_ids)))}
    query_pos = {g: i for i, g in reversed(list(enumerate(query_ids)))}
    ref_cols = [ref_pos[g] for g in common]
    query_cols = [query_pos[g] for g in common]
    pairs_log, pairs_counts = [], []
    for adata, cols, key in (
        (task.reference, ref_cols, task.ref_key),
        (task.query, query_cols, task.query_key),
    ):
        source = expression_source(adata)
        report = detect_values(source)
        log = normalised_matrix(source, report)[:, cols]
        if report.kind == "log1p" and log.max() > NATURAL_LOG_CP10K_CEILING:
            log = _renormalised_log(log)
        obs = adata.obs[[key]].copy()
        obs.columns = ["label"]
        obs["label"] = obs["label"].astype(str)
        pairs_log.append(
            ad.AnnData(sparse.csr_matrix(log, dtype=np.float32), obs=obs, var={"gene": common})
        )
        pairs_log[-1].var_names = common
        if report.kind == "counts":
            counts = sparse.csr_matrix(source.matrix)[:, cols]
            pairs_counts.append(ad.AnnData(counts.astype(np.float32), obs=obs.copy()))
            pairs_counts[-1].var_names = common
    task.shared = (pairs_log[0], pairs_log[1])
    task.counts = (pairs_counts[0], pairs_counts[1]) if len(pairs_counts) == 2 else None


#: Above this, log values are not ln(CP10k + 1) (CellTypist refuses them; log2 CPM reaches 17).
NATURAL_LOG_CP10K_CEILING = 9.22


def _renormalised_log(log):
    """Log values of another base or scale -> ln(CP10k + 1) on these genes, for the peers.

    The base (2 or e) is the one whose back-transformed totals vary least between cells.
    """
    dense = log.toarray() if sparse.issparse(log) else np.asarray(log)
    candidates = {base: np.power(base, dense) - 1 for base in (2.0, np.e)}
    spread = {base: lin.sum(1).std() / lin.sum(1).mean() for base, lin in candidates.items()}
    linear = candidates[min(spread, key=spread.get)]
    totals = linear.sum(1, keepdims=True)
    return sparse.csr_matrix(np.log1p(linear / np.maximum(totals, 1e-12) * 1e4))


def _read(data, path):
    return ad.read_h5ad(data / path)


def _within_split(adata, key, held_out, seed=0):
    rng = np.random.default_rng(seed)
    labels = adata.obs[key].astype(str).to_numpy()
    in_query = np.zeros(adata.n_obs, dtype=bool)
    for label in np.unique(labels):
        cells = rng.permutation(np.flatnonzero(labels == label))
        in_query[cells if label in held_out else cells[: len(cells) // 2]] = True
    return adata[~in_query].copy(), adata[in_query].copy()


def _kang(data):
    ref = _read(data, "kang2018_pbmc/kang_ctrl_8684_ensembl.h5ad")
    query = _read(data, "kang2018_pbmc/kang_ctrl_stim_1556.h5ad")
    return Task(
        "kang",
        DESCRIPTIONS["kang"],
        ref,
        query,
        "cluster_id",
        "cluster_id",
        {"batch_key": "sample_id"},
    )


def _pancreas(data):
    ref = _read(data, "pancreas_xin_wang/xin_subset.h5ad")
    query = _read(data, "pancreas_xin_wang/wang_subset.h5ad")
    return Task(
        "xin_wang",
        DESCRIPTIONS["xin_wang"],
        ref,
        query,
        "cell_type",
        "cell_type",
    )


def _cellbench(data):
    ref = _read(data, "cellbench_mixology/sc_celseq2.h5ad")
    query = _read(data, "cellbench_mixology/sc_celseq2_5cl_p1.h5ad")
    return Task(
        "celseq2",
        DESCRIPTIONS["celseq2"],
        ref,
        query,
        "cell_line_demuxlet",
        "cell_line_demuxlet",
    )


def _pbmcbench(data):
    ref = _read(data, "pbmcbench_dropseq_indrops/pbmc1_dropseq.h5ad")
    query = _read(data, "pbmcbench_dropseq_indrops/pbmc2_indrops.h5ad")
    return Task(
        "dropseq_indrops",
        DESCRIPTIONS["dropseq_indrops"],
        ref,
        query,
        "cell_type",
        "cell_type",
    )


def _chemistry(data):
    pbmc = _read(data, "pbmc_3chem/pbmcs_3chem_1200.h5ad")
    ref = pbmc[pbmc.obs["donor"].astype(str).str.startswith("3p")].copy()
    query = pbmc[pbmc.obs["donor"].astype(str) == "5p"].copy()
    return Task(
        "10x_3p_5p",
        DESCRIPTIONS["10x_3p_5p"],
        ref,
        query,
        "cell_type",
        "cell_type",
        {"batch_key": "donor"},
    )


def _pbmc3k_split(data):
    pbmc = _read(data, "pbmc3k/pbmc3k_2000hvg.h5ad")
    ref, query = _within_split(pbmc, "classified", held_out={"NK", "DC"})
    return Task(
        "pbmc3k_split",
        DESCRIPTIONS["pbmc3k_split"],
        ref,
        query,
        "classified",
        "classified",
    )


TASKS: dict[str, Callable] = {
    "kang": _kang,
    "xin_wang": _pancreas,
    "celseq2": _cellbench,
    "dropseq_indrops": _pbmcbench,
    "10x_3p_5p": _chemistry,
    "pbmc3k_split": _pbmc3k_split,
}


def load_task(name: str, data) -> Task:
    """Load task ``name`` from the shared data folder and prepare its shared-gene views."""
    task = TASKS[name](data)
    _prepare_shared(task)
    return task


def few_shot(task: Task, n_shots: int, seed: int = 0) -> Task:
    """The same task with at most ``n_shots`` reference cells per type (the query is unchanged)."""
    rng = np.random.default_rng(seed)
    labels = task.reference.obs[task.ref_key].astype(str).to_numpy()
    keep = np.sort(
        np.concatenate(
            [rng.permutation(np.flatnonzero(labels == t))[:n_shots] for t in np.unique(labels)]
        )
    )
    shared = (task.shared[0][keep].copy(), task.shared[1])
    counts = (task.counts[0][keep].copy(), task.counts[1]) if task.counts else None
    return Task(
        f"{task.name}",
        task.description,
        task.reference[keep].copy(),
        task.query,
        task.ref_key,
        task.query_key,
        dict(task.mapcell_options),
        shared,
        counts,
    )
