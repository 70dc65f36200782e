#!/usr/bin/env bash
# Build the test-cluster binary (embedded etcd, kube-apiserver, kube-controller-manager, kubectl)
# once per pin set, into a cache outside the clone, and print its path on stdout.
#
# The cache key is a hash of go.mod, go.sum and main.go: a change to any pin rebuilds, anything
# else reuses the binary. Go's own build cache (GOCACHE) keeps rebuilds after a pin bump warm.
# tests/harness/kube.py computes the same key; keep the two in step.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/go"
cache_root="${PCIDEVICES_CACHE:-$HOME/.cache/pcidevices}"
key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
out_dir="$cache_root/harness-$key"
binary="$out_dir/harness"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH; install Go >= 1.26" >&2; exit 1; }
mkdir -p "$out_dir"
# Two test runs starting at once must not both link (or see a half-written binary).
exec 9>"$out_dir/.lock"
flock 9
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

release="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$src/go.mod")"
major="$(echo "$release" | sed -E 's/^v([0-9]+)\..*/\1/')"
minor="$(echo "$release" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')"
pkg="k8s.io/component-base/version"
ldflags="-s -w -X $pkg.gitVersion=$release -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
ldflags="$ldflags -X $pkg.gitTreeState=clean"

echo "build.sh: building harness ($release) into $out_dir; a cold build takes many minutes" >&2
start=$SECONDS
(
    cd "$src"
    CGO_ENABLED=0 \
        go build -trimpath -ldflags "$ldflags" -o "$binary.tmp" .
)
mv "$binary.tmp" "$binary"
echo "build.sh: built in $((SECONDS - start))s" >&2
echo "$binary"
