"""The ``mapcell`` command line, run in-process through ``mapcell.cli.main``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import pytest

import mapcell as mc
from mapcell._constants import OBS_FIELDS
from mapcell.cli import main

QUICK = ["--max-epochs", "2", "--n-top-genes", "0"]


@pytest.fixture
def reference_file(reference, tmp_path) -> Path:
    path = tmp_path / "reference.h5ad"
    reference.write_h5ad(path)
    return path


@pytest.fixture
def query_file(query, tmp_path) -> Path:
    path = tmp_path / "query.h5ad"
    query.write_h5ad(path)
    return path


def test_train_then_annotate(reference_file, query_file, tmp_path, capsys):
    bundle, output = tmp_path / "reference_model", tmp_path / "annotated.h5ad"

    assert (
        main(["train", str(reference_file), "--labels", "cell_type", "-o", str(bundle), *QUICK])
        == 0
    )
    assert "saved a model of 3 cell types and 120 genes" in capsys.readouterr().out
    assert mc.MapCell.load(bundle).labels == ["alpha", "beta", "gamma"]

    assert main(["annotate", str(query_file), "--model", str(bundle), "-o", str(output)]) == 0
    assert f"wrote {output}: 160 cells" in capsys.readouterr().out
    annotated = ad.read_h5ad(output)
    assert [f"mapcell_{name}" for name in OBS_FIELDS] == list(
        annotated.obs.columns[-len(OBS_FIELDS) :]
    )
    assert annotated.obsm["X_mapcell"].shape == (160, 32)
    assert set(annotated.obs["mapcell_nearest"].astype(str)) <= {"alpha", "beta", "gamma"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [bundle.name, output.name, reference_file.name, query_file.name]
    )


@pytest.mark.parametrize("mode", ["prototype", "knn"], ids=["prototype", "knn"])
def test_annotate_options(model, query_file, tmp_path, capsys, mode):
    output = tmp_path / "out" / "annotated.h5ad"

    argv = ["annotate", str(query_file), "--model", model.bundle_path, "-o", str(output)]
    assert main([*argv, "--mode", mode, "--key-added", "mc"]) == 0

    annotated = ad.read_h5ad(output)
    assert "mc_label" in annotated.obs
    assert annotated.uns["mc"]["params"]["mode"] == mode
    assert "wrote" in capsys.readouterr().out


def test_annotate_overwrite_replaces_output(model, query_file, tmp_path):
    output = tmp_path / "annotated.h5ad"
    output.write_text("old")

    argv = ["annotate", str(query_file), "--model", model.bundle_path, "-o", str(output)]
    assert main([*argv, "--overwrite"]) == 0
    assert ad.read_h5ad(output).n_obs == 160


# ---------------------------------------------------------------- errors


def test_train_missing_input(tmp_path, capsys):
    missing = tmp_path / "nowhere.h5ad"

    assert main(["train", str(missing), "--labels", "cell_type", "-o", str(tmp_path / "m")]) == 1
    assert f"mapcell train: error: {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_annotate_missing_input(model, tmp_path, capsys):
    missing = tmp_path / "nowhere.h5ad"
    argv = ["annotate", str(missing), "--model", model.bundle_path, "-o", str(tmp_path / "o.h5ad")]

    assert main(argv) == 1
    assert f"mapcell annotate: error: {missing} does not exist" in capsys.readouterr().err


def test_train_output_exists(reference_file, tmp_path, capsys):
    output = tmp_path / "model"
    output.mkdir()
    (output / "keep.txt").write_text("mine")

    assert main(["train", str(reference_file), "--labels", "cell_type", "-o", str(output)]) == 1
    assert "already exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert [p.name for p in output.iterdir()] == ["keep.txt"]
    assert (output / "keep.txt").read_text() == "mine"


def test_annotate_output_exists(model, query_file, tmp_path, capsys):
    output = tmp_path / "annotated.h5ad"
    output.write_bytes(b"precious")

    argv = ["annotate", str(query_file), "--model", model.bundle_path, "-o", str(output)]
    assert main(argv) == 1
    assert f"{output} already exists; pass --overwrite" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"


def test_train_unknown_labels_key(reference_file, tmp_path, capsys):
    argv = [
        "train",
        str(reference_file),
        "--labels",
        "celltype",
        "-o",
        str(tmp_path / "m"),
        *QUICK,
    ]

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "mapcell train: error: 'celltype' is not a column of adata.obs" in err
    assert "cell_type" in err
    assert not (tmp_path / "m").exists()


def test_annotate_missing_model(query_file, tmp_path, capsys):
    missing = tmp_path / "no_model"
    argv = ["annotate", str(query_file), "--model", str(missing), "-o", str(tmp_path / "o.h5ad")]

    assert main(argv) == 1
    assert f"no MapCell bundle at {missing}" in capsys.readouterr().err
    assert not (tmp_path / "o.h5ad").exists()


def test_annotate_damaged_model(query_file, tmp_path, capsys):
    not_a_bundle = tmp_path / "model.pt"
    not_a_bundle.write_bytes(b"\x80\x04")
    argv = ["annotate", str(query_file), "--model", str(not_a_bundle), "-o", str(tmp_path / "o")]

    assert main(argv) == 1
    assert "is a file; a MapCell bundle is a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- version, help, demo


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"mapcell {mc.__version__}\n"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: mapcell")
    for command in ("train", "annotate", "demo"):
        assert command in out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["fly"])
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_demo(capsys):
    assert main(["demo", "--max-epochs", "2"]) == 0

    out = capsys.readouterr().out
    assert "pbmc68k_reduced: reference" in out
    assert "novelty AUROC" in out
    assert "macro F1" in out
    assert "share of 'CD19+ B' called Unknown" in out


def test_demo_unknown_held_out_type(capsys):
    assert main(["demo", "--held-out", "T rex", "--max-epochs", "1"]) == 1
    assert "held_out='T rex' is not a label" in capsys.readouterr().err


def test_console_script_version():
    script = Path(sys.executable).parent / "mapcell"

    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mapcell {mc.__version__}\n"


def test_train_genes_from_restricts_the_model(reference_file, query, tmp_path, capsys):
    partial = tmp_path / "partial.h5ad"
    query[:, :60].copy().write_h5ad(partial)
    bundle = tmp_path / "model"
    argv = ["train", str(reference_file), "--labels", "cell_type", "-o", str(bundle), *QUICK]
    assert main([*argv, "--genes-from", str(partial)]) == 0
    assert mc.MapCell.load(bundle).genes == list(query.var_names[:60])


def test_train_genes_from_missing_file(reference_file, tmp_path, capsys):
    argv = ["train", str(reference_file), "--labels", "cell_type", "-o", str(tmp_path / "m")]
    assert main([*argv, "--genes-from", str(tmp_path / "absent.h5ad")]) == 1
    assert "absent.h5ad does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
