"""Sharing: the bundle format (safetensors + JSON + model card)."""

from mapcell.hub._bundle import BundleError, load_bundle, model_card, save_bundle

__all__ = ["BundleError", "load_bundle", "model_card", "save_bundle"]
