"""funccount and functrace for real, inside a stock Debian kernel (QEMU) that has
kprobes: a glob (``tcp_v4_*``) counted during a loopback TCP connection, and the calls
of ``do_sys_openat2`` made by ``cat`` with their durations. ONE guest runs both and
prints their JSON; the host checks the values and that nothing stayed armed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from .guest import run_guest
from .test_kprobes_stock import REPO, SCRIPT

pytestmark = pytest.mark.stockkernel

CONNECT = ("import socket; s = socket.create_server(('127.0.0.1', 0)); "
           "c = socket.create_connection(s.getsockname()); a, _ = s.accept(); "
           "c.sendall(b'x'); a.recv(1); c.close(); a.close(); s.close()")

GUEST = """#!/bin/bash
PY="$1"; KNOWN="$2"
echo "== funccount"
"$PY" -m probewatch funccount 'tcp_v4_*' --json -- "$PY" -c "$3"
echo "== rc $?"
echo "== functrace"
"$PY" -m probewatch functrace do_sys_openat2 --json -- cat "$KNOWN"
echo "== rc $?"
echo "== after"
cat /sys/kernel/tracing/kprobe_events
ls /sys/kernel/tracing/instances
"""


def _section(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    i = lines.index(f"== {name}")
    out = []
    for ln in lines[i + 1:]:
        if ln.startswith("== ") and not ln.startswith("== rc"):
            break
        out.append(ln)
    return out


def test_funccount_glob_and_functrace_durations(tmp_path: Path) -> None:
    if not SCRIPT.exists():
        pytest.skip(f"stock-kernel runner {SCRIPT} is not present on this machine")
    if os.geteuid() != 0:
        pytest.skip("the stock-kernel runner needs root (QEMU, modules)")
    guest = tmp_path / "guest_kfunc.sh"
    guest.write_text(GUEST)
    known = tmp_path / "known.txt"
    known.write_text("probewatch\n")
    cmd = f"bash {guest} {sys.executable} {known} \"{CONNECT}\""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SK_CWD_RW="0", SK_TIMEOUT="150")
    r = run_guest(SCRIPT, cmd, tmp_path, env)
    assert r.returncode == 0, f"runner failed ({r.returncode}):\n{r.stderr[-3000:]}"
    fc = _section(r.stdout, "funccount")
    assert fc[-1] == "== rc 0", (fc, r.stderr[-2000:])
    counts = json.loads(fc[-2])["counts"]
    assert len(counts) > 3 and all(k.startswith("tcp_v4_") for k in counts)
    assert counts["tcp_v4_connect"] == 1, counts      # the one connect()
    assert counts.get("tcp_v4_rcv", 0) >= 3, counts   # SYN, ACK, data at least
    ft = _section(r.stdout, "functrace")
    assert ft[-1] == "== rc 0", (ft, r.stderr[-2000:])
    calls = [json.loads(ln) for ln in ft[:-1] if ln.startswith("{")]
    cats = [c for c in calls if c["comm"] == "cat"]
    assert cats and all(c["func"] == "do_sys_openat2" for c in cats)
    assert all(0 < c["duration_us"] < 1_000_000 for c in cats)
    assert all(c["depth"] == 0 for c in cats)
    after = _section(r.stdout, "after")
    assert not [ln for ln in after if "probewatch" in ln], after
