#!/usr/bin/env bash
# Removes network namespaces and bridges left by a SuretyNet lab that was killed before it
# could tear itself down (names start with "sn" + 6 hex digits, and "snbr" for bridges).
set -euo pipefail
for namespace in $(ip netns list | awk '{print $1}' | grep -E '^sn[0-9a-f]{6}-[0-9]+$' || true); do
  ip netns del "$namespace" && echo "removed namespace $namespace"
done
for bridge in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep -E '^snbr[0-9a-f]{6}$' || true); do
  ip link del "$bridge" && echo "removed bridge $bridge"
done
