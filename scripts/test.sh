#!/usr/bin/env bash
# The whole test suite: lint, format, types, buf lint, generated-code drift, PostgreSQL
# (installed if missing), then pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh"
export PATH="$root/.venv/bin:$PATH"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== buf lint"; buf lint
echo "== generated drift"; scripts/check_generated.sh
# The PostgreSQL tests start their own throwaway cluster; CI machines start with none. A
# developer who cannot install it (not root) gets those tests skipped; CI fails instead.
echo "== postgresql"; python -m nodes.network.postgres install || [[ -z "${CI:-}" ]]
echo "== pytest"; exec pytest "$@"
