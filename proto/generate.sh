#!/usr/bin/env bash
# Regenerate the Python stubs of proto/v1beta1/api.proto into src/pciplugin/_generated/.
#
# Usage: proto/generate.sh [OUTPUT_ROOT]   (default: <repo>/src)
#
# The .proto is staged under pciplugin/_generated/v1beta1/ so that the generated modules import
# each other as `pciplugin._generated.v1beta1...`; the proto package stays `v1beta1`, which is
# what fixes the gRPC method paths. tests/integration/plugin/test_generated_stubs.py runs this
# script into a temporary directory and checks that the committed files are identical.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
out="${1:-$repo/src}"
python="${PYTHON:-python3}"
if [[ -x "$repo/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
  python="$repo/.venv/bin/python"
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/pciplugin/_generated/v1beta1" "$out/pciplugin/_generated/v1beta1"
cp "$here/v1beta1/api.proto" "$stage/pciplugin/_generated/v1beta1/api.proto"

"$python" -m grpc_tools.protoc \
  --proto_path="$stage" \
  --python_out="$out" \
  --pyi_out="$out" \
  --grpc_python_out="$out" \
  "$stage/pciplugin/_generated/v1beta1/api.proto"

# The gRPC service module has no type information; code under src/ never imports it (the typed
# method table is pciplugin.wire), tests use it as an independent client/server. Tell mypy so.
prepend() {
  { echo "$2"; cat "$1"; } > "$1.tmp"
  mv "$1.tmp" "$1"
}
generated="$out/pciplugin/_generated/v1beta1"
# Keep `ruff format src/` off generated code: it must stay byte-identical to protoc's output.
for module in api_pb2.py api_pb2.pyi api_pb2_grpc.py; do
  prepend "$generated/$module" "# fmt: off"
done
prepend "$generated/api_pb2_grpc.py" "# mypy: ignore-errors"
# protoc's .pyi writes bare `Mapping` (accepts a dict in place of a message): fine, but not strict.
prepend "$generated/api_pb2.pyi" '# mypy: disable-error-code="type-arg"'
