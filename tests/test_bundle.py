"""The bundle folder: a faithful round trip, no pickle, atomic saves, a clear error per damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import mapcell as mc
from mapcell._constants import (
    BUNDLE_CARD_FILE,
    BUNDLE_CONFIG_FILE,
    BUNDLE_SCHEMA_VERSION,
    BUNDLE_WEIGHTS_FILE,
)
from mapcell.hub import BundleError
from mapcell.hub._files import sha256_file

BUNDLE_FILES = sorted([BUNDLE_WEIGHTS_FILE, BUNDLE_CONFIG_FILE, BUNDLE_CARD_FILE])


def _snapshot(path: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(path.iterdir())}


def _read_json(path: Path) -> dict:
    return json.loads((path / BUNDLE_CONFIG_FILE).read_text(encoding="utf-8"))


def _write_json(path: Path, config) -> None:
    (path / BUNDLE_CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture
def bundle(model, tmp_path) -> Path:
    """A copy of the tiny model's bundle that a test may damage."""
    path = tmp_path / "bundle"
    shutil.copytree(model.bundle_path, path)
    return path


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("mode", ["prototype", "knn"], ids=["prototype", "knn"])
def test_round_trip_predicts_the_same(model, query, tmp_path, mode):
    model.save(tmp_path / "again")
    loaded = mc.MapCell.load(tmp_path / "again")

    before, after = model.predict(query, mode=mode), loaded.predict(query, mode=mode)

    np.testing.assert_array_equal(after["label"].astype(str), before["label"].astype(str))
    np.testing.assert_array_equal(after["nearest"].astype(str), before["nearest"].astype(str))
    np.testing.assert_array_equal(after["distance"], before["distance"])
    np.testing.assert_array_equal(after["novelty"], before["novelty"])


def test_saved_trained_model_predicts_like_its_bundle(request, model, query):
    trained = request.getfixturevalue("_trained_model")  # the in-memory model the bundle came from

    before, after = trained.predict(query), model.predict(query)

    np.testing.assert_array_equal(after["label"].astype(str), before["label"].astype(str))
    np.testing.assert_array_equal(after["distance"], before["distance"])


def test_round_trip_keeps_genes_labels_thresholds_and_weights(model, tmp_path):
    model.save(tmp_path / "again")
    loaded = mc.MapCell.load(tmp_path / "again")

    assert loaded.genes == model.genes
    assert loaded.gene_ids == model.gene_ids
    assert loaded.labels == model.labels
    assert loaded.reference.thresholds.keys() == model.reference.thresholds.keys()
    for mode, values in model.reference.thresholds.items():
        np.testing.assert_array_equal(loaded.reference.thresholds[mode], values)
    weights, loaded_weights = model.encoder.state_dict(), loaded.encoder.state_dict()
    assert loaded_weights.keys() == weights.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(loaded_weights[name], tensor, rtol=0, atol=0)


def test_round_trip_keeps_reference_cells(model, tmp_path):
    model.save(tmp_path / "again")
    loaded = mc.MapCell.load(tmp_path / "again")

    for name in ("prototypes", "prototype_types", "reference_embedding", "reference_types"):
        torch.testing.assert_close(
            getattr(loaded.reference, name), getattr(model.reference, name), rtol=0, atol=0
        )


# ---------------------------------------------------------------- what the folder holds


def test_bundle_holds_exactly_three_files(bundle):
    assert sorted(entry.name for entry in bundle.iterdir()) == BUNDLE_FILES


def test_weights_are_safetensors_not_pickle(bundle):
    data = (bundle / BUNDLE_WEIGHTS_FILE).read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])

    assert not data.startswith((b"\x80", b"PK"))  # neither a pickle nor torch.save's zip
    assert header["__metadata__"] == {"format": "mapcell"}
    assert "encoder.gene_mean" in header
    assert "prototypes" in header


def test_config_is_json_with_schema_version(bundle):
    config = _read_json(bundle)

    assert isinstance(config, dict)
    assert config["schema_version"] == BUNDLE_SCHEMA_VERSION


def test_card_names_every_cell_type(model, bundle):
    card = (bundle / BUNDLE_CARD_FILE).read_text(encoding="utf-8")

    assert card.startswith("# MapCell reference")
    for label in model.labels:
        assert f"| {label} |" in card


# ---------------------------------------------------------------- saving over a bundle


def test_save_refuses_existing_path(model, bundle):
    before = _snapshot(bundle)

    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        model.save(bundle)
    assert _snapshot(bundle) == before


def test_save_refuses_a_file_even_with_overwrite(model, tmp_path):
    path = tmp_path / "model"
    path.write_text("not a bundle")

    with pytest.raises(FileExistsError, match="is a file, not a bundle folder"):
        model.save(path, overwrite=True)
    assert path.read_text() == "not a bundle"


def test_save_overwrite_replaces_bundle(model, bundle):
    (bundle / "stray.txt").write_text("left by someone")
    model.reference.thresholds = {k: v * 2 for k, v in model.reference.thresholds.items()}

    model.save(bundle, overwrite=True)

    assert sorted(entry.name for entry in bundle.iterdir()) == BUNDLE_FILES
    assert sorted(entry.name for entry in bundle.parent.iterdir()) == [bundle.name]
    loaded = mc.MapCell.load(bundle)
    np.testing.assert_array_equal(
        loaded.reference.thresholds["prototype"], model.reference.thresholds["prototype"]
    )


def test_save_leaves_no_temporary_folder(model, tmp_path):
    parent = tmp_path / "models"

    model.save(parent / "tiny")

    assert [entry.name for entry in parent.iterdir()] == ["tiny"]


@pytest.mark.parametrize("existing", [False, True], ids=["new-path", "overwrite"])
def test_failed_save_leaves_previous_state(model, bundle, monkeypatch, existing):
    def broken_save_file(*args, **kwargs):
        msg = "disk full"
        raise OSError(msg)

    path = bundle if existing else bundle.parent / "new"
    before = _snapshot(bundle)
    monkeypatch.setattr("mapcell.hub._bundle.save_file", broken_save_file)

    with pytest.raises(OSError, match="disk full"):
        model.save(path, overwrite=True)

    assert sorted(entry.name for entry in bundle.parent.iterdir()) == [bundle.name]
    assert _snapshot(bundle) == before
    monkeypatch.undo()
    assert mc.MapCell.load(bundle).labels == model.labels


# ---------------------------------------------------------------- every way a load fails


def _remove(path: Path) -> None:
    shutil.rmtree(path)


def _make_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("not a bundle")


def _drop_config(path: Path) -> None:
    (path / BUNDLE_CONFIG_FILE).unlink()


def _drop_weights(path: Path) -> None:
    (path / BUNDLE_WEIGHTS_FILE).unlink()


def _invalid_json(path: Path) -> None:
    (path / BUNDLE_CONFIG_FILE).write_text('{"schema_version": 1,', encoding="utf-8")


def _json_list(path: Path) -> None:
    _write_json(path, [1, 2, 3])


def _no_schema(path: Path) -> None:
    config = _read_json(path)
    del config["schema_version"]
    _write_json(path, config)


def _newer_schema(path: Path) -> None:
    config = _read_json(path)
    config["schema_version"] = BUNDLE_SCHEMA_VERSION + 1
    _write_json(path, config)


def _no_labels(path: Path) -> None:
    config = _read_json(path)
    del config["labels"]
    _write_json(path, config)


def _truncate_weights(path: Path) -> None:
    data = (path / BUNDLE_WEIGHTS_FILE).read_bytes()
    (path / BUNDLE_WEIGHTS_FILE).write_bytes(data[: len(data) // 2])


def _truncate_unrecorded_weights(path: Path) -> None:
    config = _read_json(path)
    del config["weights"]  # as in bundles of mapcell 0.1, which recorded no checksum
    _write_json(path, config)
    _truncate_weights(path)


def _record_checksum(path: Path) -> None:
    config = _read_json(path)
    weights = path / BUNDLE_WEIGHTS_FILE
    config["weights"].update(sha256=sha256_file(weights), size=weights.stat().st_size)
    _write_json(path, config)


def _replace_tensor(path: Path, name: str, make) -> None:
    # Weights and configuration that agree on the checksum but not on the arrays, as a faulty
    # writer would make them: the shape checks behind the checksum must catch it.
    tensors = load_file(path / BUNDLE_WEIGHTS_FILE)
    tensors[name] = make(tensors[name])
    save_file(tensors, path / BUNDLE_WEIGHTS_FILE)
    _record_checksum(path)


def _wrong_prototype_shape(path: Path) -> None:
    _replace_tensor(path, "prototypes", lambda t: torch.zeros(t.shape[0], t.shape[1] + 1))


def _wrong_encoder_weight(path: Path) -> None:
    tensors = load_file(path / BUNDLE_WEIGHTS_FILE)
    name = next(k for k, v in tensors.items() if k.startswith("encoder.") and v.ndim == 2)
    _replace_tensor(path, name, lambda t: torch.zeros(t.shape[0] + 1, t.shape[1]))


def _short_thresholds(path: Path) -> None:
    config = _read_json(path)
    config["search"]["thresholds"]["prototype"] = config["search"]["thresholds"]["prototype"][:-1]
    _write_json(path, config)


def _prototype_type_beyond_labels(path: Path) -> None:
    n_labels = len(_read_json(path)["labels"])
    _replace_tensor(path, "prototype_types", lambda t: torch.full_like(t, n_labels))


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (_remove, FileNotFoundError, "no MapCell bundle at .*the folder does not exist"),
        (_make_file, BundleError, "is a file; a MapCell bundle is a folder"),
        (_drop_config, BundleError, "not a complete MapCell bundle: mapcell.json missing"),
        (_drop_weights, BundleError, "not a complete MapCell bundle: model.safetensors missing"),
        (_invalid_json, BundleError, "mapcell.json is not valid JSON"),
        (_json_list, BundleError, r"does not hold a MapCell configuration \(a JSON object\)"),
        (_no_schema, BundleError, "has no valid schema_version"),
        (_newer_schema, BundleError, "newer than this mapcell reads.*upgrade mapcell"),
        (_no_labels, BundleError, r"lacks the fields \['labels'\]"),
        (
            _truncate_weights,
            BundleError,
            r"model\.safetensors has \d+ bytes, but mapcell.json records \d+: .*truncated",
        ),
        (
            _truncate_unrecorded_weights,
            BundleError,
            "model.safetensors cannot be read.*truncated or damaged",
        ),
        (_wrong_prototype_shape, BundleError, "prototypes has shape .*do not belong together"),
        (_wrong_encoder_weight, BundleError, "does not fit the encoder in mapcell.json"),
        (_short_thresholds, BundleError, r"thresholds\.prototype must hold 3 positive numbers"),
        (
            _prototype_type_beyond_labels,
            BundleError,
            "prototype_types must be integer codes of the 3 labels",
        ),
    ],
    ids=[
        "folder-missing",
        "path-is-file",
        "config-missing",
        "weights-missing",
        "invalid-json",
        "json-not-object",
        "schema-absent",
        "schema-newer",
        "field-missing",
        "weights-truncated",
        "weights-truncated-no-checksum",
        "tensor-wrong-shape",
        "encoder-weight-wrong-shape",
        "thresholds-wrong-length",
        "prototype-type-beyond-labels",
    ],
)
def test_load_error(bundle, damage, error, match):
    damage(bundle)

    with pytest.raises(error, match=match):
        mc.MapCell.load(bundle)


def _negative_prototype_type(path: Path) -> None:
    _replace_tensor(path, "prototype_types", lambda t: torch.full_like(t, -1))


def _reference_type_beyond_labels(path: Path) -> None:
    n_labels = len(_read_json(path)["labels"])
    _replace_tensor(path, "reference_types", lambda t: torch.full_like(t, n_labels))


def _no_n_prototypes(path: Path) -> None:
    config = _read_json(path)
    del config["search"]["n_prototypes"]
    _write_json(path, config)


def _no_knn_thresholds(path: Path) -> None:
    config = _read_json(path)
    del config["search"]["thresholds"]["knn"]
    _write_json(path, config)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        pytest.param(
            _negative_prototype_type,
            "prototype_types",
            id="prototype-type-negative",
        ),
        pytest.param(
            _reference_type_beyond_labels,
            "reference_types",
            id="reference-type-beyond-labels",
        ),
        pytest.param(
            _no_n_prototypes,
            "n_prototypes",
            id="nested-field-missing",
        ),
        pytest.param(
            _no_knn_thresholds,
            "knn",
            id="threshold-mode-missing",
        ),
    ],
)
def test_load_refuses_inconsistent_contents(bundle, damage, match):
    damage(bundle)

    with pytest.raises(BundleError, match=match):
        mc.MapCell.load(bundle)


def test_bundle_error_is_a_value_error():
    assert issubclass(BundleError, ValueError)


# ---------------------------------------------------------------- the model's own checks


@pytest.mark.parametrize(
    "kwargs",
    [{"adata": "query"}, {"prefix": "model_"}],
    ids=["adata", "scvi-keyword"],
)
def test_load_refuses_extra_arguments(bundle, query, kwargs):
    kwargs = {key: query if value == "query" else value for key, value in kwargs.items()}

    with pytest.raises(TypeError, match="reads a bundle on its own; pass only its path"):
        mc.MapCell.load(bundle, **kwargs)


def test_save_refuses_extra_arguments(model, tmp_path):
    with pytest.raises(TypeError, match=r"dir_path and overwrite only, not \['save_anndata'\]"):
        model.save(tmp_path / "model", save_anndata=True)
    assert not (tmp_path / "model").exists()


def test_save_untrained_model(reference, tmp_path):
    mc.MapCell.setup_anndata(reference, labels_key="cell_type")
    untrained = mc.MapCell(reference, n_top_genes=None)

    with pytest.raises(RuntimeError, match=r"not trained yet; call model\.train"):
        untrained.save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the weights' checksum


def test_config_records_the_weights_checksum(bundle):
    record = _read_json(bundle)["weights"]

    assert record == {
        "file": BUNDLE_WEIGHTS_FILE,
        "sha256": sha256_file(bundle / BUNDLE_WEIGHTS_FILE),
        "size": (bundle / BUNDLE_WEIGHTS_FILE).stat().st_size,
    }


def test_load_refuses_altered_weights_of_valid_shapes(bundle):
    tensors = load_file(bundle / BUNDLE_WEIGHTS_FILE)
    tensors["prototypes"] = tensors["prototypes"].flip(0).contiguous()  # same shape and size
    save_file(tensors, bundle / BUNDLE_WEIGHTS_FILE, metadata={"format": "mapcell"})

    with pytest.raises(
        BundleError,
        match=r"does not match the sha256 recorded in mapcell.json .*altered or damaged after "
        r"the bundle was saved; copy or download the bundle again",
    ):
        mc.MapCell.load(bundle)


def test_bundle_is_readable_by_others(bundle, model):
    # mkdtemp makes private folders; a bundle to share must not stay one.
    mode = Path(model.bundle_path).stat().st_mode & 0o777
    files = {entry.stat().st_mode & 0o777 for entry in Path(model.bundle_path).iterdir()}

    assert mode & 0o055 == 0o055
    assert all(m & 0o044 == 0o044 for m in files)


# ---------------------------------------------------------------- JSON field types


def _set(path: Path, dotted: str, value) -> None:
    config = _read_json(path)
    *outer, last = dotted.split(".")
    target = config
    for key in outer:
        target = target[key]
    target[last] = value
    _write_json(path, config)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        pytest.param(
            "encoder.n_latent", "8", r"encoder\.n_latent is a string \('8'\), expected an integer",
            id="integer-as-string",
        ),
        pytest.param("labels", ["alpha", 2, "gamma"], r"labels\[1\] is an integer \(2\), "
                     "expected a string", id="label-not-string"),
        pytest.param(
            "genes.ids.symbol", ["A", "B"], r"genes\.ids\.symbol holds 2 identifiers for 120",
            id="gene-ids-short",
        ),
        pytest.param(
            "search.thresholds.prototype", ["0.1", 0.2, 0.3],
            r"search\.thresholds\.prototype\[0\] is a string", id="threshold-as-string",
        ),
        pytest.param(
            "weights.sha256", "not-a-checksum", r"weights\.sha256 .* is not of the form",
            id="checksum-not-hex",
        ),
        pytest.param("about.name", 7, r"about\.name is an integer \(7\)", id="about-not-text"),
        pytest.param(
            "setup.batch_key", True, r"setup\.batch_key is a boolean \(true\), expected a string "
            "or null", id="bool-for-string",
        ),
        pytest.param("encoder", [1, 2], r"encoder is a list of 2, expected an object",
                     id="object-as-list"),
        pytest.param("labels", ["alpha", "alpha", "gamma"], r"labels repeats \['alpha'\]",
                     id="labels-repeated"),
        pytest.param("encoder.n_input", 5, r"encoder\.n_input is 5, not 120 genes",
                     id="n-input-not-genes"),
    ],
)  # fmt: skip
def test_load_refuses_fields_of_the_wrong_type(bundle, field, value, match):
    _set(bundle, field, value)

    with pytest.raises(BundleError, match=rf"does not match the bundle schema: .*{match}"):
        mc.MapCell.load(bundle)


def test_schema_error_says_what_to_do(bundle):
    _set(bundle, "encoder.n_layers", 2.5)

    with pytest.raises(BundleError, match=r"save the model again with model\.save\(\)"):
        mc.MapCell.load(bundle)


def test_load_ignores_fields_it_does_not_know(bundle, model):
    _set(bundle, "added_by_a_newer_mapcell", {"anything": [1, "two"]})

    assert mc.MapCell.load(bundle).labels == model.labels


# ---------------------------------------------------------------- bundles of older releases

BUNDLE_V1 = Path(__file__).parent / "data" / "bundle_v1"


def test_bundle_of_mapcell_0_1_loads_and_annotates_as_it_did(query):
    # Written by tests/data/make_bundle_v1.py with mapcell 0.1.0: schema 1, no weights checksum.
    expected = json.loads((BUNDLE_V1.parent / "bundle_v1_expected.json").read_text())
    assert "weights" not in _read_json(BUNDLE_V1)

    # 0.1 judged novelty cell by cell; with that judgement the old bundle must give its labels.
    mc.tl.annotate(query, str(BUNDLE_V1), novelty_neighbors=0)

    assert query.obs["mapcell_label"].astype(str).tolist() == expected["label"]
    np.testing.assert_allclose(query.obs["mapcell_distance"], expected["distance"], atol=1e-5)
    assert query.uns["mapcell"]["model"]["source"] == str(BUNDLE_V1)


def test_bundle_of_mapcell_0_1_is_tiny():
    assert sum(entry.stat().st_size for entry in BUNDLE_V1.iterdir()) < 100_000


# ---------------------------------------------------------------- the model card and about


def test_card_reads_on_its_own(model, bundle):
    card = (bundle / BUNDLE_CARD_FILE).read_text(encoding="utf-8")
    config = _read_json(bundle)

    for section in ("Use", "Cell types", "Genes and input", "Training", "Calibration",
                    "Intended use and limits", "Files and provenance"):  # fmt: skip
        assert f"\n## {section}\n" in card
    for label, counts in config["cell_counts"].items():
        assert f"| {label} | {counts['train']} | {counts['calibration']} |" in card
    assert "120 genes, kept as gene symbols and Ensembl gene IDs: `GENE0000`" in card
    assert "loss: contrastive" in card
    assert "0.99 quantile" in card
    assert "held-out accuracy | 1.000 |" in card or "held-out accuracy | 0." in card
    assert config["weights"]["sha256"] in card
    assert max(len(line) for line in card.splitlines() if not line.startswith("|")) <= 99


def test_save_with_about_names_the_reference(model, tmp_path):
    about = {"name": "tiny", "version": "1.0", "species": "mouse", "tissue": "lung",
             "description": "Three synthetic types.", "license": "CC-BY-4.0"}  # fmt: skip
    mc.hub.save_bundle(model, tmp_path / "named", about=about)
    card = (tmp_path / "named" / BUNDLE_CARD_FILE).read_text(encoding="utf-8")

    assert card.startswith("# tiny 1.0\n\nThree synthetic types.")
    assert "| species | mouse |" in card
    assert 'mc.tl.annotate(adata, "tiny@1.0")' in card
    loaded = mc.MapCell.load(tmp_path / "named")
    assert loaded.about == about
    loaded.save(tmp_path / "again")  # about travels with the model
    assert _read_json(tmp_path / "again")["about"] == about


@pytest.mark.parametrize(
    ("about", "error", "match"),
    [
        ({"colour": "blue"}, ValueError, r"about takes the fields .*not \['colour'\]"),
        ({"name": 3}, TypeError, r"about fields are text; \['name'\] are not strings"),
    ],
    ids=["unknown-field", "not-text"],
)
def test_save_refuses_bad_about(model, tmp_path, about, error, match):
    with pytest.raises(error, match=match):
        mc.hub.save_bundle(model, tmp_path / "named", about=about)
    assert not (tmp_path / "named").exists()
