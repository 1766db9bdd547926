#!/usr/bin/env bash
# Install probewatch and what it needs at run time on Debian/Ubuntu (as root).
#   bash scripts/install.sh                # system packages + probewatch in a venv
#   WITH_TESTS=1 bash scripts/install.sh   # + what the test suite needs
#
# The system python3 is externally managed (PEP 668), so probewatch goes into its own
# virtual environment (an editable install of this checkout) and `probewatch` onto
# root's PATH as a symlink. Nothing is installed into any system or pyenv Python.
#   PROBEWATCH_VENV  the virtual environment (default /opt/probewatch/venv)
#   PROBEWATCH_BIN   the symlink to its probewatch (default /usr/local/bin/probewatch)
#   PYTHON           the interpreter that creates the venv (default /usr/bin/python3,
#                    whatever python3 comes first on PATH)
# Running it again changes nothing and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd -P)

VENV=${PROBEWATCH_VENV:-/opt/probewatch/venv}
BIN=${PROBEWATCH_BIN:-/usr/local/bin/probewatch}
PY=${PYTHON:-/usr/bin/python3}
WITH_TESTS=${WITH_TESTS:-0}
say() { echo "install.sh: $*" >&2; }

# -- system packages ------------------------------------------------------------------
# run time: libbpf1 (the eBPF backend's loader); gcc/binutils build the test targets
pkgs=(libbpf1 gcc binutils)
if [ "$WITH_TESTS" = 1 ]; then
  # tests: anchors to compare with, USDT headers, and the BPF toolchain that
  # rebuilds the committed .bpf.o files to check they are not stale
  pkgs+=(trace-cmd strace systemtap-sdt-dev bpftool clang llvm libbpf-dev make bpftrace)
  # probewatch ltrace is compared with ltrace; PLT decoding is checked on arm64 objects
  pkgs+=(ltrace gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross)
  # fleet tests: a real NATS JetStream server, the console in a real browser, TLS certs
  pkgs+=(nats-server chromium openssl)
  pkgs+=(curl git)  # tests/integration/test_strace_exact.py traces them
  # sslsniff tests: TLS clients of each library (curl/OpenSSL, gnutls-cli, a Go build)
  pkgs+=(curl openssl gnutls-bin golang-go)
  # red-team variants (tests/behaviors/redteam.py): busybox applets, gdb -p, wget, ssh-keygen
  pkgs+=(busybox gdb wget openssh-client)
  pkgs+=(nodejs libcap2-bin)  # redteam.py: a node reverse shell; redteam2.py: setcap
fi
# the venv module and its pip bootstrap (Debian ships them apart from python3)
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  pkgs+=(python3-venv)
  pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  [ -n "$pyver" ] && pkgs+=("python${pyver}-venv")
fi
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "$@" >/dev/null
  }
}
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
fi
if ! [ -x "$PY" ]; then
  say "no Python at $PY (set PYTHON=/path/to/python3)"
  exit 1
fi

# -- the virtual environment ----------------------------------------------------------
VPY=$VENV/bin/python
real_py='import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))'
want_base=$("$PY" -I -c "$real_py")
have_base=$("$VPY" -I -c "$real_py" 2>/dev/null || true)
if [ "$have_base" != "$want_base" ]; then
  # missing, broken (its base Python went away) or made by another interpreter
  [ -e "$VENV" ] && say "recreating $VENV (python ${have_base:-broken} -> $want_base)"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv --clear "$VENV"
fi

# -- probewatch in it ---------------------------------------------------------------------
# a stamp says what was installed from where; pip runs only when it is out of date
extras=""
[ "$WITH_TESTS" = 1 ] && extras="test"
stamp_file=$VENV/.probewatch-install
stamp_of() {  # SRC, extras and the hash of pyproject.toml
  echo "src=$SRC extras=$1 pyproject=$(sha256sum pyproject.toml | cut -d' ' -f1)"
}
installed_from=$("$VPY" -I -c 'import os, probewatch
print(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(probewatch.__file__)))))' \
  2>/dev/null || true)
up_to_date=0
if [ -f "$stamp_file" ] && [ "$installed_from" = "$SRC" ]; then
  have=$(cat "$stamp_file")
  # an install with the test extras serves a plain install too
  if [ "$have" = "$(stamp_of "$extras")" ] || [ "$have" = "$(stamp_of test)" ]; then
    up_to_date=1
  fi
fi
if [ "$up_to_date" = 0 ]; then
  spec="$SRC"
  [ -n "$extras" ] && spec="$SRC[$extras]"
  say "pip install -e '$spec' into $VENV"
  log=$(mktemp)
  if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -I -m pip install -q -e "$spec" >"$log" 2>&1
  then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  grep -v "^WARNING: Location .* is ignored" "$log" >&2 || true
  rm -f "$log"
  stamp_of "$extras" > "$stamp_file"
fi

# -- `probewatch` on root's PATH -----------------------------------------------------------
target=$VENV/bin/probewatch
if [ "$(readlink "$BIN" 2>/dev/null || true)" != "$target" ]; then
  if [ -e "$BIN" ] && ! [ -L "$BIN" ]; then
    # a console script of an earlier install goes; any other file stays
    if grep -q "probewatch.cli.main" "$BIN" 2>/dev/null; then
      rm -f "$BIN"
    else
      say "$BIN exists and is not probewatch's: set PROBEWATCH_BIN to another path"
      exit 1
    fi
  fi
  mkdir -p "$(dirname "$BIN")"
  ln -sfn "$target" "$BIN"
fi

# tracefs is not always mounted at boot
if ! [ -e /sys/kernel/tracing/trace ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
fi
"$BIN" --version | sed "s|\$| installed: $BIN -> $target|"
