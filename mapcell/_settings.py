"""Global settings: ``mc.settings.device``, ``batch_size``, ``seed``, ``verbosity`` and more."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import torch

from mapcell._logging import _ensure_handler, logger

Device = Literal["auto", "cpu", "cuda", "mps"]
_VERBOSITY = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
CACHE_DIR_ENV = "MAPCELL_CACHE_DIR"
REGISTRY_URL_ENV = "MAPCELL_REGISTRY_URL"
#: Address kinds a registry index may have; anything without "://" is a local path.
REGISTRY_SCHEMES = ("http", "https", "file")


class MapCellSettings:
    """Settings shared by every mapcell function.

    Attributes are plain properties; set them as ``mc.settings.device = "cpu"``.
    """

    def __init__(self) -> None:
        self._device: Device = "auto"
        self.batch_size = 1024
        self.seed: int | None = 0
        self.progress_bar = True
        self._cache_dir: Path | None = None
        self._registry_url: str | None = None
        self.verbosity = "info"

    @property
    def device(self) -> torch.device:
        """The torch device for encoding and search.

        ``"auto"`` (the default) picks CUDA, then Apple MPS, then the CPU. Setting it to a
        device that is not available raises at once rather than at the first annotation.
        """
        if self._device == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if torch.backends.mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
        return torch.device(self._device)

    @device.setter
    def device(self, value: Device) -> None:
        if value not in ("auto", "cpu", "cuda", "mps"):
            msg = f"device must be 'auto', 'cpu', 'cuda' or 'mps', not {value!r}"
            raise ValueError(msg)
        if value == "cuda" and not torch.cuda.is_available():
            msg = "device='cuda' was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'"
            raise ValueError(msg)
        if value == "mps" and not torch.backends.mps.is_available():
            msg = "device='mps' was asked for, but torch sees no Apple MPS; use 'auto' or 'cpu'"
            raise ValueError(msg)
        self._device = value

    @property
    def batch_size(self) -> int:
        """Cells encoded and searched per chunk; memory is bounded by it, not by the query."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if int(value) != value or value < 1:
            msg = f"batch_size must be a positive integer, not {value!r}"
            raise ValueError(msg)
        self._batch_size = int(value)

    @property
    def verbosity(self) -> str:
        """One of ``"error"``, ``"warning"``, ``"info"`` (default) or ``"debug"``."""
        return logging.getLevelName(logger.level).lower()

    @verbosity.setter
    def verbosity(self, value: str) -> None:
        if value not in _VERBOSITY:
            msg = f"verbosity must be one of {sorted(_VERBOSITY)}, not {value!r}"
            raise ValueError(msg)
        _ensure_handler()
        logger.setLevel(_VERBOSITY[value])

    @property
    def cache_dir(self) -> Path:
        """Folder for downloaded references.

        Set here, or with the environment variable ``MAPCELL_CACHE_DIR``; by default
        ``~/.cache/mapcell``. It is created only when something is written to it.
        """
        if self._cache_dir is not None:
            return self._cache_dir
        return Path(os.environ.get(CACHE_DIR_ENV, Path.home() / ".cache" / "mapcell"))

    @cache_dir.setter
    def cache_dir(self, value: str | os.PathLike) -> None:
        self._cache_dir = Path(value)

    @property
    def registry_url(self) -> str | None:
        """Address of the registry index of shared references (a JSON file), or ``None``.

        An ``http://``, ``https://`` or ``file://`` URL, or the path of a local index file. Set
        here, or with the environment variable ``MAPCELL_REGISTRY_URL``; there is no default
        registry. Registry names (``"pbmc"``, ``"pbmc@1.0"``) are looked up in it.
        """
        if self._registry_url is not None:
            return self._registry_url
        return os.environ.get(REGISTRY_URL_ENV) or None

    @registry_url.setter
    def registry_url(self, value: str | os.PathLike | None) -> None:
        if value is None:
            self._registry_url = None
            return
        value = os.fspath(value)
        scheme = value.split("://", 1)[0].lower() if "://" in value else None
        if scheme is not None and scheme not in REGISTRY_SCHEMES:
            msg = (
                f"registry_url must be an http://, https:// or file:// URL or a local path, "
                f"not {value!r}"
            )
            raise ValueError(msg)
        self._registry_url = value

    def __repr__(self) -> str:
        fields = (
            "device",
            "batch_size",
            "seed",
            "progress_bar",
            "verbosity",
            "cache_dir",
            "registry_url",
        )
        body = ", ".join(f"{name}={getattr(self, name)!r}" for name in fields)
        return f"MapCellSettings({body})"


settings = MapCellSettings()
