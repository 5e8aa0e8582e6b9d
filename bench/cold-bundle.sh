#!/bin/sh
# Builds the lab bundle with every cache empty (Go modules, Go build cache, bundle cache) and prints the wall
# time: what a fresh build machine pays once. `make bench-cold-bundle` runs it; about a quarter of an hour.
set -eu
privcloud=${1:-_output/privcloud}
dir=$(mktemp -d /var/tmp/privcloud-cold-XXXXXX)
cleanup() {
	GOMODCACHE="$dir/mod" go clean -modcache 2>/dev/null || true # the module cache is read-only
	rm -rf "$dir"
}
trap cleanup EXIT
start=$(date +%s)
GOMODCACHE="$dir/mod" GOCACHE="$dir/gocache" "$privcloud" bundle build -f e2e/lab/bundle.yaml --cache "$dir/bundle" -o "$dir/lab.tar.zst"
end=$(date +%s)
echo "cold build of the lab bundle (empty module, build and bundle caches): $((end - start)) s, $(du -m "$dir/lab.tar.zst" | cut -f1) MiB"
