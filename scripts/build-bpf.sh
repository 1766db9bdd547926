#!/bin/sh
# Rebuild the BPF objects shipped in src/probewatch/collect/bpf/obj/<arch>/.
#
#   scripts/build-bpf.sh           rebuild in place
#   scripts/build-bpf.sh --check   rebuild into a temporary directory and fail (exit 1)
#                                  when a committed object differs (stale) or is missing
#
# Needs (Debian 12): apt-get install clang llvm libbpf-dev
# The build is reproducible: same sources + same clang -> byte-identical objects
# (relative source paths, -fdebug-prefix-map, DWARF stripped with llvm-strip -g;
# the BTF that CO-RE needs stays). Objects built by another clang version may differ:
# CI should use the Debian 12 clang (14.0.6) that built the committed ones.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/src/probewatch/collect/bpf"
arch=${ARCH:-$(uname -m)}

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

case "${1:-}" in
--check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	make -s -C "$src" ARCH="$arch" OUT="$tmp" >/dev/null
	stale=0
	for o in "$tmp"/*.bpf.o "$tmp"/syscalls.tbl; do
		name=$(basename "$o")
		committed="$src/obj/$arch/$name"
		if [ ! -f "$committed" ]; then
			echo "build-bpf: missing $committed (run scripts/build-bpf.sh)" >&2
			stale=1
		elif ! cmp -s "$o" "$committed"; then
			echo "build-bpf: stale $committed (sources changed; run scripts/build-bpf.sh)" >&2
			stale=1
		fi
	done
	for c in "$src/obj/$arch"/*.bpf.o "$src/obj/$arch"/syscalls.tbl; do
		[ -f "$c" ] || continue
		[ -f "$tmp/$(basename "$c")" ] || {
			echo "build-bpf: $c has no source any more" >&2
			stale=1
		}
	done
	[ "$stale" = 0 ] && echo "build-bpf: objects in obj/$arch are up to date"
	exit "$stale"
	;;
"")
	make -C "$src" ARCH="$arch"
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
