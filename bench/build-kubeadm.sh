#!/usr/bin/env bash
# Build kubeadm from source through the Go module proxy, for the side-by-side PKI benchmark.
# usage: build-kubeadm.sh VERSION   (prints the path of the binary; cached under $HOME/.cache/privcloud)
# k8s.io/kubernetes is not meant to be required as a module: its go.mod replaces every k8s.io/* staging
# module with a local folder. A wrapper module replaces them with the published staging versions instead.
set -euo pipefail
version=${1:?usage: build-kubeadm.sh vX.Y.Z}
cache=${PRIVCLOUD_CACHE:-$HOME/.cache/privcloud}
out=$cache/bin/kubeadm-$version
if [ -x "$out" ]; then echo "$out"; exit 0; fi
staging=v0.${version#v1.}   # v1.37.1 -> v0.37.1
work=$cache/src/kubeadm-$version
mkdir -p "$work" "$cache/bin"
cd "$work"
# the release's own go.mod lists the staging modules it replaces with local folders
go mod download -json "k8s.io/kubernetes@$version" > download.json || {
  echo "k8s.io/kubernetes@$version cannot be downloaded through the Go module proxy:" >&2; cat download.json >&2; exit 1; }
modfile=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' download.json)
{
  echo "module privcloud.local/kubeadm-build"
  echo "go 1.26"
  echo "require k8s.io/kubernetes $version"
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging"'#p' "$modfile"
} > go.mod
go get "k8s.io/kubernetes/cmd/kubeadm@$version"
CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
  -ldflags "-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${staging#v0.} -X k8s.io/component-base/version.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kubeadm
mv "$out.tmp" "$out"
echo "$out"
