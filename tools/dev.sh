#!/usr/bin/env bash
# Set up a local virtual environment (.venv) with mapcell and its test tools, then run a task:
#   bash tools/dev.sh demo           train and annotate on scanpy's pbmc68k_reduced
#   bash tools/dev.sh test [ARGS]    the test suite (ARGS go to pytest)
#   bash tools/dev.sh lint           ruff check and format check
#   bash tools/dev.sh docs [ARGS]    the documentation into docs/_build/html, warnings as errors
#                                    (ARGS go to sphinx-build); installs the docs extra
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "mapcell needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
venv=.venv/bin
"$venv/python" -m pip install --quiet --upgrade pip
# torch first and pinned to a CPU-friendly release, so that resolving the other dependencies does
# not pull a multi-gigabyte CUDA build; any torch already installed is kept.
"$venv/python" -c 'import torch' 2>/dev/null || "$venv/python" -m pip install --quiet torch==2.13.0
"$venv/python" -m pip install --quiet -e '.[test]'

task=${1:-test}
shift || true
if [ "$task" = docs ]; then
  "$venv/python" -m pip install --quiet -e '.[test,docs]'
fi
case "$task" in
  demo) exec "$venv/mapcell" demo "$@" ;;
  test) exec "$venv/python" -m pytest "$@" ;;
  lint) "$venv/ruff" check . && exec "$venv/ruff" format --check . ;;
  docs)
    # A fresh build each time: stale generated API pages would hide a docstring that broke.
    rm -rf docs/_build docs/generated
    exec "$venv/sphinx-build" -W --keep-going -b html "$@" docs docs/_build/html ;;
  *) echo "unknown task '$task': use demo, test, lint or docs" >&2; exit 2 ;;
esac
