#!/usr/bin/env bash
# Fails when generated/ differs from what scripts/generate_protos.sh produces
# from protos/ now. Run by CI; fix drift by running scripts/generate_protos.sh
# and committing the result.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scratch_dir="$(mktemp -d)"
trap 'rm -rf "$scratch_dir"' EXIT

scripts/generate_protos.sh "$scratch_dir" >/dev/null

if [ ! -d generated/suretynet ]; then
  echo "check_generated: generated/suretynet is missing; run scripts/generate_protos.sh" >&2
  exit 1
fi

if ! diff -r -x __pycache__ -x '*.pyc' "$scratch_dir/suretynet" generated/suretynet; then
  echo "check_generated: generated/ is out of date with protos/ (diff above)." >&2
  echo "check_generated: run scripts/generate_protos.sh and commit generated/." >&2
  exit 1
fi

echo "check_generated: generated/ matches protos/"
