"""probewatch doctor inside a stock Debian kernel (QEMU): kprobes and ftrace are there.

The machine the suite runs on lacks kprobes and the function tracer; a stock
distribution kernel has both, so the same code must answer "yes" there. Runs
/work/shared/tools/run-in-stock-kernel.sh (about 20 s with software emulation).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import missing as missing_dep  # tests/conftest.py
from probewatch.kernel.features import FEATURE_NAMES

from .guest import run_guest

# CI lays shared/ beside the clone; developers have it at /work/shared
SCRIPT = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[3] / "shared/tools/run-in-stock-kernel.sh",
            Path("/work/shared/tools/run-in-stock-kernel.sh"),
        )
        if p.exists()
    ),
    Path("/work/shared/tools/run-in-stock-kernel.sh"),
)
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.stockkernel


def _sections(out: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {"json": []}
    cur = "json"
    for line in out.splitlines():
        if line.startswith("@@"):
            cur = line[2:].strip()
            parts[cur] = []
        else:
            parts[cur].append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


def test_doctor_in_stock_kernel() -> None:
    if not SCRIPT.exists():
        missing_dep(f"stock-kernel runner {SCRIPT} is not present (CI lays shared/ beside "
                    "the clone)")
    if os.geteuid() != 0:
        missing_dep("the stock-kernel runner needs root (QEMU, modules)")
    # sys.executable as it is: a venv's python finds its site-packages through the
    # symlink's directory (realpath would give the bare system interpreter)
    py = sys.executable
    t = "/sys/kernel/tracing"
    cmd = (
        f"{py} -m probewatch doctor --json; echo @@RC; echo $?; "
        f"echo @@INSTANCES; ls {t}/instances; "
        f"echo @@DYNAMIC; cat {t}/dynamic_events; "
        f"echo @@TRACER; cat {t}/current_tracer"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SK_CWD_RW="0", SK_TIMEOUT="120")
    r = run_guest(SCRIPT, cmd, REPO, env)
    assert r.returncode == 0, f"runner failed ({r.returncode}):\n{r.stderr[-3000:]}"
    sec = _sections(r.stdout)
    assert sec["RC"].strip() == "0", r.stderr[-3000:]
    rows = json.loads(sec["json"])
    assert [row["name"] for row in rows] == list(FEATURE_NAMES)
    by = {row["name"]: row for row in rows}
    assert by["kprobe_events"]["available"], by["kprobe_events"]
    assert by["function tracer"]["available"], by["function tracer"]
    assert by["BPF kprobe programs"]["detail"].endswith("(kprobes and uprobes)")
    missing = {row["name"]: row["reason"] for row in rows if not row["available"]}
    assert missing == {}, missing
    # the trial instance and the trial eprobe are gone, the tracer was reset
    assert not [n for n in sec["INSTANCES"].split() if n.startswith("probewatch")]
    assert "probewatch" not in sec["DYNAMIC"]
    assert sec["TRACER"].strip() == "nop"
