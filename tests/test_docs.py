"""The API page lists every public name, so the reference cannot fall behind the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
#: The namespaces whose ``__all__`` the API page documents (modules themselves excepted).
NAMESPACES = [
    "mapcell",
    "mapcell.tl",
    "mapcell.pl",
    "mapcell.pp",
    "mapcell.datasets",
    "mapcell.hub",
    "mapcell.nn",
    "mapcell.search",
]
#: Public names that are namespaces or metadata, not objects to document.
NOT_DOCUMENTED = {"__version__", "datasets", "hub", "pl", "pp", "tl"}


def _documented() -> set[str]:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r":toctree: generated\n\n((?:   \S+\n)+)", text)
    return {f"mapcell.{line.strip()}" for block in blocks for line in block.splitlines()}


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_the_api_page_lists_every_public_name(namespace):
    module = importlib.import_module(namespace)
    public = {f"{namespace}.{name}" for name in module.__all__ if name not in NOT_DOCUMENTED}
    if namespace == "mapcell":  # documented where they live
        public = {"mapcell.MapCell", "mapcell.settings"}
    missing = sorted(public - _documented())
    assert not missing, f"add {missing} to an autosummary list in docs/api.md"


def test_the_toctree_names_every_page():
    pages = {path.stem for path in DOCS.glob("*.md")} - {"index"}
    tutorials = {f"tutorials/{path.stem}" for path in (DOCS.parent / "tutorials").glob("*.py")}
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([\w/]+)$", index, flags=re.MULTILINE))
    assert pages | tutorials <= listed
