#!/usr/bin/env bash
# Run the whole test suite (installing what it needs first), as root on Debian.
#   bash scripts/test.sh [PYTEST ARGS...]
# Sets PROBEWATCH_CI=1 for pytest: see tests/conftest.py.
# Everything runs with the Python of probewatch's virtual environment (see
# scripts/install.sh; PROBEWATCH_VENV chooses it), whatever python3 is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TESTS=1 bash scripts/install.sh
PY=${PROBEWATCH_VENV:-/opt/probewatch/venv}/bin/python
echo "== ruff";  "$PY" -m ruff check src tests $( [ -d bench ] && echo bench )
echo "== bpf objects up to date"; bash scripts/build-bpf.sh --check
echo "== mypy";  "$PY" -m mypy
echo "== pytest"
# everything install.sh just installed must be used: a missing tool, header, libbpf or
# .bpf.o fails its tests instead of skipping them (tests/conftest.py: missing()); only a
# kernel that lacks a feature still skips, naming it. Hypothesis runs derandomized.
export PROBEWATCH_CI=1
"$PY" -m pytest -q -p no:cacheprovider "$@"
