#!/usr/bin/env bash
# The main job: brings up a whole local network (SQLite, every node on this host) in a
# temporary directory and runs every flow, printing each message sequence.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/suretynet" demo "$@"
