#!/usr/bin/env bash
# Run the whole test suite (installing what it needs first), as root on Debian.
#   bash scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WITH_TESTS=1 bash scripts/install.sh
echo "== ruff";  "$PY" -m ruff check src tests $( [ -d bench ] && echo bench )
echo "== bpf objects up to date"; bash scripts/build-bpf.sh --check
echo "== mypy";  "$PY" -m mypy
echo "== pytest"
"$PY" -m pytest -q -p no:cacheprovider "$@"
