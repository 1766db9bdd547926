"""ftrace losses put down to probes: a firehose into a tiny ring buffer.

The kernel counts overwritten events per CPU only. A page read after a gap carries a
"missed events" flag (and the count, when the page has room for it); the session puts
a gap down to a probe when the events on both sides of it are that probe's, and says
"per CPU" for the rest. getppid_n makes exactly N getppid calls: delivered + lost per
probe must come to N (plus at most the two events the session enables for itself, the
exec of the target and a rename, which can be overwritten in the same gap: the overload
test allows the same).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .helpers import CLI, json_lines, run_cli, summary_of

SPEC = "t:syscalls:sys_enter_getppid"
N = 400_000


def test_tiny_buffer_losses_are_the_probes(getppid_n: Path, tracefs: str) -> None:
    r = run_cli("trace", SPEC, "--json", "--buffer-kb", "8", "--", str(getppid_n), str(N),
                timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    s = summary_of(r.stderr)
    lines = json_lines(r.stdout)
    assert len(lines) == s["events"][SPEC] == s["total"]
    assert s["lost"] > 0, "an 8 KiB buffer kept up with a firehose: nothing was tested"
    assert sum(s["lost_per_cpu"].values()) == s["lost"]
    assert s["lost_per_cpu_only"] == {}, s
    assert s["lost_per_probe"] == {SPEC: s["lost"]}
    assert N <= s["total"] + s["lost_per_probe"][SPEC] <= N + 2, s
    assert all(json.loads(json.dumps(x))["event"] == "syscalls:sys_enter_getppid"
               for x in lines[:10])


def test_text_summary_names_the_probe_or_says_per_cpu(getppid_n: Path, tracefs: str) -> None:
    # one probe: its name; two probes interleaved (enter, exit): gaps lie between events
    # of both, so what the pages do not count stays "per CPU"
    r = run_cli("trace", SPEC, "--buffer-kb", "8", "--", str(getppid_n), str(N // 2),
                timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert f"({SPEC}: " in last and "per CPU" not in last, last
    for _ in range(3):  # a firehose into 8 KiB: it overruns, but make sure it did
        r = run_cli("trace", SPEC, "t:syscalls:sys_exit_getppid", "--json", "--buffer-kb",
                    "8", "--", str(getppid_n), str(N), timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        s = summary_of(r.stderr)
        if s["lost"] > 0:
            break
    assert s["lost"] > 0
    attributed = sum(s["lost_per_probe"].values())
    assert attributed + sum(s["lost_per_cpu_only"].values()) == s["lost"], s
    assert 2 * N <= s["total"] + s["lost"] <= 2 * N + 2, s  # N enters and N exits
    assert s["lost_per_cpu_only"], s  # some of it cannot be put down to one probe
    for _ in range(3):
        r = run_cli("trace", SPEC, "t:syscalls:sys_exit_getppid", "--buffer-kb", "8",
                    "--", str(getppid_n), str(N), timeout=120)
        last = r.stderr.strip().splitlines()[-1]
        if not last.endswith(" lost 0"):
            break
    assert "per CPU" in last, last


def test_a_lone_event_is_not_held_back(tracefs: str) -> None:
    """Whole pages are spliced and the page a writer is on waits for a later round;
    a CPU whose page never fills must still be read: the one event of a task that
    then sleeps is printed long before the task ends."""
    prog = "import os, time; os.getppid(); time.sleep(4)"
    p = subprocess.Popen([*CLI, "trace", SPEC, "--json", "--", sys.executable, "-c", prog],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        t_line = time.monotonic()
        _, err = p.communicate(timeout=60)
        t_end = time.monotonic()
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-2000:]
    assert json.loads(line)["event"] == "syscalls:sys_enter_getppid"
    assert t_end - t_line > 2.0, (t_end - t_line, err[-500:])
