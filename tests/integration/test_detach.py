"""Detaching many BPF links: auto keeps big tracepoint counts on ftrace, and the bpf
backend closes its links from parallel threads (every close waits for an RCU grace
period in the kernel)."""

from __future__ import annotations

import os
import time

import pytest

from conftest import require_bpf  # tests/conftest.py

from .helpers import run_cli, summary_of


@pytest.fixture
def bpf(tracefs: str) -> None:
    require_bpf()


def test_auto_count_of_many_tracepoints_stays_on_ftrace(bpf: None) -> None:
    from probewatch.backends import (
        AUTO_BPF_MAX_TRACEPOINTS,
        _bpf_count_links,
        _tracepoints,
        open_session,
    )
    from probewatch.kernel.tracefs import tracefs_root
    from probewatch.sources.tracepoint import list_tracepoints

    # every syscall's entry and exit: two raw tracepoint links (collect/bpf/count.py)
    syscalls = ["t:syscalls:sys_enter_*", "t:syscalls:sys_exit_*"]
    assert _tracepoints(syscalls) > AUTO_BPF_MAX_TRACEPOINTS
    assert _bpf_count_links(syscalls) == 2
    with open_session("auto", counting=True, specs=syscalls) as s:
        assert s.backend == "bpf"
    # more other tracepoints than that: one link each
    systems = sorted({sy for sy, _ in list_tracepoints(tracefs_root())} - {"syscalls"})
    many: list[str] = []
    while _tracepoints(many) <= AUTO_BPF_MAX_TRACEPOINTS:
        many.append(f"t:{systems[len(many)]}:*")
    assert _bpf_count_links(many) == _tracepoints(many)
    with open_session("auto", counting=True, specs=many) as s:
        assert s.backend == "ftrace"
    few = ["t:syscalls:sys_enter_getppid", "t:sched:sched_process_exec"]
    assert _tracepoints(few) == 2
    with open_session("auto", counting=True, specs=few) as s:
        assert s.backend == "bpf"
    # what cannot be resolved counts 0 here; the backend reports it
    assert _tracepoints(["t:nosuchsystem:nosuchevent", "u:libc:malloc"]) == 0


def test_bpf_detach_of_many_links_in_parallel(bpf: None) -> None:
    """40 tracepoint links: all detached (none left), and faster than one after the
    other would be (40 grace periods in a row take over a second on any machine)."""
    from probewatch.bpf_trace import BpfTraceSession

    with BpfTraceSession(backend="bpf", pids=[os.getpid()]) as s:
        events = s.add("t:syscalls:sys_enter_[a-f]*")
        assert len(events) >= 40
        s.start()
        assert s.count(duration=0.1) is not None
        obj = s._col._obj  # the loaded object and its links
        assert obj is not None and len(obj._links) >= len(events)  # + process tracking
        t0 = time.monotonic()
        obj.detach()
        took = time.monotonic() - t0
        assert obj._links == []
    assert took < 30  # sanity only: timing on a shared machine is no test


def test_trace_count_many_syscalls_bpf_exits(bpf: None) -> None:
    r = run_cli("trace", "t:syscalls:sys_enter_get*", "--count", "--json", "-d", "0.2",
                "--backend", "bpf", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    s = summary_of(r.stderr)
    assert "t:syscalls:sys_enter_get*" in s["events"]
