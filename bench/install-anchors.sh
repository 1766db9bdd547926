#!/bin/sh
# Install the reference tracers the benchmarks compare probewatch against:
# bpftrace, trace-cmd, strace and perf (Debian: linux-perf).
# Idempotent: packages already present are left alone; run as root.
set -eu

PKGS="bpftrace trace-cmd strace linux-perf"

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-anchors: apt-get not found; install by hand: $PKGS" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-anchors: run as root (apt-get install)" >&2
    exit 1
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-anchors: all present ($PKGS)"
else
    echo "install-anchors: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # refresh the package lists only when they are missing or older than a day
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
        apt-get update -q -o DPkg::Lock::Timeout=600
    fi
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $missing
fi

for t in bpftrace trace-cmd strace perf; do
    if command -v "$t" >/dev/null 2>&1; then
        printf '  %-10s %s\n' "$t" "$("$t" --version 2>&1 | grep -m 1 .)"
    else
        printf '  %-10s MISSING\n' "$t"
    fi
done
