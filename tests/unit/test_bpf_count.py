"""collect/bpf/count.py without the kernel: syscall numbers, slots, limits."""

from __future__ import annotations

import os

import pytest

from probewatch.collect.bpf.count import (
    EXIT_BASE,
    MAX_TPS,
    TP_BASE,
    CountCollector,
    pid_max,
    syscall_nrs,
)
from probewatch.errors import ProbewatchError


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall numbers")
def test_syscall_numbers_by_tracepoint_name() -> None:
    assert syscall_nrs("getppid") == [110]
    assert syscall_nrs("openat") == [257]
    assert syscall_nrs("newstat") == [4]  # the tracepoint's name for stat
    assert syscall_nrs("no_such_syscall") == []


def test_keys_of_enter_exit_and_other_tracepoints() -> None:
    c = CountCollector(pids=[1])
    c.add_tracepoint(0, "syscalls", "sys_enter_getppid", [110])
    c.add_tracepoint(1, "syscalls", "sys_exit_getppid", [110])
    c.add_tracepoint(2, "sched", "sched_process_fork")
    c.add_tracepoint(3, "sched", "sched_process_exit")
    assert [x.keys for x in c._counts] == [[110], [EXIT_BASE + 110], [TP_BASE], [TP_BASE + 1]]
    assert [x.tp for x in c._counts] == [-1, -1, 0, 1]
    assert c._want() == (True, True)
    assert c.nslots == 4


def test_limits() -> None:
    c = CountCollector()
    with pytest.raises(ProbewatchError, match="no syscall number"):
        c.add_tracepoint(0, "syscalls", "sys_enter_x", [])
    with pytest.raises(ProbewatchError, match="no syscall number"):
        c.add_tracepoint(0, "syscalls", "sys_enter_x", [5000])
    for i in range(MAX_TPS):
        c.add_tracepoint(i, "sched", f"tp{i}")
    with pytest.raises(ProbewatchError, match=f"at most {MAX_TPS}"):
        c.add_tracepoint(MAX_TPS, "sched", "one_more")
    with pytest.raises(ProbewatchError, match="tp_btf or raw_tp"):
        CountCollector(kind="kprobe")


def test_pid_max_is_the_kernels() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        assert pid_max() == int(f.read())
