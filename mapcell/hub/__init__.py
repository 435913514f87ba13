"""Sharing: the bundle format, the registry of shared references, and the Hugging Face Hub."""

from mapcell.hub._bundle import BundleError, load_bundle, model_card, read_bundle, save_bundle
from mapcell.hub._download import DownloadError
from mapcell.hub._hf import pull_from_hf_hub, push_to_hf_hub
from mapcell.hub._reference_map import ReferenceMap  # issue #4: the map kept with a model
from mapcell.hub._registry import (
    RegistryError,
    add_to_index,
    describe,
    download,
    list_models,
    open_registry,
    publish,
)
from mapcell.hub._resolve import load_model, resolve

__all__ = [
    "BundleError",
    "DownloadError",
    "ReferenceMap",
    "RegistryError",
    "add_to_index",
    "describe",
    "download",
    "list_models",
    "load_bundle",
    "load_model",
    "model_card",
    "open_registry",
    "publish",
    "pull_from_hf_hub",
    "push_to_hf_hub",
    "read_bundle",
    "resolve",
    "save_bundle",
]
