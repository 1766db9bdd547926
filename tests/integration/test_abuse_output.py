"""Abuse suite for output: hostile argv, env, paths and comm through every front end and
sink (text, --json, -o file, capture -> report/query/stats), deadlines with a reader that
does not read, and the option checks that need a live kernel.

The hostile process is tests/integration/progs/hostile.c: comm, paths and argv with
bytes that are not UTF-8 (\\xff\\xfe), a newline followed by a forged event line, and
terminal escapes (ESC [2K CR).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c, need_root, require_bpf  # tests/conftest.py
from probewatch.decode.escape import json_bytes

from .helpers import CLI

pytestmark = pytest.mark.integration

FORGED = b"x\nsshd  99999 1 0 /usr/sbin/sshd -D"
ARGV_TAIL = [b"\xff\xfe", FORGED, b"\x1b[2K\rhidden", b"back\\slash", b""]
# how the text front ends print them: escaped, each on the event's own line
ESCAPED = [rb"\xff\xfe", rb"x\nsshd  99999 1 0 /usr/sbin/sshd", rb"\x1b[2K\rhidden",
           rb"back\\slash"]


@pytest.fixture(scope="module")
def hostile() -> Path:
    need_root("tracing")
    return build_c("hostile")


@pytest.fixture(scope="module")
def bpf(hostile: Path) -> None:
    require_bpf()


def pw(*args: str | bytes, timeout: float = 60) -> tuple[int, bytes, str]:
    """Run probewatch; stdout as bytes (nothing decoded for us), stderr as text."""
    p = subprocess.run([*CLI, *args], capture_output=True, timeout=timeout)
    err = p.stderr.decode("utf-8")  # strict: stderr must be UTF-8 too
    assert "Traceback" not in err, err
    return p.returncode, p.stdout, err


def safe_text(out: bytes) -> list[bytes]:
    """Text output: valid UTF-8, no control character but the line ends, no forged line."""
    out.decode("utf-8")
    bad = {c for c in out if (c < 0x20 and c != 0x0A) or c == 0x7F}
    assert not bad, f"control bytes {sorted(bad)} in {out!r}"
    lines = out.split(b"\n")
    assert not [ln for ln in lines if ln.startswith(b"sshd")], "a forged line"
    return lines


def json_events(out: bytes) -> list[dict[str, Any]]:
    """Every line valid JSON from strict UTF-8 (the traced command prints nothing)."""
    evs = []
    for line in out.splitlines():
        line.decode("utf-8")
        evs.append(json.loads(line))
    return evs


def _execve_argv(evs: list[dict[str, Any]], prog: bytes = b"/bin/true") -> list[bytes]:
    for e in evs:
        argv = e.get("fields", {}).get("argv")
        if isinstance(argv, list) and argv and json_bytes(argv[0]) == prog:
            return [json_bytes(a) for a in argv]
    raise AssertionError(f"no execve of {prog!r} in {evs!r}")


# ------------------------------------------------------------------ BPF tools


def test_execsnoop_text_and_json(bpf: None, hostile: Path) -> None:
    rc, out, err = pw("execsnoop", "--", str(hostile), "exec")
    assert rc == 0, err
    lines = safe_text(out)
    line = next(ln for ln in lines if ln.startswith(b"true "))
    for e in ESCAPED:
        assert e in line
    assert line.endswith(b" ''")  # the empty argument, quoted
    rc, out, err = pw("execsnoop", "--json", "--", str(hostile), "exec")
    assert rc == 0, err
    assert _execve_argv(json_events(out)) == [b"/bin/true", *ARGV_TAIL]


def test_syscalls_execve_with_command_every_sink(bpf: None, hostile: Path,
                                                  tmp_path: Path) -> None:
    rc, out, err = pw("syscalls", "-e", "execve", "--", str(hostile), "exec")
    assert rc == 0, err
    line = next(ln for ln in safe_text(out) if ln.startswith(b'execve("/bin/true"'))
    assert rb'"\377\376", "x\nsshd' in line and rb'"\33[2K\rhidden"' in line
    rc, out, err = pw("syscalls", "-e", "execve", "--json", "--", str(hostile), "exec")
    assert rc == 0, err
    assert _execve_argv(json_events(out)) == [b"/bin/true", *ARGV_TAIL]
    trace = tmp_path / "trace.txt"
    rc, out, err = pw("syscalls", "-e", "execve", "-o", str(trace), "--", str(hostile), "exec")
    assert rc == 0, err
    assert b'execve("/bin/true", ["/bin/true", "\\377\\376"' in trace.read_bytes()
    safe_text(trace.read_bytes())


def test_syscalls_execve_system_wide_survives(bpf: None, hostile: Path,
                                              tmp_path: Path) -> None:
    """The crash of the issue: a monitor of every execve, any user execs b'\\xff\\xfe'."""
    prog = tmp_path / "pw-hostile-true"  # other processes may run /bin/true meanwhile
    shutil.copy("/bin/true", prog)
    p = subprocess.Popen([*CLI, "syscalls", "-e", "execve", "--json", "-d", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t_end = time.monotonic() + 30
        while p.poll() is None and time.monotonic() < t_end:
            subprocess.run([str(hostile), "exec", str(prog)], check=True)
            time.sleep(0.2)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert b"Traceback" not in err
    prog_b = os.fsencode(prog)
    assert _execve_argv(json_events(out), prog_b) == [prog_b, *ARGV_TAIL]


def test_opensnoop_paths_dfd_null_and_exact_length(bpf: None, hostile: Path,
                                                   tmp_path: Path) -> None:
    d = str(tmp_path)
    rc, out, err = pw("opensnoop", "-x", "--", str(hostile), "open", d)
    assert rc == 0, err
    lines = safe_text(out)
    mine = [ln for ln in lines if b" hostile " in ln]
    text = b"\n".join(mine)
    for e in ESCAPED:
        assert d.encode() + b"/" + e in text
    assert any(ln.endswith(b" (null)") and b"EFAULT" in ln for ln in mine)

    rc, out, err = pw("opensnoop", "--json", "--", str(hostile), "open", d)
    assert rc == 0, err
    evs = [e for e in json_events(out) if e["comm"] == "hostile"]
    paths = {json_bytes(e["fields"]["filename"]) if e["fields"]["filename"] is not None
             else None: e["fields"] for e in evs}
    for raw in ARGV_TAIL[:4]:
        assert d.encode() + b"/" + raw in paths
    # AT_FDCWD as glibc passes it (upper half 0) and sign-extended: both -100
    assert paths[b"/dev/null/signext"]["dfd"] == -100
    assert all(f["dfd"] == -100 for f in paths.values())
    assert paths[None]["ret"] == -14  # the NULL path: null, not 0
    # "/a/a/.../a/" of PATH_MAX - 1 = 4095 bytes is whole (ENOENT); one byte more is cut
    # at the same 4095 bytes (and the kernel says ENAMETOOLONG)
    long = [e["fields"] for e in evs if isinstance(e["fields"]["filename"], str)
            and e["fields"]["filename"].startswith("/a/a/")]
    assert {f["filename"] for f in long} == {"/a" * 2047 + "/"}
    assert sorted((f["ret"], f.get("truncated")) for f in long) == [
        (-36, ["filename"]), (-2, None)]


def test_tcpconnect_hostile_comm(bpf: None) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connect is refused
        code = (
            "import ctypes,socket\n"
            "ctypes.CDLL(None).prctl(15, b'tc\\xff\\n\\x1b[1m', 0, 0, 0)\n"
            f"c = socket.socket()\n"
            f"try: c.connect(('127.0.0.1', {port}))\n"
            "except OSError: pass\n"
        )
        rc, out, err = pw("tcpconnect", "-x", "--", sys.executable, "-c", code)
        assert rc == 0, err
        line = next(ln for ln in safe_text(out) if f":{port} ".encode() in ln)
        assert b"tc\\xff\\n\\x1b[1m" in line and line.endswith(b"failed")
        rc, out, err = pw("tcpconnect", "-x", "--json", "--", sys.executable, "-c", code)
        assert rc == 0, err
        ev = next(e for e in json_events(out) if e["fields"]["dport"] == port)
        assert json_bytes(ev["comm"]) == b"tc\xff\n\x1b[1m"


# ------------------------------------------------------------------ trace (ftrace) and captures


@pytest.fixture
def hostile_prog(tmp_path: Path) -> bytes:
    """/bin/true at a path with a line break, ESC and a byte that is not UTF-8."""
    d = os.fsencode(tmp_path) + b"/dir\xff\nsshd 1 \x1b[2K"
    os.mkdir(d)
    shutil.copy("/bin/true", d + b"/true")
    return d + b"/true"


SPECS = ["t:task:task_rename", "t:sched:sched_process_exec"]
HOSTILE_COMM = b"ev\xff\n\x1b[1m"  # what hostile.c gives itself with prctl(PR_SET_NAME)


def _exec_event(evs: list[dict[str, Any]], prog: bytes) -> dict[str, Any]:
    return next(e for e in evs if e["event"] == "sched:sched_process_exec"
                and json_bytes(e["fields"]["filename"]) == prog)


def test_trace_text_and_json(hostile: Path, hostile_prog: bytes) -> None:
    cmd = ["--", str(hostile), "exec", hostile_prog]
    rc, out, err = pw("trace", *SPECS, *cmd)
    assert rc == 0, err
    lines = safe_text(out)
    assert any(b"newcomm=ev\\xff\\n\\x1b[1m" in ln for ln in lines), out
    assert any(b"dir\\xff\\nsshd 1 \\x1b[2K/true" in ln for ln in lines), out
    rc, out, err = pw("trace", "--json", *SPECS, *cmd)
    assert rc == 0, err
    evs = json_events(out)
    assert HOSTILE_COMM in [json_bytes(e["fields"]["newcomm"]) for e in evs
                            if e["event"] == "task:task_rename"]
    ex = _exec_event(evs, hostile_prog)  # the path, byte for byte
    assert json_bytes(ex["comm"]).startswith(b"true")


def test_record_report_query_export(hostile: Path, hostile_prog: bytes,
                                    tmp_path: Path) -> None:
    cap = str(tmp_path / "cap.db")
    rc, out, err = pw("record", *SPECS, "-o", cap, "--echo", "--", str(hostile), "exec",
                      hostile_prog)
    assert rc == 0, err
    safe_text(out)
    rc, out, err = pw("report", cap)
    assert rc == 0, err
    assert b"newcomm=ev\\xff\\n\\x1b[1m" in out
    safe_text(out)
    rc, out, err = pw("report", cap, "--json")
    assert rc == 0, err
    evs = json_events(out)
    assert HOSTILE_COMM in [json_bytes(e["fields"]["newcomm"]) for e in evs
                            if e["event"] == "task:task_rename"]
    _exec_event(evs, hostile_prog)  # lossless through the capture
    rc, out, err = pw("query", cap, "SELECT comm, fields FROM events")
    assert rc == 0, err
    safe_text(out)
    rc, out, err = pw("query", cap, "SELECT json_extract(fields, '$.filename') AS f FROM "
                      "events WHERE event = 'sched:sched_process_exec'", "--json")
    assert rc == 0, err
    files = [json.loads(r["f"]) if r["f"].startswith("{") else r["f"]
             for r in json_events(out)]
    assert hostile_prog in [json_bytes(f) for f in files]
    rc, out, err = pw("stats", cap)
    assert rc == 0, err
    safe_text(out)
    pf, jl = tmp_path / "p.json", tmp_path / "e.jsonl"
    rc, out, err = pw("export", cap, "--perfetto", str(pf), "--jsonl", str(jl))
    assert rc == 0, err
    json.loads(pf.read_bytes())  # strict UTF-8, valid JSON
    _exec_event(json_events(jl.read_bytes()), hostile_prog)


# ------------------------------------------------------------------ -c longer than a comm


@pytest.mark.parametrize("backend", ["ftrace", "bpf"])
def test_long_comm_is_cut_with_a_warning(hostile: Path, backend: str) -> None:
    if backend == "bpf":
        require_bpf()
    long_name = "pw-a-rather-long-comm-name"
    rc, out, err = pw("trace", "t:syscalls:sys_enter_getppid", "--backend", backend, "-c",
                      long_name, "--json", "--", str(hostile), "comm", long_name)
    assert rc == 0, err
    assert "longer than the kernel's 15-byte comm: matching 'pw-a-rather-lon'" in err
    evs = json_events(out)
    assert evs and {e["comm"] for e in evs} == {long_name[:15]}


# ------------------------------------------------------------------ deadlines, slow reader


def _slow_reader_run(args: list[str], d: float, sleep: float = 7.0) -> tuple[float, bytes, str]:
    """Run probewatch with stdout to a pipe nobody reads for ``sleep`` seconds."""
    t0 = time.monotonic()
    p = subprocess.Popen([*CLI, *args, "-d", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        while p.poll() is None and time.monotonic() - t0 < sleep:
            time.sleep(0.05)
        took = time.monotonic() - t0
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return took, out, err.decode()


def _deadline_facts(took: float, out: bytes, err: str) -> dict[str, Any]:
    """What a -d run into a reader that did not read shows: the span of the events
    written (whole lines only), the run's own duration, how long it took, the warning."""
    evs = json_events(out)
    assert evs
    summ = json.loads(err.strip().splitlines()[-1])["summary"]
    return {"span": (max(e["ts"] for e in evs) - min(e["ts"] for e in evs)) / 1e9,
            "duration": summ["duration"], "took": took,
            "cut_warned": "lines were not written" in err}


def test_trace_deadline_with_a_slow_reader(hostile: Path) -> None:
    d = 1.5
    # context switches enough to fill the pipe whatever else the machine does (a quiet
    # one made 131 switches in 1.5 s: all of them fit the pipe, nothing to cut)
    load = subprocess.Popen([sys.executable, "-c",
                             "import time\nt=time.time()+8\n"
                             "while time.time()<t: time.sleep(0.0001)"])
    try:
        took, out, err = _slow_reader_run(["trace", "t:sched:sched_switch", "--json"], d)
    finally:
        load.kill()
        load.wait()
    f = _deadline_facts(took, out, err)
    assert f["span"] <= d + 0.05, f  # nothing stamped after the deadline
    assert f["duration"] <= d + 0.6, f
    assert f["took"] < 7.0 - 1.0, f  # well before the reader starts to read
    assert f["cut_warned"], err


def test_opensnoop_deadline_with_a_slow_reader(bpf: None) -> None:
    d = 1.5
    load = subprocess.Popen([sys.executable, "-c",
                             "import time\nt=time.time()+8\n"
                             "while time.time()<t: open('/dev/null').close()"])
    try:
        took, out, err = _slow_reader_run(["opensnoop", "--json"], d)
    finally:
        load.kill()
        load.wait()
    f = _deadline_facts(took, out, err)
    assert f["span"] <= d + 0.05, f
    assert f["duration"] <= d + 0.6, f
    assert f["took"] < 7.0 - 1.0, f
    assert f["cut_warned"], err


# ------------------------------------------------------------------ pids that do not run


def _no_such_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        p = int(f.read()) - 1
    while os.path.exists(f"/proc/{p}"):
        p -= 1
    return p


@pytest.mark.parametrize("tool", [["trace", "t:syscalls:sys_enter_getppid"], ["execsnoop"]])
@pytest.mark.parametrize("pid", ["gone", "99999999"])
def test_pid_that_does_not_run(hostile: Path, tool: list[str], pid: str) -> None:
    if tool[0] == "execsnoop":
        require_bpf()
    p = str(_no_such_pid()) if pid == "gone" else pid
    rc, out, err = pw(*tool, "-p", p, "-d", "1")
    assert rc == 1 and out == b""
    assert err.strip().splitlines()[-1] == f"probewatch: error: no process with pid {p}"
