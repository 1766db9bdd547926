#!/usr/bin/env bash
# Install probewatch and what it needs at run time on Debian (as root).
#   bash scripts/install.sh            # system packages + the package itself
#   WITH_TESTS=1 bash scripts/install.sh   # + what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# run time: libbpf1 (the eBPF backend's loader); gcc/binutils build the test targets
pkgs=(libbpf1 gcc binutils)
if [ "${WITH_TESTS:-0}" = 1 ]; then
  # tests: anchors to compare with, USDT headers, and the BPF toolchain that
  # rebuilds the committed .bpf.o files to check they are not stale
  pkgs+=(trace-cmd strace systemtap-sdt-dev bpftool clang llvm libbpf-dev make)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
fi

extra=""
[ "${WITH_TESTS:-0}" = 1 ] && extra="[test]"
"$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".${extra}" 2>&1 \
  | grep -v "^WARNING: Location" || true
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

# tracefs is not always mounted at boot
if ! [ -e /sys/kernel/tracing/trace ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
fi
"$PY" -c "import probewatch; print('probewatch', probewatch.__version__, 'installed')"
