#!/usr/bin/env bash
# Installs transformers_zoo (editable) with its dev tools, and the headless browser of the playground test
# (Debian's chromium + chromium-driver) under CI, or as root where apt-get exists and chromium is missing.
# When torch is missing, pin the 2.13.0 CPU build first so pip does not pull a multi-GB CUDA build;
# an existing torch (>=2.4, e.g. a CUDA build on a GPU machine) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"
# the playground test's browser: under CI always (the test fails there without it), elsewhere only as root
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ] && [ -n "${CI:-}" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
        $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
    fi
fi
