#!/usr/bin/env bash
# Creates or reuses the project's virtual environment (.venv) with every pinned dependency.
# Reinstalls only when setup.cfg, setup.py or the constraints change, so repeated runs are fast.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SURETYNET_VENV:-$root/.venv}"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python="$candidate"; break
    fi
  done
fi
[[ -n "$python" ]] || { echo "bootstrap: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

stamp="$venv/.suretynet-stamp"
want="$(cat setup.cfg setup.py pyproject.toml scripts/constraints.txt | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip==24.3.1"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c scripts/constraints.txt -e ".[dev,postgres]"
  echo "$want" > "$stamp"
fi
