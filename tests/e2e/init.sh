#!/bin/sh
# PID 1 of the end-to-end guest (busybox sh inside the initramfs that prepare.sh builds).
#
# It loads the drivers, gives the virtio-net NIC the guest's address and default route (QEMU's
# user-mode stack, restricted: nothing outside the guest is reachable), mounts the host's root
# (9p tag "hostroot", read-only) with the guest's own proc/sys/dev/tmp/run inside it, mounts the
# writable 9p share "e2eout" at /run/pcidevices-e2e and runs its job.sh chrooted, so the
# project's virtualenv runs against this kernel's /sys and /dev/vfio. Then it powers off.
# The host reads the results from the writable share; QEMU's exit status says nothing about them.
export PATH=/bin:/sbin
out=/run/pcidevices-e2e
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "init: $*" >/dev/console; }
halt_now() {
    sync
    poweroff -f
}

say "kernel $(uname -r): loading modules"
# No udev here: nothing loads a driver for a device by its modalias, so every driver a layout
# device boots on is named (nvme: the SR-IOV PF; xhci_pci and the USB drivers: the USB devices).
for m in virtio_pci 9pnet_virtio 9p virtio_net e1000e e1000 vfio_pci vfio_iommu_type1 \
    nvme xhci_pci usbhid usb_storage ftdi_sio; do
    modprobe "$m" 2>/dev/console || say "modprobe $m failed"
done

# The node name the project derives from the hostname (init.sh and layout.GUEST_HOSTNAME agree).
hostname e2e-guest
ip link set lo up
for n in /sys/class/net/*; do
    drv="$(readlink "$n/device/driver" 2>/dev/null)"
    if [ "${drv##*/}" = virtio_net ]; then
        dev="${n##*/}"
        ip link set "$dev" up
        ip addr add 10.0.2.15/24 dev "$dev"
        ip route add default via 10.0.2.2 dev "$dev"
        say "default route via $dev"
    fi
done

r=/mnt/root
mkdir -p "$r"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot "$r"; then
    say "cannot mount the host root"
    halt_now
fi
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t devtmpfs devtmpfs "$r/dev"
# A writable /tmp that still shows the host's /tmp entries (a CI clone or virtualenv may live
# there): a tmpfs with each top-level host entry bind-mounted back, read-only as the rest.
mkdir -p /hosttmp
mount -o bind "$r/tmp" /hosttmp
mount -t tmpfs tmpfs "$r/tmp"
for entry in /hosttmp/* /hosttmp/.[!.]*; do
    name="${entry##*/}"
    if [ -d "$entry" ] && [ ! -L "$entry" ]; then
        mkdir "$r/tmp/$name" && mount -o bind "$entry" "$r/tmp/$name"
    elif [ -f "$entry" ] && [ ! -L "$entry" ]; then
        touch "$r/tmp/$name" && mount -o bind "$entry" "$r/tmp/$name"
    fi
done
mount -t tmpfs tmpfs "$r/run"
mkdir -p "$r$out"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 e2eout "$r$out"; then
    say "cannot mount the result share"
    halt_now
fi

say "running $out/job.sh"
chroot "$r" /bin/sh "$out/job.sh" </dev/console >/dev/console 2>&1
say "job.sh exited $?"
dmesg >"$r$out/dmesg.log"
echo done >"$r$out/init-finished"
umount "$r$out"
halt_now
