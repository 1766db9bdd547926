"""Stacks on the perf backend (PERF_SAMPLE_CALLCHAIN), symbolized: user frames through
the MMAP2 records of the traced command and its ELF symbols (right after it exited),
kernel frames through /proc/kallsyms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import build_c  # tests/conftest.py (pytest puts tests/ on sys.path)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target(tracefs: str) -> Path:
    # -O0 keeps the frame pointers the kernel's user unwinder walks
    return build_c("stack_target", "-fno-omit-frame-pointer", "-O0")


def _names(frames: list[dict]) -> list[str | None]:
    return [f["symbol"] for f in frames]


def test_user_stack_at_uprobe(target: Path) -> None:
    from probewatch.perf_trace import PerfTraceSession

    with PerfTraceSession(stack="user") as s:
        s.add(f"u:{target}:st_f2 x=arg0:s32")
        s.trace_command([str(target), "2"])
        evs = list(s.events())
    assert [e.fields["x"] for e in evs] == [1, 2]
    for e in evs:
        st = e.fields["stack"]
        assert _names(st)[:3] == ["st_f2", "st_f1", "main"]
        assert {f["module"] for f in st[:3]} == {str(target)}
        assert st[0]["offset"] == 0 and st[1]["offset"] > 0  # a return address in st_f1
        assert all(f["addr"] < 1 << 47 for f in st)  # user addresses only
    json.dumps(evs[0].to_dict())  # JSON-ready as it is


def test_kernel_stack_names_the_syscall_path(target: Path) -> None:
    from probewatch.perf_trace import PerfTraceSession

    with PerfTraceSession(stack="kernel") as s:
        s.add("t:sched:sched_process_exec")
        s.trace_command([str(target), "1"])
        evs = list(s.events())
    assert len(evs) == 1
    names = _names(evs[0].fields["stack"])
    assert all(f["module"] == "kernel" for f in evs[0].fields["stack"])
    # the exec tracepoint, reached from the execve syscall's entry path
    assert "bprm_execve" in names and "do_syscall_64" in names
    assert names.index("bprm_execve") < names.index("do_syscall_64")


def test_bad_stack_kind_is_clear() -> None:
    from probewatch.errors import ProbewatchError
    from probewatch.perf_trace import PerfTraceSession

    with pytest.raises(ProbewatchError, match="stack must be user, kernel or both"):
        PerfTraceSession(stack="sideways")
