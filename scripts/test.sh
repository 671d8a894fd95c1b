#!/usr/bin/env bash
# Install everything the checks need, then run them in order; stop at the first failure.
#
#   1. lint and types (.venv):  ruff check, ruff format --check, mypy (strict, the package;
#      python_version in pyproject.toml is the lowest Python the package declares)
#   2. the whole test suite (.venv, the default python3)
#   3. the fast subset, pytest -m "not slow", on the lowest declared Python (.venv310 for
#      3.10), to keep CI under ~15 minutes on 2 cores; the slow tests (real processes and
#      servers) run in step 2 only
#
# Usage: bash scripts/test.sh [pytest args]     (the args go to steps 2 and 3)
# Environment:
#   TQO_LOWEST_PYTHON=/path/to/python3.10   use this interpreter for step 3
#   TQO_SKIP_LOWEST=1                         skip step 3 (say so in the log)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

install() {  # install <venv> <python>
  "$2" -m venv "$1"
  "$1/bin/python" -m pip install --quiet --upgrade pip
  "$1/bin/python" -m pip install --quiet -e ".[dev]"
}

lowest_version() {  # "3.10" from requires-python = ">=3.10"
  sed -n 's/^requires-python *= *">= *\([0-9]*\.[0-9]*\).*/\1/p' pyproject.toml
}

find_python() {  # find_python 3.10: an interpreter of that version, or nothing
  local version=$1 found=""
  if [ -n "${TQO_LOWEST_PYTHON:-}" ]; then
    found=$TQO_LOWEST_PYTHON
  elif command -v "python$version" >/dev/null 2>&1 && "python$version" -c '' 2>/dev/null; then
    found=$(command -v "python$version")
  elif command -v pyenv >/dev/null 2>&1; then
    local installed
    installed=$(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}(\.[0-9]+)?$" | tail -n 1 || true)
    if [ -n "$installed" ]; then
      found=$(PYENV_VERSION=$installed pyenv which "python$version" 2>/dev/null || true)
    fi
  fi
  if [ -n "$found" ] && "$found" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" 2>/dev/null; then
    echo "$found"
  fi
}

step "install (.venv)"
install .venv python3
if [ -f package-lock.json ] && [ ! -L node_modules ]; then  # a linked node_modules is kept as it is
  npm ci --no-audit --no-fund --loglevel=error
fi

step "ruff check"
.venv/bin/ruff check .
step "ruff format --check"
.venv/bin/ruff format --check .
step "mypy (strict, the package)"
.venv/bin/mypy

step "pytest (whole suite, $(.venv/bin/python -V))"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest "$@"

lowest=$(lowest_version)
if [ "${TQO_SKIP_LOWEST:-}" = 1 ]; then
  step "SKIPPED: tests on Python $lowest (TQO_SKIP_LOWEST=1)"
  exit 0
fi
python_lowest=$(find_python "$lowest")
if [ -z "$python_lowest" ]; then
  step "FAILED: no Python $lowest found (the lowest the package declares); set TQO_LOWEST_PYTHON"
  exit 1
fi
step "install (.venv310, Python $lowest: $python_lowest)"
install .venv310 "$python_lowest"
step "pytest -m 'not slow' (Python $lowest)"
PATH="$PWD/.venv310/bin:$PATH" .venv310/bin/python -m pytest -m "not slow" "$@"
