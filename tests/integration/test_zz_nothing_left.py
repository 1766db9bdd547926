"""Runs last (see tests/conftest.py): nothing of probewatch's remains in the kernel."""

from __future__ import annotations

import os
import re

import pytest


@pytest.mark.integration
def test_zz_nothing_left(tracefs: str) -> None:
    from probewatch.kernel.tracefs import owned_leftovers, sweep_stale

    # the sweep removes only objects of dead owners; every test must have cleaned
    # up itself, so leftovers here are defects even if their owner is dead
    left = [x for x in owned_leftovers(tracefs) if not _foreign_live_owner(x)]
    assert left == [], f"probewatch objects left in tracefs: {left}"
    for f in ("uprobe_events", "kprobe_events", "dynamic_events"):
        p = os.path.join(tracefs, f)
        if os.path.exists(p):
            with open(p) as fh:
                text = fh.read()
            ours = [
                line for line in text.splitlines()
                if "probewatch" in line and not _foreign_live_owner(line)
            ]
            assert ours == [], f"{f} still holds: {ours}"
    inst = os.listdir(os.path.join(tracefs, "instances"))
    assert not [
        i for i in inst if i.startswith("probewatch") and not _foreign_live_owner(i)
    ], inst
    with open(os.path.join(tracefs, "set_event")) as fh:
        top = fh.read().split()
    assert top == [], f"events left enabled in the top-level buffer: {top}"
    assert sweep_stale(tracefs) == []
    # the top-level settings as the suite found them (a tracer run beside ours, such
    # as trace-cmd, must be put back: tracing_on 0 makes every trace_marker write fail)
    from tests.conftest import TOP_AT_START

    now = {}
    for f in TOP_AT_START:
        with open(os.path.join(tracefs, f)) as fh:
            now[f] = fh.read()
    assert now == TOP_AT_START


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _foreign_live_owner(obj: str) -> bool:
    """An object whose owner is a live probewatch process that this test run did not
    start (a developer's trace running beside the suite) is not debris of the suite."""
    m = re.search(r"probewatch[-_](\d+)", obj)
    if not m:
        return False
    pid = int(m.group(1))
    if not os.path.exists(f"/proc/{pid}"):
        return False
    me = os.getpid()
    while pid > 1:
        if pid == me:
            return False
        pid = _ppid(pid)
    return True
