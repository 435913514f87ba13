"""The bundle: a folder with ``model.safetensors``, ``mapcell.json`` and a ``README.md`` card.

No pickle anywhere: weights and arrays are safetensors, everything else is JSON, and loading
checks the schema version, the types of the JSON fields, the weights' checksum and every shape
before it builds anything. The format is specified in ``docs/bundle.md``.
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
from mapcell.hub._card import model_card
from mapcell.hub._files import make_readable, sha256_file
from mapcell.hub._reference_map import CONFIG_FIELD as REFERENCE_MAP_FIELD  # issue #4
from mapcell.hub._reference_map import read_reference_map  # issue #4
from mapcell.hub._schema import (
    BOOLEAN,
    FINITE,
    INTEGER,
    NUMBER,
    OPTIONAL_STRING,
    SHA256,
    STRING,
    ListOf,
    MapOf,
    Obj,
    Scalar,
    check,
)

#: Arrays kept beside the encoder's weights, with the JSON field that gives their first dimension.
_REFERENCE_TENSORS = ("prototypes", "prototype_types", "reference_embedding", "reference_types")
_ENCODER_PREFIX = "encoder."
_MODES = ("prototype", "knn")

#: Fields of ``about``: what a person or a registry says the reference is.
ABOUT_FIELDS = ("name", "version", "description", "species", "tissue", "license", "authors",
                "citation", "url")  # fmt: skip

_CALIBRATION_MODE = Obj(
    optional={"heldout_accuracy": NUMBER, "types_with_pooled_threshold": ListOf(STRING)}
)
_OPTIONAL_INTEGER = Scalar(("integer", "null"))

#: The schema of ``mapcell.json`` (version 1): docs/bundle.md describes every field.
BUNDLE_SCHEMA = Obj(
    required={
        "schema_version": INTEGER,
        "genes": Obj(required={"names": ListOf(STRING), "ids": MapOf(ListOf(STRING))}),
        "labels": ListOf(STRING),
        "preprocessing": Obj(
            required={"reference_values": STRING, "target_sum": FINITE},
            optional={"log1p": BOOLEAN},
        ),
        "encoder": Obj(
            required={
                "n_input": INTEGER,
                "n_latent": INTEGER,
                "n_hidden": INTEGER,
                "n_layers": INTEGER,
                "dropout": FINITE,
                "input_dropout": FINITE,
            }
        ),
        "loss": Obj(required={"loss": STRING}, optional={"margin": FINITE, "temperature": FINITE}),
        "search": Obj(
            required={
                "thresholds": MapOf(ListOf(NUMBER)),
                "n_prototypes": INTEGER,
                "n_reference_cells": INTEGER,
            }
        ),
    },
    optional={
        "created": STRING,
        "about": Obj(optional=dict.fromkeys(ABOUT_FIELDS, STRING)),
        "weights": Obj(required={"file": STRING, "sha256": SHA256, "size": INTEGER}),
        "setup": Obj(
            optional={"labels_key": STRING, "batch_key": OPTIONAL_STRING, "layer": OPTIONAL_STRING}
        ),
        "cell_counts": MapOf(
            Obj(required={"train": INTEGER, "calibration": INTEGER}, optional={"added": BOOLEAN})
        ),
        "calibration": Obj(
            optional={"quantile": FINITE, "prototype": _CALIBRATION_MODE, "knn": _CALIBRATION_MODE}
        ),
        "training": Obj(
            optional={
                **dict.fromkeys(("n_cells", "n_train", "n_calibration", "epochs_run"), INTEGER),
                **dict.fromkeys(("n_shots", "max_epochs", "seed"), _OPTIONAL_INTEGER),
            }
        ),
        "history": MapOf(ListOf(NUMBER)),
        "versions": MapOf(STRING),
        "reference_map": Obj(),
    },
)


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


def check_about(about: dict) -> dict[str, str]:
    """``about`` with empty entries dropped; unknown fields and non-strings are refused."""
    unknown = sorted(set(about) - set(ABOUT_FIELDS))
    if unknown:
        msg = f"about takes the fields {list(ABOUT_FIELDS)}, not {unknown}"
        raise ValueError(msg)
    wrong = sorted(key for key, value in about.items() if not isinstance(value, str | None))
    if wrong:
        msg = f"about fields are text; {wrong} are not strings"
        raise TypeError(msg)
    return {key: value for key, value in about.items() if value}


def bundle_config(model, about: dict | None = None) -> dict:
    """Everything but the arrays, as the JSON document of the bundle."""
    state = model.reference
    if about is None:
        about = getattr(model, "about", None) or {}
    about = check_about(about)
    return {
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "about": about,
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


def save_bundle(
    model, path: str | os.PathLike, *, overwrite: bool = False, about: dict | None = None
) -> Path:
    """Write ``model`` to the folder ``path`` atomically; see :meth:`mapcell.MapCell.save`.

    Parameters
    ----------
    model
        A trained :class:`~mapcell.MapCell`.
    path
        The bundle folder to write.
    overwrite
        Replace an existing bundle at ``path``.
    about
        What the reference is, for its card and a registry: ``name``, ``version``,
        ``description``, ``species``, ``tissue``, ``license``, ``authors``, ``citation``, ``url``
        (all text, all optional). By default the ``about`` of the bundle ``model`` was loaded
        from, if any.

    Returns
    -------
    The bundle folder.
    """
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
    config = bundle_config(model, about)
    # -- reference map (issue #4): kept when mc.tl.fit_reference_map made one; no pickle.
    reference_map = getattr(model, "reference_map", None)
    if reference_map is not None:
        tensors.update(reference_map.tensors())
        config[REFERENCE_MAP_FIELD] = reference_map.config()
    # -- end of reference map

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        weights = staging / BUNDLE_WEIGHTS_FILE
        save_file(tensors, weights, metadata={"format": "mapcell"})
        config["weights"] = {
            "file": BUNDLE_WEIGHTS_FILE,
            "sha256": sha256_file(weights),
            "size": weights.stat().st_size,
        }
        write_bundle_documents(staging, config)
        make_readable(staging)
        _replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved MapCell bundle to %s", path)
    return path


def write_bundle_documents(folder: Path, config: dict) -> None:
    """Write ``mapcell.json`` and the ``README.md`` card made from it into ``folder``."""
    (folder / BUNDLE_CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    (folder / BUNDLE_CARD_FILE).write_text(model_card(config), encoding="utf-8")


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
    _check_schema(config, path / BUNDLE_CONFIG_FILE)
    return config


def _check_schema(config: dict, where: Path) -> None:
    absent, problems = check(config, BUNDLE_SCHEMA)
    if absent:
        msg = f"{where} lacks the fields {absent}; the bundle is damaged"
        raise BundleError(msg)
    if not problems:  # the fields agree with each other only once each has its type
        problems = _consistency_problems(config)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if problems[5:] else ""
        )
        msg = (
            f"{where} does not match the bundle schema: {shown}. The file was edited or written "
            "by another tool; save the model again with model.save(), or download it again"
        )
        raise BundleError(msg)


def _consistency_problems(config: dict) -> list[str]:
    n_genes, labels = len(config["genes"]["names"]), config["labels"]
    problems = [
        f"genes.ids.{kind} holds {len(ids)} identifiers for {n_genes} genes"
        for kind, ids in config["genes"]["ids"].items()
        if len(ids) != n_genes
    ]
    if config["encoder"]["n_input"] != n_genes:
        problems.append(f"encoder.n_input is {config['encoder']['n_input']}, not {n_genes} genes")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        problems.append(f"labels repeats {repeated}")
    return problems


def _check_weights_file(config: dict, path: Path) -> None:
    # Bundles written before the checksum was recorded (mapcell 0.1) have no "weights" field.
    record = config.get("weights")
    if record is None:
        logger.debug("%s records no checksum of its weights (an older bundle)", path)
        return
    weights = path / BUNDLE_WEIGHTS_FILE
    size = weights.stat().st_size
    if size != record["size"]:
        msg = (
            f"{weights} has {size} bytes, but {BUNDLE_CONFIG_FILE} records {record['size']}: the "
            "file is truncated or damaged; copy or download the bundle again"
        )
        raise BundleError(msg)
    digest = sha256_file(weights)
    if digest != record["sha256"]:
        msg = (
            f"{weights} does not match the sha256 recorded in {BUNDLE_CONFIG_FILE} (it is "
            f"{digest[:12]}..., expected {record['sha256'][:12]}...): the weights were altered or "
            "damaged after the bundle was saved; copy or download the bundle again"
        )
        raise BundleError(msg)


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
        values = np.asarray(thresholds.get(mode, []), dtype=float)
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


def read_bundle(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Check a bundle folder completely and return its configuration and tensors.

    Raises :class:`BundleError` (or :class:`FileNotFoundError`) naming what is wrong: a newer
    schema, a missing file, a JSON field of the wrong type, weights that do not match their
    recorded checksum, or arrays whose shapes do not fit the configuration.
    """
    path = Path(path)
    config = _read_config(path)
    _check_weights_file(config, path)
    tensors = _read_tensors(path)
    _check_shapes(config, tensors, path)
    return config, tensors


def load_bundle(path: str | os.PathLike):
    """Read a bundle folder into a :class:`mapcell.MapCell`; see :meth:`mapcell.MapCell.load`."""
    from mapcell.model._mapcell import MapCell, ReferenceState

    path = Path(path)
    config, tensors = read_bundle(path)

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
    model.about = dict(config.get("about", {}))
    # -- reference map (issue #4): restored when present; bundles without one load as before.
    model.reference_map = read_reference_map(config, tensors, encoder_config["n_latent"])
    # -- end of reference map
    model.is_trained_ = True
    model.bundle_path = str(path)
    logger.info(
        "loaded MapCell bundle %s: %d cell types, %d genes",
        path,
        len(model.reference.labels),
        len(model.genes),
    )
    return model
