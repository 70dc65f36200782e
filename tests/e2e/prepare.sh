#!/usr/bin/env bash
# Prepare what the real-kernel end-to-end tests boot: QEMU, a Debian kernel and a small initramfs.
#
# Idempotent and cached outside the clone, in
#   ${PCIDEVICES_CACHE:-$HOME/.cache/pcidevices}/e2e-<key>/
# where <key> hashes this script and the guest's /init, so a change to either builds anew and an
# unchanged recipe costs one `test -f`. On success the last line on stdout is that directory; all
# progress goes to stderr. Needs root for `apt-get install` (only when a package is missing).
#
# The directory holds:
#   kernel           the Debian kernel (the exact package linux-image-amd64 depends on), as the
#                    uncompressed ELF vmlinux when it has a PVH entry point, else the bzImage
#   initramfs.cpio   busybox + the modules in MODULES and their dependencies + tests/e2e/init.sh
#   kernel-release   e.g. 6.1.0-57-amd64
#   ready            written last; its presence means the directory is complete
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${PCIDEVICES_CACHE:-$HOME/.cache/pcidevices}"
key="$(cat "$here/prepare.sh" "$here/init.sh" | sha256sum | cut -c1-12)"
out="$cache_root/e2e-$key"

# Host tools: QEMU and a static busybox to build the guest from, lspci for the guest to run
# (the guest chroots into the host's root, so a host package is a guest tool too).
packages=(qemu-system-x86 busybox-static pciutils)
# Modules the guest loads; their dependencies are added from modules.dep. A name the kernel has
# built in (or lacks) is skipped, e.g. iommufd is not modular in every build.
MODULES=(
    vfio vfio_pci vfio_pci_core vfio_iommu_type1 iommufd
    e1000e e1000 virtio_net virtio_pci
    9p 9pnet 9pnet_virtio netfs
    nvme nvme_core
    xhci_pci xhci_hcd usbcore usb_common usbhid hid usb_storage ftdi_sio usbserial
)

log() { printf 'prepare.sh: %s\n' "$*" >&2; }

missing_packages() {
    local p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
}

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [ -f "$out/ready" ]; then
    log "cached: $out"
    touch "$out" 2>/dev/null || true # its mtime is its last use: the clean-up below keeps it
    echo "$out"
    exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/e2e.lock"
flock 9
if [ -f "$out/ready" ]; then # another run finished it while we waited
    echo "$out"
    exit 0
fi

work="$(mktemp -d "$cache_root/e2e-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The kernel: resolve the exact image package (old builds leave the mirror, so ask apt, and
# refresh the lists once if the download is gone).
resolve_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
kpkg="$(resolve_kernel_package || true)"
if [ -z "$kpkg" ]; then
    apt_update_once
    kpkg="$(resolve_kernel_package)"
fi
log "kernel package $kpkg"
# The .deb is kept (one version) so a changed recipe rebuilds without downloading again.
debs="$cache_root/debs"
mkdir -p "$debs"
download_kernel() {
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >&2)
}
if ! compgen -G "$debs/${kpkg}_*.deb" >/dev/null; then
    if ! download_kernel; then
        apt_update_once
        kpkg="$(resolve_kernel_package)"
        download_kernel
    fi
fi
deb="$(compgen -G "$debs/${kpkg}_*.deb" | head -n 1)"
find "$debs" -name '*.deb' ! -path "$deb" -delete
dpkg -x "$deb" "$work/kernel"
krel="$(ls "$work/kernel/lib/modules")"
log "kernel release $krel"

# The initramfs: busybox applets, the modules with their dependencies, /init.
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,mnt,tmp,lib/modules/"$krel"}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init"

kmods="$work/kernel/lib/modules/$krel"
/bin/busybox depmod -b "$work/kernel" "$krel"
# modules.dep lines are "kernel/x/y.ko: kernel/a.ko kernel/b.ko"; the name of x/y.ko is "y" with
# '-' and '_' equivalent.
declare -A wanted=()
add_module() {
    local name="${1//-/_}" line path dep
    line="$(awk -F: -v n="$name" '{
        f = $1; sub(/.*\//, "", f); sub(/\.ko(\.[a-z]+)?$/, "", f); gsub(/-/, "_", f)
        if (f == n) { print; exit }
    }' "$kmods/modules.dep")"
    if [ -z "$line" ]; then
        log "module $name: not modular in $krel, skipped"
        return
    fi
    path="${line%%:*}"
    [ -n "${wanted[$path]:-}" ] && return
    wanted[$path]=1
    for dep in ${line#*:}; do
        dep="${dep##*/}"
        dep="${dep%%.ko*}"
        add_module "$dep"
    done
}
for m in "${MODULES[@]}"; do add_module "$m"; done
for path in "${!wanted[@]}"; do
    mkdir -p "$root/lib/modules/$krel/$(dirname "$path")"
    case "$path" in
    *.ko.xz) xz -dc "$kmods/$path" >"$root/lib/modules/$krel/${path%.xz}" ;;
    *.ko.zst) zstd -qdc "$kmods/$path" >"$root/lib/modules/$krel/${path%.zst}" ;;
    *.ko) cp "$kmods/$path" "$root/lib/modules/$krel/$path" ;;
    esac
done
cp "$kmods"/modules.{order,builtin} "$root/lib/modules/$krel/" 2>/dev/null || true
/bin/busybox depmod -b "$root" "$krel"
log "initramfs modules: $(printf '%s ' "${!wanted[@]}" | wc -w)"

# Uncompressed: under TCG every decompression in the guest costs real seconds.
(cd "$root" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) >"$work/initramfs.cpio"

# The kernel. QEMU boots an ELF vmlinux directly through its PVH entry point (CONFIG_PVH), which
# skips the bzImage's own xz decompression: about 10 s of every boot under TCG. The payload starts
# at an xz magic inside the bzImage (as scripts/extract-vmlinux finds it).
mkdir -p "$out.tmp"
vmlinuz="$work/kernel/boot/vmlinuz-$krel"
kernel_format=bzImage
if grep -qx 'CONFIG_PVH=y' "$work/kernel/boot/config-$krel"; then
    for offset in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
        tail -c +$((offset + 1)) "$vmlinuz" >"$work/payload.xz"
        if xz -dc --single-stream "$work/payload.xz" >"$work/vmlinux" 2>/dev/null &&
            [ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
            kernel_format=vmlinux-pvh
            mv "$work/vmlinux" "$out.tmp/kernel"
            break
        fi
    done
fi
[ "$kernel_format" = bzImage ] && cp "$vmlinuz" "$out.tmp/kernel"
log "kernel format $kernel_format"
echo "$kernel_format" >"$out.tmp/kernel-format"
mv "$work/initramfs.cpio" "$out.tmp/initramfs.cpio"
echo "$krel" >"$out.tmp/kernel-release"
echo "$kpkg" >"$out.tmp/kernel-package"
rm -rf "$out"
mv "$out.tmp" "$out"
touch "$out/ready"
# Other recipes' directories unused for a week are dead weight (we hold the lock, so none is
# being built). A recent one stays: another checkout (a branch with another recipe) may boot it
# now, and each cache hit touches its directory.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name 'e2e-*' ! -name "e2e-$key" \
    ! -name 'e2e-build.*' ! -newermt "7 days ago" -exec rm -rf {} +
log "ready: $out"
echo "$out"
