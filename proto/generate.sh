#!/usr/bin/env bash
# Regenerate the Python stubs of the kubelet APIs under proto/ into src/pciplugin/_generated/.
#
# Usage: proto/generate.sh [OUTPUT_ROOT]   (default: <repo>/src)
#
# | .proto (source)                        | stubs (module)                                  |
# |----------------------------------------|-------------------------------------------------|
# | v1beta1/api.proto (device plugin)      | pciplugin._generated.v1beta1.api_pb2            |
# | dra/v1/api.proto (DRA, official)       | pciplugin._generated.dra.v1.api_pb2             |
# | pluginregistration/v1/api.proto (off.) | pciplugin._generated.pluginregistration.v1...   |
# | dra-health/v1/api.proto (official)     | pciplugin._generated.drahealth.v1.api_pb2       |
#
# Each .proto is staged under pciplugin/_generated/<dir>/ so that the generated modules import
# each other as `pciplugin._generated.<dir>...`; the proto packages stay as the kubelet declares
# them (`v1beta1`, `k8s.io.kubelet.pkg.apis.dra.v1`, `pluginregistration`, `v1` for the DRA
# health service, whose folder is `drahealth` because a module name has no `-`), which is what fixes
# the gRPC method paths. The DRA and plugin-registration files are the kubelet's own, copied
# unchanged from the Go module k8s.io/kubelet (see proto/README.md).
# tests/integration/plugin/test_plugin_generated_stubs.py and
# tests/integration/dra/test_dra_generated_stubs.py run this script into a temporary directory
# and check that the committed files are identical.
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

prepend() {
  { echo "$2"; cat "$1"; } > "$1.tmp"
  mv "$1.tmp" "$1"
}

for api in v1beta1 dra/v1 pluginregistration/v1 dra-health/v1; do
  module="${api//-/}"  # dra-health/v1 -> drahealth/v1 (a Python package)
  mkdir -p "$stage/pciplugin/_generated/$module" "$out/pciplugin/_generated/$module"
  cp "$here/$api/api.proto" "$stage/pciplugin/_generated/$module/api.proto"

  "$python" -m grpc_tools.protoc \
    --proto_path="$stage" \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    "$stage/pciplugin/_generated/$module/api.proto"

  # The gRPC service module has no type information; code under src/ never imports it (the
  # typed method tables are in pciplugin), tests use it as an independent client/server.
  generated="$out/pciplugin/_generated/$module"
  # Keep `ruff format src/` off generated code: it must stay byte-identical to protoc's output.
  for module in api_pb2.py api_pb2.pyi api_pb2_grpc.py; do
    prepend "$generated/$module" "# fmt: off"
  done
  prepend "$generated/api_pb2_grpc.py" "# mypy: ignore-errors"
  # protoc's .pyi writes bare `Mapping` (accepts a dict in place of a message): fine, not strict.
  prepend "$generated/api_pb2.pyi" '# mypy: disable-error-code="type-arg"'
done
