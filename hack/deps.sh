#!/usr/bin/env bash
# Checks and installs what privcloud's two newcomer commands need on a Debian or Ubuntu machine, before any long
# build starts: `make lab` (lab) and `make test` (test: lab plus the integration tests' tools). .ci/run uses it
# too. Each check fails in seconds with the command that fixes it.
set -euo pipefail

what=${1:-test}
case "$what" in
  lab)  # the lab image (debootstrap), hosts (systemd-nspawn in network namespaces), the bundle build (runc's
        # cgo and seccomp, the test image's busybox)
        pkgs=(make git debootstrap systemd-container iproute2 util-linux gcc libc6-dev libseccomp-dev busybox-static) ;;
  test) # plus the integration tests' own OpenSSH servers, sudo and openssl for the sudo-password tests, pgrep
        pkgs=(make git debootstrap systemd-container iproute2 util-linux gcc libc6-dev libseccomp-dev busybox-static
              openssh-server openssh-client sudo openssl procps) ;;
  *) echo "usage: $0 lab|test" >&2; exit 2 ;;
esac

fail() { echo "privcloud: $1" >&2; shift; for fix in "$@"; do echo "  fix: $fix" >&2; done; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "make $what needs root: the lab makes network namespaces, mounts and boots containers" \
  "sudo make $what"
command -v go >/dev/null || fail "Go is not on PATH" "install Go 1.26 or later to /usr/local/go and add /usr/local/go/bin to PATH"
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(dirname "$0")/../go.mod")
have=$(go env GOVERSION | sed 's/^go//')
[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ] ||
  fail "Go $have is older than the $need go.mod asks for" "install Go $need or later"
[ -d /sys/fs/cgroup ] || fail "no cgroup file system at /sys/fs/cgroup: the lab's hosts need one" "mount the cgroup hierarchies (systemd does at boot)"
cache=${XDG_CACHE_HOME:-$HOME/.cache}
mkdir -p "$cache"
free_gb=$(df -Pk "$cache" | awk 'NR==2 {print int($4/1024/1024)}')
[ "$free_gb" -ge 15 ] || fail "$cache has ${free_gb} GB free; the module cache, build cache and bundles take about 15 GB" \
  "free space there, or point XDG_CACHE_HOME and GOMODCACHE at a larger disk"

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || fail "missing packages (${missing[*]}) and no apt-get: this machine is not Debian or Ubuntu" \
    "install the equivalents of: ${missing[*]}"
  echo "installing: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    fail "apt-get could not install ${missing[*]}" "apt-get update && apt-get install ${missing[*]}"
fi
