"""probewatch trace --backend bpf on the live kernel: the same JSON as --backend ftrace.

The same deterministic targets run under both backends; their events must be equal
apart from ts/cpu (and pid/tid, which differ per run), with uprobe addresses taken
relative to the probed function (ASLR moves them between runs). Filters must select
the same events. Nothing of a run may remain loaded after it ends (normal exit,
SIGINT, SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c, need_tool  # tests/conftest.py

from .helpers import CLI, json_lines, run_cli, summary_of, trace_then_reuse_pid, wait_bpf_attached

pytestmark = pytest.mark.integration

BACKENDS = ("ftrace", "bpf")
GETPPID = "t:syscalls:sys_enter_getppid"



@pytest.fixture(scope="module")
def target() -> Path:
    return build_c("bpf_trace_target")


def _events(out: str) -> list[dict[str, Any]]:
    # a traced command may share stdout: keep only our JSON lines
    return json_lines("\n".join(x for x in out.splitlines() if x.startswith('{"ts"')))


def _trace(backend: str, *args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    r = run_cli("trace", "--json", "--backend", backend, *args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return _events(r.stdout), summary_of(r.stderr)


def _norm(evs: list[dict[str, Any]], drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Drop what legitimately differs between runs: ts, cpu, pids, absolute addresses
    (and the fields in ``drop``, e.g. user pointers)."""
    out = []
    base = min((e["fields"].get("__probe_ip", 1 << 64) for e in evs), default=0)
    for e in evs:
        d = {k: v for k, v in e.items() if k not in ("ts", "cpu", "pid", "tid")}
        if ":" in d["event"] and d["event"].startswith("probewatch_"):
            d["event"] = "probewatch:" + d["event"].split(":", 1)[1]
        d["fields"] = {
            k: (v - base if k.startswith("__probe_") else
                "<pid>" if k in ("pid", "old_pid") and v == e["pid"] else v)
            for k, v in d["fields"].items() if k not in drop
        }
        out.append(d)
    return out


def _loaded_progs() -> dict[int, str]:
    """id -> name of every loaded BPF program (bpftool)."""
    tool = need_tool("bpftool")
    out = subprocess.run([tool, "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"]: p.get("name", "") for p in json.loads(out or "[]")}


def _bpf_progs_of(pid: int) -> dict[int, str]:
    """id -> name of the BPF programs a process holds an fd of (/proc/PID/fdinfo)."""
    ids = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return {}
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            continue
    loaded = _loaded_progs()
    return {i: loaded[i] for i in ids if i in loaded}


def _gone(ids: dict[int, str], timeout: float = 10.0) -> bool:
    """True once none of these programs is loaded any more (freeing is RCU-deferred)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not set(ids) & set(_loaded_progs()):
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------ tracepoints


def test_getppid_exact_and_identical(bpf: None, getppid_n: Path) -> None:
    runs = {b: _trace(b, "t:syscalls:sys_enter_getppid", "--", str(getppid_n), "5000")
            for b in BACKENDS}
    evs, summ = runs["bpf"]
    assert len(evs) == 5000
    assert summ["events"] == {"t:syscalls:sys_enter_getppid": 5000}
    assert summ["lost"] == 0 and summ["backend"] == "bpf"
    assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)
    assert {e["pid"] for e in evs} == {evs[0]["tid"]}
    assert _norm(evs) == _norm(runs["ftrace"][0])
    assert evs[0]["comm"] == "getppid_n"
    assert evs[0]["fields"] == {"__syscall_nr": 110}


def test_exec_filenames_identical(bpf: None) -> None:
    cmd = ["--", "sh", "-c", "/bin/true; /bin/echo hi >/dev/null"]
    files = {}
    for b in BACKENDS:
        evs, _ = _trace(b, "t:sched:sched_process_exec", *cmd)
        files[b] = [e["fields"]["filename"] for e in evs]
        assert [set(e["fields"]) for e in evs] == [{"filename", "pid", "old_pid"}] * 3
        assert all(e["fields"]["pid"] == e["pid"] for e in evs)
    assert files["bpf"] == files["ftrace"]
    assert files["bpf"][1:] == ["/bin/true", "/bin/echo"]


def test_count_mode_counts_in_kernel(bpf: None, getppid_n: Path) -> None:
    r = run_cli("trace", "--count", "--json", "--backend", "bpf",
                "t:syscalls:sys_enter_getppid", "--", str(getppid_n), "200000", "0", "7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == ""
    s = summary_of(r.stderr)
    assert s["events"] == {"t:syscalls:sys_enter_getppid": 200000}
    assert s["lost"] == 0


def test_glob_and_max_events(bpf: None, getppid_n: Path) -> None:
    evs, s = _trace("bpf", "t:syscalls:sys_enter_getpp*", "-n", "10", "--",
                    str(getppid_n), "1000")
    assert len(evs) == 10
    assert {e["probe"] for e in evs} == {"t:syscalls:sys_enter_getpp*"}
    assert s["events"] == {"t:syscalls:sys_enter_getpp*": 10}


# ------------------------------------------------------------------ uprobes


def test_uprobe_args_identical(bpf: None, target: Path) -> None:
    t = str(target)
    specs = [
        f"u:{t}:bt_add a=arg0:s32 b=arg1:s64 c=arg1:u8 d=arg1",
        f"ur:{t}:bt_add r=retval:s64",
        f"u:{t}:bt_name s=+0(arg0):string n=arg1:u32 z=arg0:u8[4] bad=+1000000(arg0):string",
        f"u:{t}:bt_pair x=+0(arg0):s32 y=+8(arg0):s64 l=+0(+16(arg0)):string",
    ]
    runs = {b: _trace(b, *specs, "--", t, "3") for b in BACKENDS}
    evs, summ = runs["bpf"]
    assert len(evs) == 12
    assert _norm(evs) == _norm(runs["ftrace"][0])
    add = [e["fields"] for e in evs if e["probe"] == specs[0]]
    assert [(f["a"], f["b"]) for f in add] == [(i - 3, i * 1000000007) for i in range(3)]
    ret = [e["fields"] for e in evs if e["probe"] == specs[1]]
    assert [f["r"] for f in ret] == [i - 3 + i * 1000000007 for i in range(3)]
    assert ret[0]["__probe_func"] == add[0]["__probe_ip"]
    names = [e["fields"] for e in evs if e["probe"] == specs[2]]
    assert [(f["s"], f["n"], f["bad"]) for f in names] == [(f"item-{i}", i, "") for i in range(3)]
    assert names[0]["z"] == list(b"item")
    pairs = [e["fields"] for e in evs if e["probe"] == specs[3]]
    assert [(f["x"], f["y"], f["l"]) for f in pairs] == [(i, -i, f"pair-{i}") for i in range(3)]
    assert evs[0]["event"].startswith("probewatch_")
    assert summ["read_failed"] == 3  # bad=: one failed read per call, counted


def test_uprobe_unsupported_kinds_are_clear(bpf: None) -> None:
    r = run_cli("trace", "--backend", "bpf", "U:/bin/true:foo", "-d", "1")
    assert r.returncode == 1
    assert "bpf backend does not support usdt" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize("spec,filt,cmd", [
    ("t:sched:sched_process_exec", 'filename ~ "*echo"',
     ["sh", "-c", "/bin/true; /bin/echo x >/dev/null"]),
    ("t:sched:sched_process_exec", '!(filename ~ "*echo") && comm != "nosuch"',
     ["sh", "-c", "/bin/true; /bin/echo x >/dev/null"]),
    ("t:syscalls:sys_enter_openat", "flags & 0x80000 || dfd == 0xffffff9c && mode > 0",
     ["cat", "/etc/hostname"]),
    ("t:syscalls:sys_enter_openat", "(common_pid > 1) && flags <= 0x80000",
     ["cat", "/etc/hostname"]),
])
def test_filter_same_on_both(bpf: None, spec: str, filt: str, cmd: list[str]) -> None:
    runs = {b: _trace(b, spec, "--filter", filt, "--", *cmd) for b in BACKENDS}
    assert runs["bpf"][0], runs
    drop = ("filename",) if "openat" in spec else ()  # a user pointer: ASLR
    assert _norm(runs["bpf"][0], drop) == _norm(runs["ftrace"][0], drop)


def test_uprobe_filter_same_on_both(bpf: None, target: Path) -> None:
    spec = f"u:{target}:bt_name s=+0(arg0):string n=arg1:u32"
    runs = {b: _trace(b, spec, "--filter", 'n >= 2 && s ~ "item-*"', "--", str(target), "5")
            for b in BACKENDS}
    assert [e["fields"]["n"] for e in runs["bpf"][0]] == [2, 3, 4]
    assert _norm(runs["bpf"][0]) == _norm(runs["ftrace"][0])


@pytest.mark.parametrize("filt,msg", [
    ("bogus == 1", "Field not found"),
    ("dfd == -100", "Illegal integer value"),
    ('filename ~ "*x"', "pointer field"),
    ("(dfd == 1", "Unbalanced parens"),
])
def test_bad_filter_is_one_clear_error(bpf: None, filt: str, msg: str) -> None:
    r = run_cli("trace", "--backend", "bpf", "t:syscalls:sys_enter_openat", "--filter", filt,
                "-d", "1")
    assert r.returncode == 1
    assert msg in r.stderr and "^" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------ cleanup


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_leaves_nothing(bpf: None, sig: int) -> None:
    proc = subprocess.Popen([*CLI, "trace", "--json", "--backend", "bpf",
                             "t:sched:sched_process_exec", "-d", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_bpf_attached(proc)  # the link is there: the tracepoint fires into the ring
    ours = _bpf_progs_of(proc.pid)
    assert "pw_tp" in ours.values()
    subprocess.run(["/bin/true"], check=True)  # its exec record is written synchronously
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == (0 if sig == signal.SIGINT else 143), (proc.returncode, err)
    assert "Traceback" not in err
    if sig == signal.SIGINT:  # ^C: what was captured is delivered, then the summary
        assert any(e["fields"]["filename"] == "/bin/true" for e in _events(out))
        assert summary_of(err)["backend"] == "bpf"
    assert _gone(ours)


def test_exception_path_closes(bpf: None) -> None:
    from probewatch.bpf_trace import BpfTraceSession

    with pytest.raises(RuntimeError), BpfTraceSession() as s:
        s.add("t:sched:sched_process_exec")
        s.start()
        ours = _bpf_progs_of(os.getpid())
        assert "pw_tp" in ours.values()
        raise RuntimeError("boom")
    assert _bpf_progs_of(os.getpid()) == {}
    assert _gone(ours)


def test_session_api_pid_filter(bpf: None, getppid_n: Path) -> None:
    from probewatch.backends import open_session

    child = subprocess.Popen([str(getppid_n), "300", "700"])
    try:
        with open_session("bpf", pids=[child.pid]) as s:
            assert s.add("t:syscalls:sys_enter_getppid") == ["syscalls:sys_enter_getppid"]
            evs = list(s.events(duration=8, max_events=300))
            summ = s.summary()
        assert len(evs) == 300
        assert {e.pid for e in evs} == {child.pid}
        assert summ.events == {"t:syscalls:sys_enter_getppid": 300}
    finally:
        child.wait(timeout=20)


def test_auto_picks_ftrace(bpf: None) -> None:
    from probewatch.backends import open_session
    from probewatch.bpf_trace import BpfTraceSession
    from probewatch.perf_trace import PerfTraceSession
    from probewatch.session import FtraceSession

    with open_session("auto") as s:  # streaming: ftrace
        assert type(s) is FtraceSession and s.backend == "ftrace"
    with open_session("auto", counting=True, specs=[GETPPID], user_filter="pid > 1") as s:
        assert type(s) is PerfTraceSession  # a filter: counted in the kernel by perf
    with open_session("auto", counting=True, specs=[GETPPID]) as s:
        assert type(s) is BpfTraceSession  # counting without a filter: in the kernel


def test_auto_count_is_bpf_in_the_cli(bpf: None, getppid_n: Path) -> None:
    """README: `auto` picks bpf for `trace --count` without a filter, perf with one; the
    summary says so."""
    r = run_cli("trace", "--count", "--json", GETPPID, "--", str(getppid_n), "2000")
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["backend"] == "bpf"
    assert s["events"] == {GETPPID: 2000} and s["lost"] == 0
    r = run_cli("trace", "--count", "--json", GETPPID, "--filter", "common_pid > 0", "--",
                str(getppid_n), "2000")
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["backend"] == "perf"  # README: auto picks perf for --count --filter
    assert s["events"] == {GETPPID: 2000}


def test_children_past_the_pid_set_size_are_followed(bpf: None) -> None:
    """The followed pid set forgets exited children: the 10,000 children of one loop
    (more than the set holds: 8,192 before) are all traced, on the record path."""
    prog = build_c("fork_many")
    evs, s = _trace("bpf", GETPPID, "--", str(prog), "10000")
    assert len(evs) == 10000, s
    assert len({e["pid"] for e in evs}) > 8192
    assert s["lost"] == 0


def test_a_reused_pid_is_not_traced(bpf: None, tmp_path: Path) -> None:
    """A traced child exits; an unrelated process given the same pid (through
    ns_last_pid) while tracing goes on is not traced: its birth took the pid out of
    the set."""
    child, reused, out, err, rc = trace_then_reuse_pid(
        ["--json", "--backend", "bpf", GETPPID], build_c("getppid_n"), tmp_path)
    assert reused, "could not get the traced child's pid again"
    assert rc == 0, err
    evs = _events(out)
    # the child's 5 calls (and whatever bash makes itself); never the other one's 1000
    assert len([e for e in evs if e["pid"] == child]) == 5, len(evs)
