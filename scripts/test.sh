#!/usr/bin/env bash
# The whole test suite: lint, format, types, buf lint, generated-code drift, then pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh"
export PATH="$root/.venv/bin:$PATH"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== buf lint"; buf lint
echo "== generated drift"; scripts/check_generated.sh
echo "== pytest"; exec pytest "$@"
