#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run it.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest "$@"
