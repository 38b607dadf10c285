#!/usr/bin/env bash
# Builds the local Debian repository the tests install packages from (no archive is reachable from
# a test): the .deb files of FIXTURE_PACKAGES and their dependencies that the VM image lacks, taken
# from this machine's own Debian archive with apt-get download, indexed with dpkg-scanpackages into
#   $AIRLOCK_CACHE_DIR/debian-fixture/<hash>/dists/bookworm/main/binary-amd64/Packages(.gz)
#   $AIRLOCK_CACHE_DIR/debian-fixture/<hash>/dists/bookworm/Release
#   $AIRLOCK_CACHE_DIR/debian-fixture/<hash>/pool/*.deb
# Idempotent: a finished repository is reused. Prints its directory.
# Usage: bash .ci/debian-fixture.sh [--print-dir]
set -euo pipefail
cd "$(dirname "$0")/.."

FIXTURE_PACKAGES=(python3-pytest)
SUITE=bookworm
say() { printf '\033[1mdebian fixture:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mdebian fixture:\033[0m %s\n' "$*" >&2; exit 1; }

image=$(bash vm-images/build.sh --print-dir)
[ -f "$image/rootfs.ext4" ] || die "no VM image at $image: build it first (bash vm-images/build.sh)"
cache="${AIRLOCK_CACHE_DIR:-/var/cache/airlock}"
# Keyed by what decides its content: the packages asked for and the image's own package list.
image_packages=$(grep -o '"packageListHash":"[^"]*"' "$image/manifest.json" 2>/dev/null || true)
[ -n "$image_packages" ] || image_packages=$(cat "$image/manifest.json" 2>/dev/null || true)
key=$( (echo "${FIXTURE_PACKAGES[*]} $SUITE $image_packages"; cat "$0") | sha256sum | cut -c1-16)
out="$cache/debian-fixture/$key"
if [ "${1:-}" = --print-dir ]; then echo "$out"; exit 0; fi
if [ -f "$out/dists/$SUITE/Release" ]; then say "cached at $out"; echo "$out"; exit 0; fi

for tool in dpkg-scanpackages debugfs apt-get apt-cache; do
  command -v "$tool" >/dev/null || die "$tool is missing: install dpkg-dev and e2fsprogs (bash .ci/setup.sh --for test does)"
done

# What the image has already: the guest's apt will not fetch those, so the fixture need not hold them.
installed=$(debugfs -R 'cat /var/lib/dpkg/status' "$image/rootfs.ext4" 2>/dev/null | awk '/^Package: /{print $2}' | sort -u)
[ -n "$installed" ] || die "cannot read the package list of $image/rootfs.ext4 (debugfs)"
wanted=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${FIXTURE_PACKAGES[@]}" 2>/dev/null | grep -E '^[a-z0-9]' | sed 's/:any$//' | sort -u) \
  || die "apt-cache depends ${FIXTURE_PACKAGES[*]} failed: run apt-get update"
needed=$(comm -23 <(echo "$wanted") <(echo "$installed"))
[ -n "$needed" ] || die "nothing to download: ${FIXTURE_PACKAGES[*]} are all in the image already"

say "downloading $(echo "$needed" | wc -l) packages: $(echo $needed)"
mkdir -p "$cache/debian-fixture"
work=$(mktemp -d "$cache/debian-fixture/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pool" "$work/dists/$SUITE/main/binary-amd64"
# shellcheck disable=SC2086
(cd "$work/pool" && apt-get download -qq $needed) \
  || die "apt-get download failed: check this machine's access to its Debian archive (apt-get update)"
(cd "$work" && dpkg-scanpackages --multiversion pool > "dists/$SUITE/main/binary-amd64/Packages" 2>/dev/null) \
  || die "dpkg-scanpackages failed"
gzip -9nk "$work/dists/$SUITE/main/binary-amd64/Packages"
{
  echo "Origin: airlock-test"
  echo "Label: airlock-test"
  echo "Suite: $SUITE"
  echo "Codename: $SUITE"
  echo "Architectures: amd64"
  echo "Components: main"
  echo "Date: $(LC_ALL=C date -u -d @1767225600 '+%a, %d %b %Y %H:%M:%S UTC')"
  echo "SHA256:"
  for f in main/binary-amd64/Packages main/binary-amd64/Packages.gz; do
    printf ' %s %s %s\n' "$(sha256sum "$work/dists/$SUITE/$f" | cut -d' ' -f1)" "$(stat -c %s "$work/dists/$SUITE/$f")" "$f"
  done
} > "$work/dists/$SUITE/Release"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
say "built at $out"
echo "$out"
