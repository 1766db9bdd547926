#!/bin/sh
# Rebuild the BPF objects shipped in src/probewatch/collect/bpf/obj/<arch>/, for every
# architecture probewatch ships (x86_64 -> obj/x86_64, aarch64 -> obj/arm64), on any host.
#
#   scripts/build-bpf.sh           rebuild in place
#   scripts/build-bpf.sh --check   rebuild into a temporary directory and fail (exit 1)
#                                  when a committed object differs (stale) or is missing
#   ARCHS=aarch64 scripts/build-bpf.sh   only these architectures (space separated)
#
# Needs (Debian 12): apt-get install clang llvm libbpf-dev, and libc6-dev-arm64-cross
# (its linux-libc-dev-arm64-cross has the arm64 <asm/unistd.h> for obj/arm64/syscalls.tbl).
#
# Each architecture compiles against its own vmlinux.h (x86/, arm64/), made from that
# kernel's BTF. arm64/vmlinux.h comes from Debian 12's arm64 cloud kernel
# (linux-image-cloud-arm64) under QEMU:
#   run-in-arm64-kernel.sh 'cp /sys/kernel/btf/vmlinux vmlinux.btf'
#   bpftool btf dump file vmlinux.btf format c > src/probewatch/collect/bpf/arm64/vmlinux.h
# The build is reproducible: same sources + same clang -> byte-identical objects
# (relative source paths, -fdebug-prefix-map, DWARF stripped with llvm-strip -g;
# the BTF that CO-RE needs stays). Objects built by another clang version may differ:
# CI should use the Debian 12 clang (14.0.6) that built the committed ones.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/src/probewatch/collect/bpf"
archs=${ARCHS:-x86_64 aarch64}
objdir() { case "$1" in aarch64|arm64) echo arm64;; *) echo "$1";; esac; }

for tool in ${CLANG:-clang} ${STRIP:-llvm-strip} make; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "build-bpf: $tool not found (Debian: apt-get install clang llvm libbpf-dev make)" >&2
		exit 2
	}
done
[ -f /usr/include/bpf/bpf_helpers.h ] || {
	echo "build-bpf: libbpf headers missing (Debian: apt-get install libbpf-dev)" >&2
	exit 2
}
for arch in $archs; do
	case "$arch" in
	aarch64|arm64)
		[ -f /usr/aarch64-linux-gnu/include/asm/unistd.h ] || {
			echo "build-bpf: arm64 UAPI headers missing (Debian: apt-get install libc6-dev-arm64-cross)" >&2
			exit 2
		} ;;
	esac
done

case "${1:-}" in
--check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	stale=0
	for arch in $archs; do
		d=$(objdir "$arch")
		make -s -C "$src" ARCH="$arch" OUT="$tmp/$d" >/dev/null
		for o in "$tmp/$d"/*.bpf.o "$tmp/$d"/syscalls.tbl; do
			name=$(basename "$o")
			committed="$src/obj/$d/$name"
			if [ ! -f "$committed" ]; then
				echo "build-bpf: missing $committed (run scripts/build-bpf.sh)" >&2
				stale=1
			elif ! cmp -s "$o" "$committed"; then
				echo "build-bpf: stale $committed (sources changed; run scripts/build-bpf.sh)" >&2
				stale=1
			fi
		done
		for c in "$src/obj/$d"/*.bpf.o "$src/obj/$d"/syscalls.tbl; do
			[ -f "$c" ] || continue
			[ -f "$tmp/$d/$(basename "$c")" ] || {
				echo "build-bpf: $c has no source any more" >&2
				stale=1
			}
		done
		[ "$stale" = 0 ] && echo "build-bpf: objects in obj/$d are up to date"
	done
	exit "$stale"
	;;
"")
	for arch in $archs; do
		make -C "$src" ARCH="$arch"
	done
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
