"""The reference map as a bundle keeps it: three arrays and a small JSON field, no pickle.

:func:`mapcell.tl.fit_reference_map` builds a :class:`ReferenceMap` and
:func:`mapcell.tl.map_to_reference` places query cells on it; this module only says how the map
is written into a bundle and read back, and checks what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: Every tensor of the map is stored in ``model.safetensors`` under a key with this prefix.
TENSOR_PREFIX = "reference_map."
#: The JSON field of ``mapcell.json`` that describes the map.
CONFIG_FIELD = "reference_map"
_TENSORS = ("embedding", "coordinates", "types")


@dataclass
class ReferenceMap:
    """A 2-D map of reference cells, kept with the model so queries can be drawn on it.

    Attributes
    ----------
    embedding
        The cells' mapcell embedding (cells x ``n_latent``, float32).
    coordinates
        Their position on the map (cells x 2, float32): a UMAP of ``embedding``.
    types
        Their type, as codes into ``labels`` (int64).
    labels
        The names of the types.
    k
        Reference cells whose positions a query cell's position is averaged from.
    params
        How the map was made (UMAP settings, seed, how many cells there were to choose from).
    """

    embedding: torch.Tensor
    coordinates: torch.Tensor
    types: torch.Tensor
    labels: list[str]
    k: int
    params: dict = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        """Number of reference cells on the map."""
        return len(self.embedding)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The arrays, under their bundle keys."""
        return {
            f"{TENSOR_PREFIX}{name}": getattr(self, name).detach().cpu().contiguous()
            for name in _TENSORS
        }

    def config(self) -> dict:
        """The JSON field: ``k``, ``n_cells``, ``labels`` and ``params``."""
        return {
            "k": int(self.k),
            "n_cells": self.n_cells,
            "labels": list(self.labels),
            "params": dict(self.params),
        }

    def __repr__(self) -> str:
        return f"ReferenceMap({self.n_cells} cells, {len(self.labels)} types, k={self.k})"


def read_reference_map(config: dict, tensors: dict[str, torch.Tensor], n_latent: int):
    """The map kept in a bundle, or None when the bundle has none; checked before it is built.

    Raises :class:`~mapcell.hub.BundleError` when the JSON field and the arrays disagree.
    """
    from mapcell.hub._bundle import BundleError

    if CONFIG_FIELD not in config:
        return None
    described = config[CONFIG_FIELD]
    problem = _problem(described, tensors, n_latent)
    if problem:
        msg = (
            f"the reference map in this bundle is damaged: {problem}; load it elsewhere and "
            "fit the map again (mc.tl.fit_reference_map), or remove the reference_map field"
        )
        raise BundleError(msg)
    return ReferenceMap(
        embedding=tensors[f"{TENSOR_PREFIX}embedding"],
        coordinates=tensors[f"{TENSOR_PREFIX}coordinates"],
        types=tensors[f"{TENSOR_PREFIX}types"].long(),
        labels=[str(label) for label in described["labels"]],
        k=int(described["k"]),
        params=dict(described.get("params", {})),
    )


def _problem(described, tensors: dict[str, torch.Tensor], n_latent: int) -> str | None:
    if not isinstance(described, dict) or not all(
        key in described for key in ("k", "n_cells", "labels")
    ):
        return f"the JSON field {CONFIG_FIELD!r} must hold k, n_cells and labels"
    n_cells, k, labels = described["n_cells"], described["k"], described["labels"]
    if not (isinstance(n_cells, int) and n_cells > 0 and isinstance(k, int) and k > 0):
        return "k and n_cells must be positive integers"
    if not isinstance(labels, list) or not labels:
        return "labels must be a non-empty list"
    expected = {"embedding": (n_cells, n_latent), "coordinates": (n_cells, 2), "types": (n_cells,)}
    for name, shape in expected.items():
        tensor = tensors.get(f"{TENSOR_PREFIX}{name}")
        if tensor is None:
            return f"the tensor {TENSOR_PREFIX}{name} is missing"
        if tuple(tensor.shape) != shape:
            return f"{TENSOR_PREFIX}{name} has shape {tuple(tensor.shape)}, expected {shape}"
    for name in ("embedding", "coordinates"):
        tensor = tensors[f"{TENSOR_PREFIX}{name}"]
        if tensor.dtype != torch.float32 or not bool(torch.isfinite(tensor).all()):
            return f"{TENSOR_PREFIX}{name} must hold finite float32 values"
    codes = tensors[f"{TENSOR_PREFIX}types"]
    if codes.is_floating_point() or int(codes.min()) < 0 or int(codes.max()) >= len(labels):
        return f"{TENSOR_PREFIX}types must be integer codes of the {len(labels)} labels"
    return None
