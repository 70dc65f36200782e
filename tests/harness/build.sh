#!/usr/bin/env bash
# Build a test-cluster binary once per pin set, into a cache outside the clone, and print its
# path on stdout.
#
#   build.sh        the full harness (embedded etcd, kube-apiserver, kube-controller-manager,
#                   kubectl): what scripts/test and the integration tests use
#   build.sh demo   etcd and kube-apiserver only (Go build tag "demo"): what scripts/demo needs,
#                   about a fifth less to compile; its packages warm Go's build cache for the
#                   full build
#   build.sh --path [full|demo]   print where that binary is (or would be); build nothing
#
# The cache key is a hash of go.mod, go.sum and every *.go file (in byte order of their names):
# a change to any pin or source rebuilds, anything else reuses the binary. Both variants of one
# key live in the same folder (harness, harness-demo). Go's own build cache (GOCACHE) keeps
# rebuilds after a pin bump warm. tests/harness/kube.py computes the same key; keep the two in
# step. Progress (packages compiled so far) goes to stderr so that a cold build is never silent.
set -euo pipefail

only_path=false
if [[ "${1:-}" == "--path" ]]; then
    only_path=true
    shift
fi
variant="${1:-full}"
case "$variant" in
    full) name=harness; tags="" ;;
    demo) name=harness-demo; tags="demo" ;;
    *) echo "usage: build.sh [--path] [full|demo]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/go"
cache_root="${PCIDEVICES_CACHE:-$HOME/.cache/pcidevices}"
key="$(cd "$src" && cat go.mod go.sum $(printf '%s\n' *.go | LC_ALL=C sort) | sha256sum | cut -c1-16)"
out_dir="$cache_root/harness-$key"
binary="$out_dir/$name"

if [[ -x "$binary" ]] || $only_path; then
    echo "$binary"
    exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH; install Go >= 1.26" >&2; exit 1; }
mkdir -p "$out_dir"
# Two test runs starting at once must not both link (or see a half-written binary); the two
# variants share Go's build cache, so they take the same lock and build one after the other.
exec 9>"$out_dir/.lock"
if ! flock -n 9; then
    echo "build.sh: another build of the test cluster is running; waiting for it" >&2
    flock 9
fi
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

start=$SECONDS
cd "$src"
echo "build.sh: building $name ($release) into $out_dir" >&2
echo "build.sh: resolving packages (the first run also downloads the Go modules)..." >&2
total="$(go list -tags "$tags" -deps . | wc -l)"
echo "build.sh: compiling up to $total packages; a cold build takes minutes" >&2

# `go build -v` names each package as it compiles it (cached ones are not named): count them.
progress() {
    local count=0 line
    while IFS= read -r line; do
        case "$line" in
            "#"* | *": "* | go:*) echo "$line" >&2; continue ;;  # compiler and go messages
        esac
        count=$((count + 1))
        if ((count % 100 == 0)); then
            echo "build.sh: $count of at most $total packages compiled ($((SECONDS - start))s)" >&2
        fi
    done
    echo "build.sh: $count packages compiled, linking done ($((SECONDS - start))s)" >&2
}
set +e
CGO_ENABLED=0 go build -v -tags "$tags" -trimpath -ldflags "$ldflags" -o "$binary.tmp" . 2>&1 |
    progress
status="${PIPESTATUS[0]}"
set -e
if [[ "$status" != 0 || ! -x "$binary.tmp" ]]; then
    echo "build.sh: go build failed (exit $status); run tests/harness/build.sh $variant again" >&2
    exit 1
fi
mv "$binary.tmp" "$binary"
echo "build.sh: built $name in $((SECONDS - start))s" >&2
echo "$binary"
