#!/usr/bin/env bash
# Mount the bundled demo image with layerfs, show the merged tree, unmount.
# Usage: examples/demo.sh [LAYERFS]   (default: .venv/bin/layerfs, else layerfs on PATH)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
layerfs=${1:-$here/../.venv/bin/layerfs}
[ -x "$layerfs" ] || layerfs=$(command -v layerfs)
mnt=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-demo.XXXXXX")
cleanup() {
    if grep -qs " $mnt " /proc/mounts; then "$layerfs" umount "$mnt" || "$layerfs" umount --lazy "$mnt"; fi
    rmdir "$mnt"
}
trap cleanup EXIT

echo "== layers, bottom first (examples/demo/layers):"
grep -v '^#' "$here/demo/layers" | sed 's/^/   /'
echo "== layerfs mount examples/demo $mnt"
"$layerfs" mount "$here/demo" "$mnt"
echo "== the merged tree:"
(cd "$mnt" && find . -mindepth 1 \( -type l -printf '   %M %6s  %P -> %l\n' \) -o -printf '   %M %6s  %P\n' | sort -k3)
echo "== etc/hosts was deleted by 2-app (.wh.hosts): $(ls "$mnt/etc/hosts" 2>&1 | sed 's/^ls: //')"
echo "== var/cache/apt was deleted by 2-app, re-created by 3-patch: $(cat "$mnt/var/cache/apt/pkgcache.bin")"
echo "== usr/share/doc/tool is opaque in 3-patch (.wh..wh..opq), CHANGES is gone: $(ls "$mnt/usr/share/doc/tool")"
echo "== etc/passwd comes from 3-patch: $(cat "$mnt/etc/passwd")"
echo "== writing is refused: $(touch "$mnt/new-file" 2>&1 | sed 's/^touch: //')"
echo "== layerfs umount $mnt"
