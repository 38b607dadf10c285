#!/usr/bin/env bash
# Removes VM images of earlier recipes from the cache: each upgrade of airlock that changes the
# recipe builds a new image (1.5 GiB), and nothing else ever deletes the old ones. Keeps the current
# recipe's image and the newest other one (a process still running the previous version may boot
# from it). Base snapshots made from a removed image go when airlock next makes one: they name an
# image digest it no longer has.
# Usage: vm-images/prune.sh   (run by .ci/setup.sh after the image is built)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
current="$(bash "$here/build.sh" --print-dir)"
images="$(dirname "$current")"
[ -d "$images" ] || exit 0
ls -1dt "$images"/[0-9a-f]*/ 2>/dev/null | sed 's:/$::' | grep -vxF "$current" | tail -n +2 | while read -r old; do
  [ -f "$old/manifest.json" ] || continue
  printf '\033[1mimage:\033[0m removing the older image %s\n' "$old" >&2
  rm -rf --one-file-system "$old"
done
