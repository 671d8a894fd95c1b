#!/usr/bin/env bash
# Install the package with its Dagster extra into .venv and run the main job
# (the block pipeline on the embedded queue; no AWS account needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dagster]"
exec .venv/bin/tqo demo "$@"
