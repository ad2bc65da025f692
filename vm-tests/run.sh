#!/usr/bin/env bash
# Boots Debian 12's stock 6.1 kernel under qemu/KVM and runs this build's capability checks
# (and an `edgetrace run` smoke test) inside it. That kernel has kprobes and fentry, which
# the project VM's 6.18 kernel lacks, so this is where the other capture paths are seen.
#
#   vm-tests/run.sh [--build DIR] [--kernel-package NAME]
#
# No disk image: the guest mounts the host's root read-only over virtio-9p and runs the
# host-built binaries; a busybox initramfs loads the 9p modules and switches to it.
# Exit status: 0 when every check inside the guest passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build="$repo/build"
package=""
while (($#)); do
  case "$1" in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --kernel-package) package=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "vm-tests/run.sh: run as root" >&2; exit 1; }
[[ -x "$build/userspace/cli/edgetrace" ]] || { echo "build first: scripts/build.sh" >&2; exit 1; }
[[ -e /dev/kvm ]] || { echo "vm-tests/run.sh: /dev/kvm is missing" >&2; exit 1; }

missing=()
for p in qemu-system-x86 busybox-static kmod cpio xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cache=/var/tmp/edgetrace-vm
mkdir -p "$cache"
if [[ -z $package ]]; then
  package=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
fi
[[ -n $package ]] || { echo "no Debian 6.1 kernel package found (apt-get update?)" >&2; exit 1; }
kernel_root="$cache/$package"
if [[ ! -d $kernel_root/boot ]]; then
  (cd "$cache" && apt-get download "$package" >/dev/null)
  rm -rf "$kernel_root"
  dpkg-deb -x "$cache/${package}"_*.deb "$kernel_root"
fi
release=$(ls "$kernel_root/lib/modules")
depmod -b "$kernel_root" "$release"

# The initramfs: busybox, the modules 9p root needs (with their dependencies), an init.
initramfs="$cache/initramfs-$release"
rm -rf "$initramfs"
mkdir -p "$initramfs"/{bin,dev,proc,sys,newroot,modules}
cp /bin/busybox "$initramfs/bin/busybox"
modules=$(for m in virtio_pci 9pnet_virtio 9p; do
  modprobe -d "$kernel_root" -S "$release" --show-depends "$m"; done | awk '$1=="insmod" {print $2}' | awk '!seen[$0]++')
: >"$initramfs/modules/order"
for m in $modules; do
  name=$(basename "$m")
  case "$name" in
    *.xz) xz -dc "$m" >"$initramfs/modules/${name%.xz}"; name=${name%.xz} ;;
    *) cp "$m" "$initramfs/modules/$name" ;;
  esac
  echo "$name" >>"$initramfs/modules/order"
done
cat >"$initramfs/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/modules/$m" || echo "vm: insmod $m failed"; done </modules/order
guest=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^guest=//p')
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /newroot || { echo "vm: cannot mount the host root"; poweroff -f; }
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/bash "$guest"
INIT
chmod +x "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$cache/initramfs-$release.cpio.gz"

# The guest binds this kernel's modules (tc's clsact is in sch_ingress) over /lib/modules of
# the host's read-only root, which needs the directory to exist; the project VM has none.
mkdir -p /usr/lib/modules

log="$cache/console-$release.log"
echo "booting $package ($release) with ${VM_ACCEL:-tcg}; console in $log" >&2
timeout "${VM_TIMEOUT:-2400}" qemu-system-x86_64 -accel "${VM_ACCEL:-tcg}" -cpu "${VM_CPU:-max}" -smp 2 -m 2048 -nographic -no-reboot \
  -kernel "$kernel_root/boot/vmlinuz-$release" -initrd "$cache/initramfs-$release.cpio.gz" \
  -append "console=ttyS0 earlyprintk=serial panic=-1 loglevel=4 edd=off guest=$here/guest.sh build=$build modules=$kernel_root/lib/modules gtest=${VM_GTEST_FILTER:-} bench=${VM_BENCH:-}" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on \
  -device virtio-rng-pci >"$log" 2>&1 || true
grep -E "^(vm|VM)[: ]" "$log" | sed 's/\r$//'
grep -q "^VM RESULT: PASS" "$log"
