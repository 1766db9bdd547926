"""kprobes on the perf backend for a command that forks, inside a stock Debian kernel.

A kprobe PMU event cannot be inherited: the child's copy reads the function's name from
the forking process's memory at the tracer's address, and the kernel fails the fork
("sh: Cannot fork"). So a session that follows processes defines its kprobes in
tracefs (``kprobe_events``) and opens them as tracepoints, which inherit. ONE guest
counts ``k:`` and ``kr:do_sys_openat2`` over a shell that forks three ``cat``s, on perf
and on ftrace: the command must succeed, both backends must count the same, every entry
must have its return, and nothing may stay in ``kprobe_events``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import missing as missing_dep  # tests/conftest.py

from .guest import run_guest
from .test_kprobes_stock import REPO, SCRIPT

pytestmark = pytest.mark.stockkernel

GUEST = r'''
import json, subprocess, sys
out = {}
cmd = "cat {0} >/dev/null; cat {0} >/dev/null; (cat {0} >/dev/null)".format(sys.argv[1])
for b in ("perf", "ftrace"):
    r = subprocess.run([sys.executable, "-m", "probewatch", "trace", "--backend", b,
                        "--count", "--json", "k:do_sys_openat2", "kr:do_sys_openat2",
                        "--", "sh", "-c", cmd], capture_output=True, text=True)
    summ = next((json.loads(x)["summary"] for x in reversed(r.stderr.splitlines())
                 if x.startswith('{"summary"')), None)
    out[b] = {"rc": r.returncode, "summary": summ, "stderr": r.stderr[-1500:]}
with open("/sys/kernel/tracing/kprobe_events") as f:
    out["after_kprobe_events"] = f.read()
print(json.dumps(out))
'''


def test_perf_kprobes_follow_a_forking_command(tmp_path: Path) -> None:
    if not SCRIPT.exists():
        missing_dep(f"stock-kernel runner {SCRIPT} is not present (CI lays shared/ beside "
                    "the clone)")
    if os.geteuid() != 0:
        missing_dep("the stock-kernel runner needs root (QEMU, modules)")
    guest = tmp_path / "guest_perf_kprobes.py"
    guest.write_text(GUEST)
    known = tmp_path / "known-file.txt"
    known.write_text("probewatch\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SK_CWD_RW="0", SK_TIMEOUT="150")
    r = run_guest(SCRIPT, f"{sys.executable} {guest} {known}", tmp_path, env)
    assert r.returncode == 0, f"runner failed ({r.returncode}):\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    perf, ftrace = out["perf"], out["ftrace"]
    assert perf["rc"] == 0, perf["stderr"]  # the forks succeeded (no "Cannot fork")
    assert "Cannot fork" not in perf["stderr"]
    assert "defined in tracefs (kprobe_events) rather than through the kprobe PMU" \
        in perf["stderr"]
    assert ftrace["rc"] == 0, ftrace["stderr"]
    ev = perf["summary"]["events"]
    # three cats each open their file, plus the loader's opens of sh and the cats
    assert ev["k:do_sys_openat2"] >= 3
    assert ev["kr:do_sys_openat2"] == ev["k:do_sys_openat2"]
    assert ev == ftrace["summary"]["events"]
    assert perf["summary"]["lost"] == 0
    assert "probewatch" not in out["after_kprobe_events"]
