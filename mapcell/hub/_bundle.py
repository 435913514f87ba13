"""The bundle: a folder with ``model.safetensors``, ``mapcell.json`` and a ``README.md`` card.

No pickle anywhere: weights and arrays are safetensors, everything else is JSON, and loading
checks the schema version, the files and every shape before it builds anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mapcell._constants import (
    BUNDLE_CARD_FILE,
    BUNDLE_CONFIG_FILE,
    BUNDLE_SCHEMA_VERSION,
    BUNDLE_WEIGHTS_FILE,
)
from mapcell._logging import logger

#: Arrays kept beside the encoder's weights, with the JSON field that gives their first dimension.
_REFERENCE_TENSORS = ("prototypes", "prototype_types", "reference_embedding", "reference_types")
_ENCODER_PREFIX = "encoder."
_REQUIRED_FIELDS = (
    "schema_version",
    "genes",
    "labels",
    "preprocessing",
    "encoder",
    "loss",
    "search",
)
_REQUIRED_NESTED = {
    "genes": ("names", "ids"),
    "encoder": ("n_input", "n_latent", "n_hidden", "n_layers", "dropout", "input_dropout"),
    "loss": ("loss",),
    "search": ("thresholds", "n_prototypes", "n_reference_cells"),
}
_MODES = ("prototype", "knn")


class BundleError(ValueError):
    """A bundle is missing, damaged or too new; the message says which, and the fix."""


def package_versions() -> dict[str, str]:
    """Versions of mapcell and the libraries its results depend on."""
    versions = {}
    for name in ("mapcell", "torch", "scvi-tools", "anndata", "scanpy", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _history(model) -> dict[str, list[float]]:
    history = getattr(model, "history_", None) or {}
    out = {}
    for key in ("train_loss", "validation_loss"):
        if key in history:
            out[key] = [float(v) for v in np.asarray(history[key]).ravel()]
    return out


def bundle_config(model) -> dict:
    """Everything but the arrays, as the JSON document of the bundle."""
    state = model.reference
    return {
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "genes": {
            "names": list(model.genes),
            "ids": {k: list(v) for k, v in model.gene_ids.items()},
        },
        "labels": list(state.labels),
        "preprocessing": dict(model.preprocessing),
        "encoder": dict(model.encoder.config),
        "loss": dict(model.loss_config),
        "setup": dict(model.setup),
        "search": {
            "thresholds": {
                mode: [float(t) for t in values] for mode, values in state.thresholds.items()
            },
            "n_prototypes": len(state.prototypes),
            "n_reference_cells": len(state.reference_embedding),
        },
        "cell_counts": state.cell_counts,
        "calibration": state.calibration,
        "training": model.training_summary,
        "history": _history(model),
        "versions": package_versions(),
    }


def save_bundle(model, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to the folder ``path`` atomically; see :meth:`mapcell.MapCell.save`."""
    model._check_trained()
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True to replace it, or choose another path"
        raise FileExistsError(msg)
    if path.exists() and not path.is_dir():
        msg = f"{path} exists and is a file, not a bundle folder; remove it or choose another path"
        raise FileExistsError(msg)

    state = model.reference
    tensors = {
        f"{_ENCODER_PREFIX}{k}": v.detach().cpu().contiguous()
        for k, v in model.encoder.state_dict().items()
    }
    tensors.update(
        {name: getattr(state, name).detach().cpu().contiguous() for name in _REFERENCE_TENSORS}
    )
    config = bundle_config(model)

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(tensors, staging / BUNDLE_WEIGHTS_FILE, metadata={"format": "mapcell"})
        (staging / BUNDLE_CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
        (staging / BUNDLE_CARD_FILE).write_text(model_card(config), encoding="utf-8")
        _replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved MapCell bundle to %s", path)
    return path


def _replace_dir(staging: Path, path: Path) -> None:
    # A rename is atomic; an old bundle is moved aside, and removed only once the new one is in.
    if not path.exists():
        staging.rename(path)
        return
    backup = staging.with_name(staging.name + ".old")
    path.rename(backup)
    try:
        staging.rename(path)
    except BaseException:
        backup.rename(path)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def model_card(config: dict) -> str:
    """A short Markdown card a person reads: types, genes, training and calibration."""
    counts = pd.DataFrame(config["cell_counts"]).T.reindex(config["labels"])
    rows = "\n".join(
        f"| {label} | {int(row['train'])} | {int(row['calibration'])} |"
        for label, row in counts.iterrows()
    )
    training = config.get("training", {})
    genes, preprocessing = config["genes"], config["preprocessing"]
    thresholds = config["search"]["thresholds"]["prototype"]
    accuracy = config.get("calibration", {}).get("prototype", {}).get("heldout_accuracy")
    accuracy_line = f"{accuracy:.3f}" if isinstance(accuracy, float) else "not measured"
    return f"""# MapCell reference

A Siamese reference model for annotating single-cell RNA-seq data with
[mapcell](https://github.com/mapcell/mapcell). Load it with `mc.MapCell.load(path)` and annotate
with `mc.tl.annotate(adata, model)`.

## Cell types

| cell type | training cells | held-out (calibration) cells |
|---|---|---|
{rows}

## Genes and input

{len(genes["names"])} genes (identifiers: {", ".join(genes["ids"])}), for example
{", ".join(genes["names"][:5])}. Input: {preprocessing["reference_values"]} in the reference,
brought to log1p of counts per {preprocessing["target_sum"]:g}.

## Training

Loss: {config["loss"]["loss"]}; encoder: {config["encoder"]["n_input"]} genes ->
{config["encoder"]["n_latent"]} dimensions, {config["encoder"]["n_layers"]} hidden layers of
{config["encoder"]["n_hidden"]}. Cells per type for training (n_shots): {training.get("n_shots")};
epochs run: {training.get("epochs_run")}; seed: {training.get("seed")}.

## Calibration

Per-type thresholds are the {training.get("calibration_quantile")} quantile of held-out reference
cells' distances to their type (median threshold {np.median(thresholds):.3f}). Held-out accuracy of
the nearest prototype: {accuracy_line}.

## Intended use and limits

Label cells of the tissue and species of this reference; cells of types it never saw should come
out "Unknown", but a new type close to a known one can still take that type's label. Check gene
overlap (logged at annotation) and look at the novelty scores before trusting the labels.

Versions: {", ".join(f"{k} {v}" for k, v in config["versions"].items())}.
"""


def _read_config(path: Path) -> dict:
    if not path.exists():
        msg = f"no MapCell bundle at {path}: the folder does not exist"
        raise FileNotFoundError(msg)
    if not path.is_dir():
        msg = f"{path} is a file; a MapCell bundle is a folder written by model.save()"
        raise BundleError(msg)
    missing = [
        name for name in (BUNDLE_CONFIG_FILE, BUNDLE_WEIGHTS_FILE) if not (path / name).exists()
    ]
    if missing:
        msg = (
            f"{path} is not a complete MapCell bundle: {', '.join(missing)} missing; save "
            "the model again"
        )
        raise BundleError(msg)
    try:
        config = json.loads((path / BUNDLE_CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        msg = f"{path / BUNDLE_CONFIG_FILE} is not valid JSON ({error}); the bundle is damaged"
        raise BundleError(msg) from error
    if not isinstance(config, dict):
        msg = f"{path / BUNDLE_CONFIG_FILE} does not hold a MapCell configuration (a JSON object)"
        raise BundleError(msg)
    schema = config.get("schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        msg = (
            f"{path / BUNDLE_CONFIG_FILE} has no valid schema_version; it is not a MapCell bundle"
        )
        raise BundleError(msg)
    if schema > BUNDLE_SCHEMA_VERSION:
        msg = (
            f"{path} uses bundle schema {schema}, newer than this mapcell reads "
            f"({BUNDLE_SCHEMA_VERSION}); upgrade mapcell (pip install -U mapcell)"
        )
        raise BundleError(msg)
    absent = [key for key in _REQUIRED_FIELDS if key not in config]
    absent += [
        f"{outer}.{inner}"
        for outer, inners in _REQUIRED_NESTED.items()
        if outer in config
        for inner in inners
        if not isinstance(config[outer], dict) or inner not in config[outer]
    ]
    if absent:
        msg = f"{path / BUNDLE_CONFIG_FILE} lacks the fields {absent}; the bundle is damaged"
        raise BundleError(msg)
    return config


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path / BUNDLE_WEIGHTS_FILE)
    except (SafetensorError, OSError, ValueError) as error:
        msg = f"{path / BUNDLE_WEIGHTS_FILE} cannot be read ({error}); it is truncated or damaged"
        raise BundleError(msg) from error


def _check_shapes(config: dict, tensors: dict[str, torch.Tensor], path: Path) -> None:
    n_genes, n_latent = len(config["genes"]["names"]), config["encoder"]["n_latent"]
    n_prototypes, n_cells = config["search"]["n_prototypes"], config["search"]["n_reference_cells"]
    expected = {
        "prototypes": (n_prototypes, n_latent),
        "prototype_types": (n_prototypes,),
        "reference_embedding": (n_cells, n_latent),
        "reference_types": (n_cells,),
        "encoder.gene_mean": (n_genes,),
    }
    for name, shape in expected.items():
        if name not in tensors:
            msg = f"{path / BUNDLE_WEIGHTS_FILE} lacks the tensor {name!r}; the bundle is damaged"
            raise BundleError(msg)
        if tuple(tensors[name].shape) != shape:
            msg = (
                f"{path / BUNDLE_WEIGHTS_FILE}: {name} has shape {tuple(tensors[name].shape)}, "
                f"but {BUNDLE_CONFIG_FILE} implies {shape}; weights and configuration do not "
                "belong together"
            )
            raise BundleError(msg)
    n_types = len(config["labels"])
    thresholds = config["search"]["thresholds"]
    for mode in _MODES:
        values = (
            np.asarray(thresholds.get(mode, []), dtype=float)
            if isinstance(thresholds, dict)
            else []
        )
        if len(values) != n_types or not np.all(np.isfinite(values) & (values > 0)):
            msg = (
                f"{BUNDLE_CONFIG_FILE}: search.thresholds.{mode} must hold {n_types} positive "
                "numbers, one per label; the bundle is damaged"
            )
            raise BundleError(msg)
    for name in ("prototypes", "reference_embedding", "encoder.gene_mean"):
        if not tensors[name].is_floating_point() or tensors[name].dtype != torch.float32:
            msg = (
                f"{path / BUNDLE_WEIGHTS_FILE}: {name} is {tensors[name].dtype}, not "
                "float32; the bundle is damaged"
            )
            raise BundleError(msg)
    for name in ("prototype_types", "reference_types"):
        codes = tensors[name]
        if codes.is_floating_point() or (
            codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= n_types)
        ):
            msg = (
                f"{path / BUNDLE_WEIGHTS_FILE}: {name} must be integer codes of the "
                f"{n_types} labels; the bundle is damaged"
            )
            raise BundleError(msg)


def load_bundle(path: str | os.PathLike):
    """Read a bundle folder into a :class:`mapcell.MapCell`; see :meth:`mapcell.MapCell.load`."""
    from mapcell.model._mapcell import MapCell, ReferenceState

    path = Path(path)
    config = _read_config(path)
    tensors = _read_tensors(path)
    _check_shapes(config, tensors, path)

    encoder_config = dict(config["encoder"])
    loss = dict(config["loss"])
    model = MapCell(
        registry={"field_registries": {}},
        n_latent=encoder_config["n_latent"],
        loss=loss.pop("loss"),
        **loss,
    )
    from mapcell.nn import SiameseEncoder, SiameseModule

    encoder = SiameseEncoder(**encoder_config)
    weights = {
        k[len(_ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_ENCODER_PREFIX)
    }
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        msg = (
            f"{path / BUNDLE_WEIGHTS_FILE} does not fit the encoder in "
            f"{BUNDLE_CONFIG_FILE}: {error}"
        )
        raise BundleError(msg) from error
    encoder.eval()
    model.module = SiameseModule(encoder, model.loss_config["loss"], model._loss_params())
    model.genes = list(config["genes"]["names"])
    model.gene_ids = {kind: list(ids) for kind, ids in config["genes"]["ids"].items()}
    model.preprocessing = dict(config["preprocessing"])
    model.setup = dict(config.get("setup", {}))
    model.training_summary = dict(config.get("training", {}))
    model.history_ = {
        key: pd.DataFrame({key: values}) for key, values in config.get("history", {}).items()
    }
    model.reference = ReferenceState(
        labels=list(config["labels"]),
        prototypes=tensors["prototypes"],
        prototype_types=tensors["prototype_types"].long(),
        thresholds={
            mode: np.asarray(values, dtype=np.float32)
            for mode, values in config["search"]["thresholds"].items()
        },
        reference_embedding=tensors["reference_embedding"],
        reference_types=tensors["reference_types"].long(),
        cell_counts=config.get("cell_counts", {}),
        calibration=config.get("calibration", {}),
    )
    model.is_trained_ = True
    model.bundle_path = str(path)
    logger.info(
        "loaded MapCell bundle %s: %d cell types, %d genes",
        path,
        len(model.reference.labels),
        len(model.genes),
    )
    return model
