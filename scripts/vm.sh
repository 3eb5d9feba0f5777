#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the test kernel in QEMU with the host's root file system (read-only,
# over 9p) and run one command in it as root.
# Usage: vm.sh KDIR OUTDIR TIMEOUT_SECONDS COMMAND
# COMMAND is run by bash in the checkout; it may not contain double quotes.
# The guest's output is in OUTDIR/output.log, its console (kernel log) in
# OUTDIR/console.log, and the command's exit status in OUTDIR/status
# (missing if the VM died or hung).
# BLKSNAP_VM_DISKS="SIZE..." (optional, for benchmarks) adds a raw virtio
# disk of each size, backed by a sparse file in OUTDIR/disks (or in
# BLKSNAP_VM_DISK_DIR, e.g. /dev/shm) that is removed when the VM ends; the
# guest sees them as /dev/vda, /dev/vdb, ... in order.
set -euo pipefail

. "$(dirname "$0")/env.sh"
kdir=$1 out=$2 timeout=$3 cmd=$4

mkdir -p "$out"
rm -f "$out"/{status,output.log,console.log,dmesg.log}
rm -rf "$out/disks"
disks=()
disk_dir=$out/disks
if [ -n "${BLKSNAP_VM_DISKS:-}" ]; then
	[ -n "${BLKSNAP_VM_DISK_DIR:-}" ] && disk_dir=$(mktemp -d "$BLKSNAP_VM_DISK_DIR/blksnap-vm-disks.XXXXXX")
	mkdir -p "$disk_dir"
	trap 'rm -rf "$disk_dir"' EXIT
fi
i=0
for size in ${BLKSNAP_VM_DISKS:-}; do
	truncate -s "$size" "$disk_dir/disk$i.img"
	disks+=(-drive "file=$disk_dir/disk$i.img,if=virtio,format=raw")
	i=$((i + 1))
done

# Nested KVM does not work on every machine of ours: use it only if a probe
# boot completes, and remember the answer.
accel=tcg
probe=$BLKSNAP_CACHE/kvm-probe
if [ -w /dev/kvm ] && [ "${BLKSNAP_KVM:-auto}" != no ]; then
	if [ ! -f "$probe" ]; then
		echo "vm: probing KVM" >&2
		if timeout 30 qemu-system-x86_64 -enable-kvm -cpu host -m 256 \
			-display none -no-reboot -serial stdio -kernel "$kdir/arch/x86/boot/bzImage" \
			-append "console=ttyS0 panic=-1 init=/bin/true" 2>/dev/null |
			grep -q "Kernel panic"; then
			echo kvm >"$probe"
		else
			echo tcg >"$probe"
		fi
	fi
	accel=$(cat "$probe")
fi
cpu=max
[ "$accel" = kvm ] && cpu=host
# TCG runs the guest tens of times slower than hardware, and the kernel does
# not preempt: a boot-time initcall of the debug kernel (KASAN) can hold a
# CPU past RCU's 21 s stall warning with nothing wrong. A real stall still
# shows, after 60 s.
stall=
[ "$accel" = tcg ] && stall=rcupdate.rcu_cpu_stall_timeout=60

timeout -k 10 "$((timeout + 60))" qemu-system-x86_64 \
	-accel "$accel" -cpu "$cpu" -smp 2 -m 3G \
	-display none -no-reboot -monitor none -serial "file:$out/console.log" \
	-kernel "$kdir/arch/x86/boot/bzImage" \
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=/dev/root \
	-fsdev local,id=out,path="$out",security_model=none \
	-device virtio-9p-pci,fsdev=out,mount_tag=blksnap-out \
	${disks[@]+"${disks[@]}"} \
	-append "console=ttyS0 panic=-1 oops=panic $stall rootfstype=9p \
root=/dev/root rootflags=trans=virtio,version=9p2000.L,msize=1048576 ro \
init=$TOP/scripts/guest-init.sh BLKSNAP_TOP=$TOP BLKSNAP_CACHE=$BLKSNAP_CACHE \
BLKSNAP_TIMEOUT=$timeout \
BLKSNAP_CMD=\"$cmd\"" \
	</dev/null || true
