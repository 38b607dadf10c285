#!/usr/bin/env bash
# Installs whatever airlock needs that is missing, idempotently: Debian packages, npm packages
# (including the pinned Node 24 that every npm script runs on), and the VM image.
# Usage: bash .ci/setup.sh --for start|test
set -euo pipefail
cd "$(dirname "$0")/.."

purpose=start
while [ $# -gt 0 ]; do
  case "$1" in
    --for) purpose="$2"; shift 2 ;;
    *) echo "setup: unknown argument $1 (use --for start|test)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31msetup:\033[0m %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null && command -v npm >/dev/null \
  || die "Node.js and npm are required (Debian: apt-get install nodejs npm). airlock pins its own Node 24 through npm."

# --- Debian packages -------------------------------------------------------------------------
packages=(git qemu-system-x86 qemu-utils socat ca-certificates openssl)
# postgresql: the store tests run on SQLite and on a throwaway PostgreSQL cluster each.
if [ "$purpose" = test ]; then packages+=(chromium curl dpkg-dev postgresql); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    die "missing Debian packages: ${missing[*]}. Run as root, or install them first: sudo apt-get install -y ${missing[*]}"
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: check this machine's network access to its Debian archive"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed: check this machine's network access to its Debian archive"
fi

# --- npm packages ----------------------------------------------------------------------------
stamp=node_modules/.airlock-stamp
want=$(sha256sum package-lock.json package.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # npm ci: exactly the lock file, which lists every platform's optional packages, so a fresh
  # clone's tree stays clean after set-up.
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error \
    || die "npm ci failed: check access to the npm registry (npm config get registry) and retry"
  sha256sum package-lock.json package.json | sha256sum | cut -d' ' -f1 > "$stamp"
fi
[ -x node_modules/.bin/node ] || die "node_modules/.bin/node is missing: the pinned Node 24 did not install; rerun npm ci"

# --- VM image ----------------------------------------------------------------------------------
if [ -f vm-images/build.sh ]; then
  bash vm-images/build.sh
  [ -f vm-images/prune.sh ] && bash vm-images/prune.sh
fi

# --- test fixtures ------------------------------------------------------------------------------
if [ "$purpose" = test ]; then
  bash .ci/debian-fixture.sh
fi

say "ready (Node $(node_modules/.bin/node -v), purpose: $purpose)"
