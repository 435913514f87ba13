"""Preprocessing: gene matching and the values mapcell's models take."""

from mapcell.pp._genes import GeneMatch, gene_id_kind, match_genes, reference_gene_ids
from mapcell.pp._values import ValueReport, detect_values, expression_source, iter_model_input

__all__ = [
    "GeneMatch",
    "ValueReport",
    "detect_values",
    "expression_source",
    "gene_id_kind",
    "iter_model_input",
    "match_genes",
    "reference_gene_ids",
]
