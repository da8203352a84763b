#!/usr/bin/env bash
# Regenerates the Python code in generated/ from the .proto files in protos/.
# This is the only supported way to produce generated/; CI runs
# scripts/check_generated.sh to fail on drift.
#
# Usage: scripts/generate_protos.sh [output_dir]
#   output_dir defaults to <repo>/generated. PYTHON overrides the interpreter
#   (default .venv/bin/python), which must have grpcio-tools installed; the
#   mypy-protobuf plugins are taken from .venv/bin (or PATH).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

output_dir="${1:-generated}"
python="${PYTHON:-.venv/bin/python}"
export PATH="$repo_root/.venv/bin:$PATH"
# Keeps byte-code caches out of the generated tree so that it stays diffable.
export PYTHONDONTWRITEBYTECODE=1

for plugin in protoc-gen-mypy protoc-gen-mypy_grpc; do
  if ! command -v "$plugin" >/dev/null 2>&1; then
    echo "generate_protos: $plugin not found; install mypy-protobuf into .venv" >&2
    exit 1
  fi
done

# Sorted, locale-independent file list: the output must not depend on the
# order the file system returns entries in.
mapfile -t proto_files < <(cd protos && find suretynet -name '*.proto' -type f | LC_ALL=C sort)
if [ "${#proto_files[@]}" -eq 0 ]; then
  echo "generate_protos: no .proto files under protos/suretynet" >&2
  exit 1
fi

mkdir -p "$output_dir"
rm -rf "$output_dir/suretynet"
mkdir -p "$output_dir/suretynet"

"$python" -m grpc_tools.protoc \
  -I protos \
  --python_out="$output_dir" \
  --grpc_python_out="$output_dir" \
  --mypy_out=quiet:"$output_dir" \
  --mypy_grpc_out=quiet:"$output_dir" \
  "${proto_files[@]}"

# The descriptor set keeps the comments (source info), which the Python modules drop:
# the nodes' reflection service serves it, so `grpcurl describe` shows every comment.
"$python" -m grpc_tools.protoc \
  -I protos \
  --include_imports \
  --include_source_info \
  --descriptor_set_out="$output_dir/suretynet/descriptors.binpb" \
  "${proto_files[@]}"

# Every directory under generated/suretynet becomes a regular package so that
# `from suretynet.type.v1 import types_pb2` works with generated/ on sys.path.
find "$output_dir/suretynet" -type d | LC_ALL=C sort | while read -r package_dir; do
  : > "$package_dir/__init__.py"
done

echo "generate_protos: generated ${#proto_files[@]} proto files into $output_dir/suretynet"
