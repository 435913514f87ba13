"""Sphinx configuration: the API from the docstrings, the tutorials as executed notebooks.

Build with ``bash tools/dev.sh docs`` (or ``sphinx-build -W --keep-going -b html docs
docs/_build/html``). The tutorials are the jupytext scripts of ``tutorials/``, read through the
``docs/tutorials`` link and executed by myst-nb. Those that need the shared datasets
(``../shared/data``) are rendered without outputs when the datasets are not there, so the build
needs nothing but the package.
"""

from __future__ import annotations

import os
from importlib.metadata import version as package_version

from mapcell.datasets import shared_data_dir

project = "mapcell"
author = "The mapcell developers"
copyright = "the mapcell developers"
release = package_version("mapcell")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
templates_path = ["_templates"]
# conf.py would otherwise be read as a notebook: every .py file here is one (see below).
exclude_patterns = ["_build", "_templates", "conf.py", "**.ipynb_checkpoints"]

# ---------------------------------------------------------------- API reference

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True
# mapcell's Returns sections list the fields a tool writes as a definition list
# (``adata.obs["mapcell_label"]`` : categorical), which reads best as it is written.
napoleon_custom_sections = ["Returns"]

# ---------------------------------------------------------------- tutorials

#: Tutorials that read ../shared/data; without it they are shown but not run.
NEEDS_SHARED_DATA = ["tutorials/02_reference_and_query.py", "tutorials/03_few_shot.py"]

# The notebooks' kernels inherit this. On a 2-core machine that runs anything else, torch's
# default of one busy-waiting thread per core made training ten times slower than one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_excludepatterns = [] if shared_data_dir() is not None else NEEDS_SHARED_DATA
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# ---------------------------------------------------------------- HTML

html_theme = "furo"
html_title = f"mapcell {release}"
html_static_path: list[str] = []
