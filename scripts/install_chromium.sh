#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium where it is missing, for the console's
# browser test (tests/e2e/test_console.py). Needs root (or passwordless sudo) and the
# Debian archive; prints the browser's path. Idempotent: does nothing when one is present.
set -euo pipefail

for candidate in chromium chromium-browser; do
  if command -v "$candidate" >/dev/null 2>&1; then
    command -v "$candidate"
    exit 0
  fi
done

run_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

export DEBIAN_FRONTEND=noninteractive
run_as_root apt-get update -qq
run_as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
