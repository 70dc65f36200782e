#!/usr/bin/env bash
# Build the helm CLI from its Go module once per pin, into a cache outside the clone, and print
# its path on stdout. Mirrors build.sh (the API server): the key is a hash of helm.pin, so a pin
# bump rebuilds and anything else reuses the binary; Go's build cache keeps a rebuild warm.
# tests/harness/helm.py computes the same key; keep the two in step.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pin_file="$here/helm.pin"
cache_root="${PCIDEVICES_CACHE:-$HOME/.cache/pcidevices}"
key="$(sha256sum <"$pin_file" | cut -c1-16)"
out_dir="$cache_root/helm-$key"
binary="$out_dir/helm"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

command -v go >/dev/null || { echo "helm.sh: 'go' is not on PATH; install Go >= 1.26" >&2; exit 1; }
read -r module version <"$pin_file"
mkdir -p "$out_dir"
exec 9>"$out_dir/.lock"
flock 9
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

echo "helm.sh: building $module/cmd/helm@$version into $out_dir; a cold build takes minutes" >&2
start=$SECONDS
tmp_bin="$(mktemp -d "$out_dir/.gobin.XXXXXX")"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
CGO_ENABLED=0 GOBIN="$tmp_bin" GOFLAGS=-trimpath \
    go install -ldflags "$ldflags" "$module/cmd/helm@$version"
mv "$tmp_bin/helm" "$binary"
rmdir "$tmp_bin"
echo "helm.sh: built in $((SECONDS - start))s" >&2
echo "$binary"
