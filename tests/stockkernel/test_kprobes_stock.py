"""kprobes and kretprobes for real, inside a stock Debian kernel (QEMU).

The machine the suite runs on has no kprobes; /work/shared/tools/run-in-stock-kernel.sh
boots a stock Debian kernel that has them. ONE guest runs a small script (below) that,
through ``probewatch.Session``, arms

    k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring
    kr:do_sys_openat2 ret=retval:s64

runs ``sh`` opening a known file and a missing one, and prints JSON of what it saw plus
what ``kprobe_events`` / ``dynamic_events`` / ``instances/`` hold after the session
closed. The host side checks the exact values. Software emulation: about a minute.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import missing as missing_dep  # tests/conftest.py

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

GUEST = textwrap.dedent('''
    import json, os, sys, time
    import probewatch

    known, missing = sys.argv[1], sys.argv[2]
    t = "/sys/kernel/tracing"
    entry = "k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring"
    ret = "kr:do_sys_openat2 ret=retval:s64"
    out = {"entry": [], "ret": [], "armed": [], "error": None}
    t0 = time.monotonic()
    try:
        with probewatch.Session() as s:
            s.add(entry)
            s.add(ret)
            with open(t + "/kprobe_events") as f:
                out["armed"] = f.read().splitlines()
            # the session never traces itself: a child shell does the opens
            s.trace_command(["/bin/sh", "-c",
                             'true < "$0"; true 2>/dev/null < "$1"; exit 0', known, missing])
            last = {}  # tid -> filename of its open in flight
            for ev in s.events(duration=120):
                if ev.probe == entry:
                    out["entry"].append({"tid": ev.tid, "dfd": ev.fields["dfd"],
                                         "name": ev.fields["name"]})
                    last[ev.tid] = ev.fields["name"]
                else:
                    out["ret"].append({"tid": ev.tid, "ret": ev.fields["ret"],
                                       "name": last.pop(ev.tid, None)})
            out["rc"] = s.wait_command()
            out["summary"] = s.summary().to_dict()
    except Exception as e:  # reported to the host, not hidden
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.monotonic() - t0, 2)
    for f in ("kprobe_events", "dynamic_events"):
        with open(f"{t}/{f}") as fh:
            out["after_" + f] = fh.read()
    out["after_instances"] = os.listdir(t + "/instances")
    print(json.dumps(out))
''')


def test_kprobe_and_kretprobe_on_do_sys_openat2(tmp_path: Path) -> None:
    if not SCRIPT.exists():
        missing_dep(f"stock-kernel runner {SCRIPT} is not present (CI lays shared/ beside "
                    "the clone)")
    if os.geteuid() != 0:
        missing_dep("the stock-kernel runner needs root (QEMU, modules)")
    guest = tmp_path / "guest_kprobes.py"
    guest.write_text(GUEST)
    known = tmp_path / "known-file.txt"
    known.write_text("probewatch\n")
    missing = tmp_path / "no-such-file.txt"
    # sys.executable as it is: a venv's python finds its site-packages through the
    # symlink's directory (realpath would give the bare system interpreter)
    py = sys.executable
    cmd = f"{py} {guest} {known} {missing}"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SK_CWD_RW="0", SK_TIMEOUT="120")
    r = run_guest(SCRIPT, cmd, tmp_path, env)
    assert r.returncode == 0, f"runner failed ({r.returncode}):\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["error"] is None, (out["error"], r.stderr[-2000:])
    assert out["rc"] == 0
    # armed: one kprobe and one kretprobe in this process's group
    assert len(out["armed"]) == 2, out["armed"]
    assert out["armed"][0].startswith("p:probewatch_")
    assert " do_sys_openat2" in out["armed"][0] and "name=+0(%si):ustring" in out["armed"][0]
    assert out["armed"][1].startswith("r")
    # the entry saw both file names with dfd = AT_FDCWD
    opened = [e for e in out["entry"] if e["name"] in (str(known), str(missing))]
    assert [(e["name"], e["dfd"]) for e in opened] == [(str(known), -100),
                                                       (str(missing), -100)]
    # the return: a valid fd for the known file, -ENOENT for the missing one
    rets = {r_["name"]: r_["ret"] for r_ in out["ret"] if r_["name"] in (str(known),
                                                                        str(missing))}
    assert 0 <= rets[str(known)] < 1024, rets
    assert rets[str(missing)] == -2
    # every entry has its return (same thread, in order)
    assert len(out["ret"]) == len(out["entry"])
    assert out["summary"]["lost"] == 0
    # nothing left in the guest's kernel after the session closed
    assert "probewatch" not in out["after_kprobe_events"], out["after_kprobe_events"]
    assert "probewatch" not in out["after_dynamic_events"], out["after_dynamic_events"]
    assert not [n for n in out["after_instances"] if n.startswith("probewatch")]
