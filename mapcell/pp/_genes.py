"""Match a dataset's genes to a model's genes, by symbol or Ensembl ID, whichever they share."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mapcell._constants import MIN_GENE_OVERLAP
from mapcell._logging import logger
from mapcell._warnings import GeneOverlapWarning, warn

GeneIdKind = Literal["ensembl", "symbol"]

_ENSEMBL_GENE = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"\.\d+$")
#: A ``var`` column is a candidate gene identifier when this share of its values is distinct.
_MIN_DISTINCT_SHARE = 0.9
VAR_NAMES = "var_names"


def normalise_gene_id(gene_id: str) -> str:
    """Upper-case, strip spaces, drop an Ensembl version (``ENSG...1.5`` -> ``ENSG...1``)."""
    gene_id = str(gene_id).strip().upper()
    if _ENSEMBL_GENE.match(gene_id):
        gene_id = _VERSION_SUFFIX.sub("", gene_id)
    return gene_id


def gene_id_kind(gene_ids: Sequence[str]) -> GeneIdKind:
    """``"ensembl"`` when most identifiers are Ensembl gene IDs, else ``"symbol"``."""
    gene_ids = list(gene_ids)
    if not gene_ids:
        return "symbol"
    n_ensembl = sum(bool(_ENSEMBL_GENE.match(str(g).strip())) for g in gene_ids)
    return "ensembl" if n_ensembl > len(gene_ids) / 2 else "symbol"


def gene_id_sources(var: pd.DataFrame) -> dict[str, pd.Index]:
    """Every place in ``var`` that holds gene identifiers: ``var_names``, then string columns.

    A column qualifies when its values are strings and nearly all distinct, as gene symbols or
    IDs are; columns of numbers, booleans or repeated categories do not.
    """
    sources = {VAR_NAMES: pd.Index(var.index.astype(str))}
    for column in var.columns:
        values = var[column]
        if not (
            pd.api.types.is_object_dtype(values)
            or isinstance(values.dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(values)
        ):
            continue
        values = values.dropna().astype(str)
        if len(values) and values.nunique() >= _MIN_DISTINCT_SHARE * len(var):
            sources[f"var[{column!r}]"] = pd.Index(var[column].astype(str))
    return sources


def reference_gene_ids(var: pd.DataFrame) -> dict[GeneIdKind, list[str]]:
    """The identifiers a model keeps for its genes: one list per kind found in ``var``.

    ``var_names`` come first; a column adds the kind that ``var_names`` lack (for example
    symbols in ``var['symbol']`` beside Ensembl ``var_names``).
    """
    ids: dict[GeneIdKind, list[str]] = {}
    for values in gene_id_sources(var).values():
        kind = gene_id_kind(values)
        if kind not in ids:
            ids[kind] = [str(v) for v in values]
    return ids


@dataclass(frozen=True)
class GeneMatch:
    """How a dataset's genes line up with a model's genes.

    Attributes
    ----------
    index
        For each model gene, its column in the data, or -1 when the data lack it.
    model_kind
        The kind of model identifier that matched (``"symbol"`` or ``"ensembl"``).
    data_source
        Where the matching identifiers are in the data: ``"var_names"`` or ``"var['col']"``.
    """

    index: np.ndarray
    model_kind: GeneIdKind
    data_source: str

    @property
    def n_model_genes(self) -> int:
        """Number of genes the model expects."""
        return len(self.index)

    @property
    def n_found(self) -> int:
        """Number of model genes present in the data."""
        return int((self.index >= 0).sum())

    @property
    def fraction(self) -> float:
        """Share of model genes present in the data."""
        return self.n_found / max(self.n_model_genes, 1)

    def summary(self) -> dict:
        """A JSON-friendly record, kept in ``adata.uns`` by :func:`mapcell.tl.annotate`."""
        return {
            "n_model_genes": self.n_model_genes,
            "n_found": self.n_found,
            "fraction": round(self.fraction, 4),
            "model_id_kind": self.model_kind,
            "data_source": self.data_source,
        }


def _positions(model_ids: Sequence[str], data_ids: pd.Index) -> np.ndarray:
    lookup: dict[str, int] = {}
    for position, gene in enumerate(data_ids):
        lookup.setdefault(normalise_gene_id(gene), position)  # first of duplicated symbols
    return np.array([lookup.get(normalise_gene_id(g), -1) for g in model_ids], dtype=np.int64)


def match_genes(
    var: pd.DataFrame,
    model_gene_ids: Mapping[GeneIdKind, Sequence[str]],
    *,
    gene_key: str | None = None,
    where: str = "adata",
) -> GeneMatch:
    """Find the data's column for each model gene.

    Parameters
    ----------
    var
        The data's gene table (``adata.var``, or ``adata.raw.var``).
    model_gene_ids
        The model's genes, one identifier list per kind (:func:`reference_gene_ids`).
    gene_key
        A ``var`` column holding the identifiers to match. By default ``var_names`` and every
        identifier-like column are tried against every kind the model knows, case-insensitively,
        and the pairing that matches most genes wins.
    where
        How to name the data in messages (``"adata"`` or ``"adata.raw"``).

    Returns
    -------
    The match. Logs the overlap as a percentage; warns with :class:`GeneOverlapWarning` below
    80% and raises :class:`ValueError` when no gene matches.
    """
    sources = gene_id_sources(var)
    if gene_key is not None:
        if gene_key not in var.columns:
            msg = (
                f"gene_key={gene_key!r} is not a column of {where}.var; its columns are "
                f"{list(var.columns)}; omit gene_key to match var_names and columns by themselves"
            )
            raise KeyError(msg)
        candidates = {f"var[{gene_key!r}]": pd.Index(var[gene_key].astype(str))}
    else:
        candidates = sources

    scores = {
        (kind, source): _positions(ids, data_ids)
        for kind, ids in model_gene_ids.items()
        for source, data_ids in candidates.items()
    }
    (kind, source), index = max(scores.items(), key=lambda item: (item[1] >= 0).sum())
    match = GeneMatch(index=index, model_kind=kind, data_source=source)

    if match.n_found == 0:
        raise ValueError(_no_overlap_message(match, model_gene_ids, sources, gene_key, where))

    logger.info(
        "    %d of %d model genes (%.1f%%) found in %s.%s, matched as %s",
        match.n_found,
        match.n_model_genes,
        100 * match.fraction,
        where,
        source,
        kind,
    )
    if match.fraction < MIN_GENE_OVERLAP:
        warn(
            f"only {match.n_found} of {match.n_model_genes} model genes "
            f"({100 * match.fraction:.1f}%) were found in {where}.{source}; the other "
            f"{match.n_model_genes - match.n_found} are filled with zeros, which can shift "
            "labels and novelty scores. Check that the data cover the model's genes, or train "
            "the reference on the genes both share (mc.tl.train(..., genes=query.var_names)).",
            GeneOverlapWarning,
        )
    return match


def _no_overlap_message(match, model_gene_ids, sources, gene_key, where) -> str:
    examples = "; ".join(
        f"{kind} like {', '.join(ids[:3])}" for kind, ids in model_gene_ids.items()
    )
    searched = ", ".join(
        f"{where}.{s}" for s in (sources if gene_key is None else [match.data_source])
    )
    message = f"none of the {match.n_model_genes} model genes ({examples}) are in {searched}"
    if gene_key is not None:
        found = {
            source: max(
                int((_positions(ids, data_ids) >= 0).sum()) for ids in model_gene_ids.values()
            )
            for source, data_ids in sources.items()
        }
        best = max(found, key=found.get)
        if found[best]:
            fix = "omit gene_key" if best == VAR_NAMES else f"pass gene_key={best[4:-1]}"
            return f"{message}; {found[best]} of them match {where}.{best}: {fix}"
    return (
        f"{message}. Is this the same species and a gene table with symbols or Ensembl IDs? "
        "Put identifiers of the model's kind in var_names or a var column (gene_key=...)"
    )
