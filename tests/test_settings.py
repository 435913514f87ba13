import importlib
import logging
import sys

import pytest
import torch

import mapcell
from mapcell._logging import logger
from mapcell._settings import CACHE_DIR_ENV, MapCellSettings


@pytest.fixture
def settings():
    level = logger.level
    yield MapCellSettings()
    logger.setLevel(level)


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.usefixtures("cpu_only")
@pytest.mark.parametrize("value", ["auto", "cpu"])
def test_device_on_a_cpu_machine(settings, value):
    settings.device = value

    assert settings.device == torch.device("cpu")


@pytest.mark.usefixtures("cpu_only")
@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("cuda", r"device='cuda' was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'"),
        ("mps", r"device='mps' was asked for, but torch sees no Apple MPS"),
        ("tpu", r"device must be 'auto', 'cpu', 'cuda' or 'mps', not 'tpu'"),
    ],
    ids=["cuda", "mps", "unknown"],
)
def test_device_rejects_what_is_not_there(settings, value, match):
    settings.device = "cpu"

    with pytest.raises(ValueError, match=match):
        settings.device = value

    assert settings.device == torch.device("cpu")


@pytest.mark.parametrize("value", [1, 2048, 64.0], ids=["one", "int", "integral-float"])
def test_batch_size(settings, value):
    settings.batch_size = value

    assert settings.batch_size == int(value)
    assert type(settings.batch_size) is int


@pytest.mark.parametrize("value", [0, -3, 2.5], ids=["zero", "negative", "fraction"])
def test_batch_size_rejects(settings, value):
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer, not {value}"):
        settings.batch_size = value

    assert settings.batch_size == 1024


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("error", logging.ERROR),
        ("warning", logging.WARNING),
        ("info", logging.INFO),
        ("debug", logging.DEBUG),
    ],
)
def test_verbosity(settings, value, level):
    settings.verbosity = value

    assert settings.verbosity == value
    assert logger.level == level


def test_verbosity_rejects(settings):
    with pytest.raises(
        ValueError, match=r"verbosity must be one of \['debug', 'error', 'info', 'warning'\]"
    ):
        settings.verbosity = "loud"

    assert settings.verbosity == "info"


def test_cache_dir_from_the_environment(settings, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "refs"))

    assert settings.cache_dir == tmp_path / "refs"
    assert not (tmp_path / "refs").exists()


def test_cache_dir_set_beats_the_environment(settings, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))

    settings.cache_dir = str(tmp_path / "set")

    assert settings.cache_dir == tmp_path / "set"


def test_cache_dir_default(settings, monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert settings.cache_dir == tmp_path / ".cache" / "mapcell"


@pytest.fixture
def fresh_mapcell_import(monkeypatch):
    """Let ``import mapcell`` run mapcell's own code again; its dependencies stay loaded."""
    loaded = {name for name in sys.modules if name.split(".")[0] == "mapcell"}
    for name in loaded:
        monkeypatch.delitem(sys.modules, name)  # put back after the test
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == "mapcell"]:
        if name not in loaded:
            del sys.modules[name]


@pytest.mark.usefixtures("fresh_mapcell_import")
def test_import_leaves_the_root_logger_alone(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    root = logging.getLogger()
    before = (list(root.handlers), root.level)

    fresh = importlib.import_module("mapcell")

    assert fresh is not mapcell
    assert (list(root.handlers), root.level) == before
    assert not (tmp_path / "cache").exists()  # no folder created at import
