#!/usr/bin/env bash
# lab/build-guest.sh [OUTDIR]: build the test guest from Debian's packages.
#
# Output in OUTDIR (default /var/cache/vswitch-lab): vmlinux (the distribution
# kernel, uncompressed, booted through QEMU's PVH entry), vmlinuz (the same,
# compressed, for network boot through iPXE), initrd.gz (busybox
# plus the virtio_net, tulip and 8021q modules and their dependencies) and
# kernel-version. It installs what it needs with apt-get when missing and
# does nothing when OUTDIR already holds a build of this script.
#
# The guest's init reads the kernel command line:
#   vs.ip=10.0.0.1/24                 address of eth0
#   vs.vlans=10:10.0.10.1/24,20:...   VLAN sub-interfaces eth0.VID with addresses
#   vs.cmd=BASE64                     a shell command to run (base64, so spaces survive)
# It prints "VSWITCH-DRIVER eth0 <driver>", runs the command, prints
# "VSWITCH-RESULT rc=<exit code>" on the serial console and powers off.
set -euo pipefail
OUT=${1:-/var/cache/vswitch-lab}
HERE=$(cd "$(dirname "$0")" && pwd)
STAMP=$(sha256sum "$HERE/build-guest.sh" | cut -c1-16)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/initrd.gz" ]; then
  exit 0
fi
export PATH="$PATH:/usr/sbin:/sbin"
need=()
for cmd in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio xz:xz-utils depmod:kmod dnsmasq:dnsmasq-base; do
  command -v "${cmd%%:*}" >/dev/null || need+=("${cmd#*:}")
done
# iPXE: ipxe.lkrn network-boots a legacy (tulip) guest; ipxe-qemu has the virtio NIC's ROM.
[ -f /usr/lib/ipxe/ipxe.lkrn ] || need+=(ipxe)
[ -f /usr/lib/ipxe/qemu/efi-virtio.rom ] || need+=(ipxe-qemu)
# busybox-static, not a dynamic busybox: the guest has no libc.
[ -f /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q "statically linked" || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$PKG" ] || { apt-get update -qq; PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'); }
(cd "$W" && apt-get download "$PKG" >/dev/null 2>&1)
dpkg-deb -x "$W"/"$PKG"_*.deb "$W/k"
K=$(ls "$W/k/lib/modules")

# vmlinuz is a bzImage with an XZ payload: the uncompressed kernel boots faster under TCG.
VMLINUZ=$(ls "$W"/k/boot/vmlinuz-*)
OFF=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1)
[ -n "$OFF" ] || { echo "build-guest: no XZ payload in $VMLINUZ" >&2; exit 1; }
tail -c +$((OFF + 1)) "$VMLINUZ" | xz -dc > "$W/vmlinux" 2>/dev/null || true
file "$W/vmlinux" | grep -q ELF || { echo "build-guest: could not extract vmlinux" >&2; exit 1; }

# Modules with their dependencies, dependencies first.
depmod -b "$W/k" "$K"
DEP="$W/k/lib/modules/$K/modules.dep"
declare -A SEEN
ORDER=()
add() { # add MODULE-PATH (relative) after its dependencies
  local m=$1 d
  [ -n "${SEEN[$m]:-}" ] && return
  SEEN[$m]=1
  for d in $(grep -E "^$m:" "$DEP" | cut -d: -f2); do add "$d"; done
  ORDER+=("$m")
}
for name in virtio_pci virtio_net tulip 8021q; do
  add "$(grep -oE "^[^:]*/$name\.ko" "$DEP" | head -1)"
done

R="$W/initramfs"
mkdir -p "$R"/{bin,proc,sys,dev,lib/modules}
cp "$(readlink -f /bin/busybox)" "$R/bin/busybox"
for m in "${ORDER[@]}"; do
  cp "$W/k/lib/modules/$K/$m" "$R/lib/modules/"
  basename "$m" >> "$R/lib/modules/order"
done
cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m; done
arg() { for w in $(cat /proc/cmdline); do case $w in $1=*) echo "${w#*=}";; esac; done; }
ip link set lo up
for i in $(seq 50); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
echo "VSWITCH-DRIVER eth0 $(basename "$(readlink /sys/class/net/eth0/device/driver)")"
ip link set eth0 up
[ -n "$(arg vs.ip)" ] && ip addr add "$(arg vs.ip)" dev eth0
for v in $(arg vs.vlans | tr , ' '); do
  id=${v%%:*}; a=${v#*:}
  ip link add link eth0 name eth0.$id type vlan id $id && ip link set eth0.$id up && ip addr add "$a" dev eth0.$id
done
rc=0
cmd=$(arg vs.cmd)
[ -n "$cmd" ] && { echo "$cmd" | base64 -d > /cmd.sh; sh /cmd.sh; rc=$?; }
echo "VSWITCH-RESULT rc=$rc"
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$W/initrd.gz")
cp "$VMLINUZ" "$W/vmlinuz"
mv "$W/vmlinux" "$W/vmlinuz" "$W/initrd.gz" "$OUT/"
echo "$K" > "$OUT/kernel-version"
echo "$STAMP" > "$OUT/stamp"
echo "guest built in $OUT: kernel $K, modules: ${ORDER[*]##*/}" >&2
