#!/usr/bin/env bash
# Writes addons/crds/prometheus-operator.yaml.gz from the operator binary the lab bundle was built with: the
# CRDs privcloud applies are the ones that operator version expects, as it prints them (operator crds).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*name: prometheus-operator-bin, version: \(v[0-9.]*\),.*/\1/p' e2e/lab/bundle.yaml)
cache=${PRIVCLOUD_CACHE:-$HOME/.cache/privcloud/bundle}
bin=""
for b in $(ls -t "$cache"/go/*/prometheus-operator-bin 2>/dev/null); do
  if "$b" --version 2>&1 | grep -q "${version#v}"; then bin=$b; break; fi
done
if [ -z "$bin" ]; then
  echo "no prometheus-operator $version in $cache: run make bundle first" >&2
  exit 1
fi
"$bin" crds | gzip -9n > addons/crds/prometheus-operator.yaml.gz.tmp
mv addons/crds/prometheus-operator.yaml.gz.tmp addons/crds/prometheus-operator.yaml.gz
echo "addons/crds/prometheus-operator.yaml.gz: the CRDs of prometheus-operator $version"
