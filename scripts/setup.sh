#!/usr/bin/env bash
# Installs transformers_zoo (editable) with its dev tools.
# When torch is missing, pin the 2.13.0 CPU build first so pip does not pull a multi-GB CUDA build;
# an existing torch (>=2.4, e.g. a CUDA build on a GPU machine) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"
