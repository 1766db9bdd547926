"""One public Session: the same user code over every backend and every tool engine.

``probewatch.Session(backend="ftrace" | "perf" | "bpf")`` (probe specs added) and
``probewatch.Session(tool="syscalls", ...)`` (the BPF tools' engine) are driven by the
same lines below, on a target that makes exactly N getpgid syscalls
(tests/integration/progs/getpgid_n.c); every count is asserted exactly.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import probewatch
from conftest import build_c, require_bpf
from probewatch.collect.base import Losses
from probewatch.errors import ProbewatchError
from probewatch.event import Event

N = 37


def _backend(name: str) -> Callable[[], Any]:
    def open_() -> Any:
        if name == "bpf":
            require_bpf()
        s = probewatch.Session(backend=name)
        s.add("t:syscalls:sys_enter_getpgid")
        return s

    return open_


def _tool(**kw: Any) -> Callable[[], Any]:
    def open_() -> Any:
        require_bpf()
        return probewatch.Session(tool="syscalls", syscalls=["getpgid"], **kw)

    return open_


#: how each session is made; after this, the user code is the same for all
OPENERS: dict[str, Callable[[], Any]] = {
    "ftrace": _backend("ftrace"), "perf": _backend("perf"), "bpf": _backend("bpf"),
    "tool=syscalls": _tool()}
BPF = {"bpf", "tool=syscalls"}


@pytest.fixture(scope="module")
def getpgid_n(tracefs: str) -> Path:
    return build_c("getpgid_n")


def _the_user_code(s: Any, target: Path, stop_after: int | None = None
                   ) -> tuple[list[Event], dict[str, Any], Losses, int]:
    """What a user writes, whichever session it is: trace a command, iterate the
    events (leaving the loop after ``stop_after``), then ask what was delivered and lost."""
    evs: list[Event] = []
    with s:
        pid = s.trace_command([str(target), str(N)])
        assert s.child_pid == pid > 0
        for ev in s.events(duration=20):
            evs.append(ev)
            if stop_after is not None and len(evs) == stop_after:
                break
        if stop_after is not None:
            s.stop()
        summ = s.summary()
        assert isinstance(summ, probewatch.Summary)
        d = summ.to_dict()
        losses = s.losses()
        rc = s.wait_command()
    assert s.returncode == rc
    return evs, d, losses, pid


@pytest.mark.parametrize("kind", list(OPENERS))
def test_same_code_every_session(kind: str, getpgid_n: Path) -> None:
    s = OPENERS[kind]()
    assert isinstance(s, probewatch.Session)
    evs, d, losses, pid = _the_user_code(s, getpgid_n)
    assert len(evs) == N
    assert all(type(ev) is Event for ev in evs)
    assert {ev.pid for ev in evs} == {pid}
    assert {ev.comm for ev in evs} == {"getpgid_n"}
    assert [ev.ts for ev in evs] == sorted(ev.ts for ev in evs)
    names = {ev.event for ev in evs}
    assert names == ({"syscalls:getpgid"} if kind == "tool=syscalls"
                     else {"syscalls:sys_enter_getpgid"})
    assert {"events", "total", "lost", "lost_per_cpu", "duration"} <= d.keys()
    assert d["total"] == sum(d["events"].values()) == N
    assert d["lost"] == 0 and losses.lost == 0
    assert isinstance(losses, Losses)
    assert d["duration"] > 0
    if kind in BPF:
        assert d["backend"] == "bpf"
        assert losses.generated == d["generated"] == N  # the programs' own count
        assert d["read_failed"] == 0 and d["truncated"] == 0
    if kind == "tool=syscalls":
        assert d["events"] == {"syscalls:getpgid": N}  # a tool counts per event name
        assert {ev.probe for ev in evs} == {"bpf:syscalls"}
        assert {ev.fields["pid"] for ev in evs} == {0}  # getpgid(0)
        assert len({ev.fields["ret"] for ev in evs}) == 1 and evs[0].fields["ret"] > 0
    else:
        assert d["events"] == {"t:syscalls:sys_enter_getpgid": N}


@pytest.mark.parametrize("kind", list(OPENERS))
def test_counts_are_what_was_delivered(kind: str, getpgid_n: Path) -> None:
    """Leaving the loop early: the summary counts the events handed out, not the rest
    of the batch they came in."""
    evs, d, _losses, _pid = _the_user_code(OPENERS[kind](), getpgid_n, stop_after=5)
    assert len(evs) == 5
    assert d["total"] == 5


@pytest.mark.parametrize("kind", list(OPENERS))
def test_run_counts_without_events(kind: str, getpgid_n: Path) -> None:
    with OPENERS[kind]() as s:
        s.trace_command([str(getpgid_n), str(N)])
        s.run(duration=20)
        assert s.summary().to_dict()["total"] == N
        assert s.returncode == 0


def test_tool_counts_in_the_kernel(getpgid_n: Path) -> None:
    """``emit=False, count=True`` (syscount, syscalls -c): no records, counts from maps."""
    with _tool(emit=False, count=True)() as s:
        s.trace_command([str(getpgid_n), str(N)])
        s.run()
        calls, errors, _ns = s.syscall_counts()["getpgid"]
        assert (calls, errors) == (N, 0)
        assert s.summary().to_dict()["total"] == 0  # nothing was delivered


def test_tool_classes() -> None:
    require_bpf()
    from probewatch.analyze.allocs import MallocSession
    from probewatch.bpf_session import BpfSession
    from probewatch.ssl_session import SslSession

    for tool in ("syscalls", "tcpconnect", "bashreadline"):
        with probewatch.Session(tool=tool) as s:
            assert type(s) is BpfSession and s.tool == tool and s.backend == "bpf"
            assert s.probes == {f"bpf:{tool}": []}
    with probewatch.Session(tool="sslsniff", backend="bpf") as s:
        assert type(s) is SslSession
    libc = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6",
                            "/usr/lib/x86_64-linux-gnu/libc.so.6") if Path(p).exists())
    with probewatch.Session(tool="mallocs", objects=[libc]) as s:
        assert type(s) is MallocSession
    with BpfSession("syscalls") as s:  # the old spelling still works
        assert isinstance(s, probewatch.Session)


def test_tool_errors() -> None:
    require_bpf()
    with pytest.raises(ProbewatchError, match=r"unknown tool 'nope' \(have: syscalls, "):
        probewatch.Session(tool="nope")
    with pytest.raises(ProbewatchError, match="the syscalls tool runs on the bpf backend, "
                                              "not 'ftrace'"):
        probewatch.Session(tool="syscalls", backend="ftrace")
    with pytest.raises(ProbewatchError, match=r"Session\(tool=...\) takes its options by "
                                              "keyword"):
        probewatch.Session("bpf", tool="syscalls")
    with probewatch.Session(tool="syscalls") as s:
        with pytest.raises(ProbewatchError, match="the syscalls tool traces its own events"):
            s.add("t:sched:sched_process_exec")
        s.start()
        with pytest.raises(ProbewatchError, match="must come before start"):
            s.trace_command(["true"])


def test_import_stays_light() -> None:
    """``probewatch.Session`` loads no BPF code: the tools' engine comes with tool=."""
    code = ("import sys, probewatch; probewatch.Session; probewatch.Summary; "
            "print(sorted(m for m in sys.modules if 'bpf' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
