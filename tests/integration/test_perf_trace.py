"""probewatch trace --backend perf on the live kernel.

- the same JSON (apart from ts/cpu/pids and ASLR) as ftrace and bpf for a tracepoint,
  a uprobe and a uretprobe with arguments, and a uprobe whose argument reads memory;
- a tiny ring loses events, and per probe delivered + lost = generated;
- ``-- COMMAND`` is scoped by per-task events with inherit: exactly the calls of the
  command, its thread, child and grandchild, none of a task beside it;
- uprobes go through the uprobe PMU: nothing in uprobe_events, even after SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c  # tests/conftest.py (pytest puts tests/ on sys.path)

from .helpers import CLI, json_lines, run_cli, summary_of

pytestmark = pytest.mark.integration

BACKENDS = ("ftrace", "perf", "bpf")


@pytest.fixture(scope="module")
def perf(tracefs: str) -> str:
    if not os.path.isdir("/sys/bus/event_source/devices/tracepoint"):
        pytest.skip("kernel without perf tracepoint events (CONFIG_PERF_EVENTS)")
    return tracefs


@pytest.fixture(scope="module")
def target() -> Path:
    return build_c("bpf_trace_target")


@pytest.fixture(scope="module")
def forker() -> Path:
    return build_c("fork_getppid", "-pthread")


def _events(out: str) -> list[dict[str, Any]]:
    return json_lines("\n".join(x for x in out.splitlines() if x.startswith('{"ts"')))


def _trace(backend: str, *args: str) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    r = run_cli("trace", "--json", "--backend", backend, *args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return _events(r.stdout), summary_of(r.stderr), r.stderr


def _norm(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what differs between runs: ts, cpu, pids, the tracer's pid in the group
    name, absolute addresses (ASLR): taken relative to the lowest probed address."""
    out = []
    base = min((e["fields"].get("__probe_ip", 1 << 64) for e in evs), default=0)
    for e in evs:
        assert e["pid"] == e["tid"] == evs[0]["pid"]
        d = {k: v for k, v in e.items() if k not in ("ts", "cpu", "pid", "tid")}
        if d["event"].startswith("probewatch_"):
            d["event"] = "probewatch:" + d["event"].split(":", 1)[1]
        d["fields"] = {k: (v - base if k.startswith("__probe_") else v)
                       for k, v in d["fields"].items()}
        out.append(d)
    return out


def _ours_in_uprobe_events(tracefs: str, pid: int) -> list[str]:
    with open(os.path.join(tracefs, "uprobe_events")) as f:
        return [ln for ln in f.read().splitlines() if f"probewatch_{pid}/" in ln]


def test_same_json_on_all_backends(perf: str, bpf: None, target: Path) -> None:
    t = str(target)
    specs = [
        "t:syscalls:sys_enter_exit_group",
        f"u:{t}:bt_add a=arg0:s32 b=arg1:s64 c=arg1:u8 d=arg1",
        f"ur:{t}:bt_add r=retval:s64",
        f"u:{t}:bt_name s=+0(arg0):string n=arg1:u32",
    ]
    runs = {b: _trace(b, *specs, "--", t, "3") for b in BACKENDS}
    evs, summ, err = runs["perf"]
    assert len(evs) == 10
    for b in ("ftrace", "bpf"):
        assert _norm(evs) == _norm(runs[b][0]), b
    add = [e["fields"] for e in evs if e["probe"] == specs[1]]
    assert [(f["a"], f["b"], f["c"]) for f in add] == [
        (i - 3, i * 1000000007, (i * 1000000007) & 0xFF) for i in range(3)]
    assert [e["fields"]["r"] for e in evs if e["probe"] == specs[2]] == [
        i - 3 + i * 1000000007 for i in range(3)]
    assert [e["fields"]["s"] for e in evs if e["probe"] == specs[3]] == [
        f"item-{i}" for i in range(3)]
    assert evs[-1]["fields"] == {"__syscall_nr": 231, "error_code": 0}
    assert evs[0]["comm"] == "bpf_trace_targe"
    assert summ["backend"] == "perf"
    assert summ["generated"] == summ["events"] == {
        specs[0]: 1, specs[1]: 3, specs[2]: 3, specs[3]: 3}
    assert set(summ["lost_per_probe"].values()) == {0}
    # a traced command forks: its uprobes are defined in tracefs (a uprobe PMU event
    # cannot be inherited), each with a warning that says so
    warnings = [ln for ln in err.splitlines() if ln.startswith("probewatch: warning:")]
    assert len(warnings) == 3 and all("uprobe_events" in w for w in warnings), warnings
    assert sum("bt_name" in w for w in warnings) == 1


def test_tiny_ring_loses_and_accounts_per_probe(perf: str, getppid_n: Path) -> None:
    specs = ["t:syscalls:sys_enter_getppid", "t:syscalls:sys_exit_getppid"]
    n = 200000
    evs, summ, _ = _trace("perf", "--buffer-kb", "4", *specs, "--", str(getppid_n), str(n))
    delivered = {sp: sum(1 for e in evs if e["probe"] == sp) for sp in specs}
    assert summ["events"] == delivered
    assert summ["generated"] == {sp: n for sp in specs}
    for sp in specs:
        assert delivered[sp] + summ["lost_per_probe"][sp] == n, (sp, summ)
    assert summ["lost"] == sum(summ["lost_per_probe"].values()) > 0
    # the kernel's LOST records: every loss but those after the last record written
    assert 0 < summ["lost_records"] <= summ["lost"]
    # per CPU: PERF_FORMAT_LOST (6.0+) has those too, and the few lost side-band records
    # (COMM, EXIT) besides the samples
    per_cpu = sum(summ["lost_per_cpu"].values())
    assert summ["lost"] <= per_cpu <= summ["lost"] + 16, summ


@pytest.mark.parametrize("mode", ["--json", "--count"])
def test_command_scoped_with_inherit(perf: str, forker: Path, getppid_n: Path,
                                     mode: str) -> None:
    n = 5000
    beside = subprocess.Popen([str(getppid_n), "400000", "150"])
    try:
        r = run_cli("trace", "--json", *([mode] if mode == "--count" else []), "--backend",
                    "perf", "t:syscalls:sys_enter_getppid",
                    "--", str(forker), str(n), "200")
    finally:
        beside.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    summ = summary_of(r.stderr)
    # the process, its thread, child and grandchild: 4 n; nothing of the task beside
    assert summ["events"] == {"t:syscalls:sys_enter_getppid": 4 * n}
    assert summ["lost"] == 0
    if mode == "--json":
        evs = _events(r.stdout)
        assert len(evs) == 4 * n
        assert beside.pid not in {e["pid"] for e in evs}
        assert len({e["tid"] for e in evs}) == 4
        assert len({e["pid"] for e in evs}) == 3
        assert {e["comm"] for e in evs} == {"fork_getppid"}


def test_uprobe_pmu_sigkill_leaves_nothing(perf: str, target: Path) -> None:
    proc = subprocess.Popen([*CLI, "trace", "--json", "--backend", "perf",
                             f"u:{target}:bt_add a=arg0:s32", "-d", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _perf_fds(proc.pid) < 2:  # a probe per CPU
            time.sleep(0.05)
        assert _perf_fds(proc.pid) >= 2
        subprocess.run([str(target), "1"], check=True)
        assert _ours_in_uprobe_events(perf, proc.pid) == []  # fd-based: never in tracefs
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _ours_in_uprobe_events(perf, proc.pid) == []
    # a run now arms its own probe on the same function and sees exactly its calls
    evs, summ, _ = _trace("perf", f"u:{target}:bt_add a=arg0:s32", "--", str(target), "2")
    assert [e["fields"]["a"] for e in evs] == [-3, -2]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tracefs_defined_probe_removed_on_signal(perf: str, target: Path, sig: int) -> None:
    """A uprobe whose argument reads memory is defined in tracefs: it must go on ^C and
    SIGTERM (and a later run sweeps it after a SIGKILL, as for ftrace)."""
    proc = subprocess.Popen([*CLI, "trace", "--json", "--backend", "perf",
                             f"u:{target}:bt_name s=+0(arg0):string", "-d", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _ours_in_uprobe_events(perf, proc.pid):
            time.sleep(0.05)
        assert len(_ours_in_uprobe_events(perf, proc.pid)) == 1
        while time.monotonic() < deadline and _perf_fds(proc.pid) < 2:
            time.sleep(0.05)
        time.sleep(0.5)  # past start-up (a ^C then ends the run at once, with 130)
        subprocess.run([str(target), "1"], check=True)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 128 + int(signal.SIGTERM)), err
    assert "Traceback" not in err
    assert _ours_in_uprobe_events(perf, proc.pid) == []


def _perf_fds(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]":
                n += 1
        except OSError:
            continue
    return n


def test_kprobe_without_pmu_is_one_clear_error(perf: str) -> None:
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        pytest.skip("this kernel has the kprobe PMU (the error path cannot be shown)")
    r = run_cli("trace", "--backend", "perf", "k:do_sys_openat2", "-d", "1")
    assert r.returncode == 1
    assert "no kprobe PMU" in r.stderr and "k:do_sys_openat2" in r.stderr
    assert "Traceback" not in r.stderr


def test_session_api_filter_and_pid(perf: str, getppid_n: Path) -> None:
    from probewatch.backends import open_session

    # waits for a line, then execs the calls in the same task (per-task events follow)
    child = subprocess.Popen(["sh", "-c", f'read x; exec {getppid_n} 300'],
                             stdin=subprocess.PIPE)
    assert child.stdin is not None
    try:
        with open_session("perf", pids=[child.pid]) as s:
            assert s.backend == "perf"
            assert s.add("t:syscalls:sys_enter_getppid",
                         filter="__syscall_nr == 110") == ["syscalls:sys_enter_getppid"]
            s.start()
            child.stdin.write(b"go\n")
            child.stdin.close()
            evs = list(s.events(duration=8, max_events=300))
            summ = s.summary()
        assert len(evs) == 300
        assert {e.pid for e in evs} == {child.pid}
        assert {e.comm for e in evs} == {"getppid_n"}  # the exec's COMM record
        assert [e.ts for e in evs] == sorted(e.ts for e in evs)
        assert summ.events == {"t:syscalls:sys_enter_getppid": 300}
    finally:
        child.wait(timeout=20)


def test_auto_counts_filtered_on_perf(perf: str, bpf: None) -> None:
    from probewatch.backends import open_session

    spec = ["t:syscalls:sys_enter_getppid"]
    with open_session("auto", counting=True, specs=spec, user_filter="common_pid > 0") as s:
        assert s.backend == "perf"  # counters take the filter in the kernel
    with open_session("auto", counting=True, specs=spec) as s:
        assert s.backend == "bpf"
    with open_session("auto", specs=spec) as s:
        assert s.backend == "ftrace"


def test_one_session_class(perf: str, bpf: None) -> None:
    import probewatch
    from probewatch.session import FtraceSession, Session, Summary

    got = {}
    for b in ("auto", "ftrace", "perf", "bpf"):
        with probewatch.Session(backend=b) as s:
            assert isinstance(s, Session) and s.backend == ("ftrace" if b == "auto" else b)
            s.add("t:sched:sched_process_exec")
            s.trace_command(["sh", "-c", "/bin/true"])
            got[b] = [(e.event, e.comm, e.fields["filename"]) for e in s.events()]
            summ = s.summary()
            assert isinstance(summ, Summary)
            assert summ.events == {"t:sched:sched_process_exec": 2}
    with probewatch.Session() as s:
        assert isinstance(s, FtraceSession)
    # the same Events from every backend (comm after each exec, as the kernel set it)
    assert got["perf"][1] == ("sched:sched_process_exec", "true", "/bin/true")
    assert got["perf"][0][:2] == ("sched:sched_process_exec", "sh")
    assert got["auto"] == got["ftrace"] == got["perf"] == got["bpf"]


def test_uprobe_on_a_command_that_forks(tracefs: str) -> None:
    """A uprobe PMU event cannot be inherited (the kernel re-reads its path in the
    forking process and fails the fork): a traced command's fork must still work, and
    its children's calls be seen."""
    from tests.integration.helpers import run_cli

    r = run_cli("trace", "--backend", "perf", "--json", "u:libc:getpid", "--", "sh", "-c",
                "/bin/sh -c 'exec /usr/bin/env true' && echo forked-ok")
    assert r.returncode == 0, r.stderr
    assert "Cannot fork" not in r.stderr
    assert "forked-ok" in r.stdout
    assert "defined in tracefs (uprobe_events) rather than through the uprobe PMU" in r.stderr
