"""The BPF tools end to end on the live kernel: opensnoop, execsnoop, syscount,
syscalls (against strace), tcpconnect, and nothing left behind on any exit path."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c, missing, need_tool  # tests/conftest.py

from .helpers import (
    CLI,
    bpf_progs_gone,
    bpf_progs_of,
    json_lines,
    run_cli,
    summary_of,
    wait_bpf_attached,
)

pytestmark = pytest.mark.integration



def _events(out: str, event: str | None = None) -> list[dict[str, Any]]:
    # the traced command shares stdout: keep only our JSON lines
    evs = json_lines("\n".join(x for x in out.splitlines() if x.startswith("{")))
    return [e for e in evs if event is None or e["event"] == event]


# ------------------------------------------------------------------ opensnoop


def test_opensnoop_reports_path_fd_and_enoent(bpf: None) -> None:
    r = run_cli("opensnoop", "--json", "--", "cat", "/etc/hostname", "/nonexistent-pw")
    assert r.returncode == 1, r.stderr  # cat fails on the missing file
    evs = _events(r.stdout)
    ok = [e for e in evs if e["fields"].get("filename") == "/etc/hostname"]
    assert ok and ok[0]["fields"]["ret"] >= 0, evs
    assert ok[0]["comm"] == "cat"
    bad = [e for e in evs if e["fields"].get("filename") == "/nonexistent-pw"]
    assert bad and bad[0]["fields"]["ret"] == -2
    s = summary_of(r.stderr)
    assert s["lost"] == 0 and s["read_failed"] == 0

    t = run_cli("opensnoop", "--", "cat", "/nonexistent-pw")
    line = [x for x in t.stdout.splitlines() if x.endswith(" /nonexistent-pw")]
    assert line and " -1 ENOENT " in line[0], t.stdout


# ------------------------------------------------------------------ execsnoop


def test_execsnoop_argv_exact_and_ppid(bpf: None) -> None:
    script = "/bin/echo 'a b' '  two  spaces' 'ü ñ 日本' '' >/dev/null; true"
    proc = subprocess.Popen([*CLI, "execsnoop", "--json", "--", "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    evs = _events(out, "syscalls:execve")
    sh = [e for e in evs if e["fields"]["argv"][:1] == ["sh"] and e["fields"]["ret"] == 0]
    echo = [e for e in evs if e["fields"]["argv"][:1] == ["/bin/echo"]]
    assert sh and echo, evs
    assert echo[0]["fields"]["argv"] == ["/bin/echo", "a b", "  two  spaces", "ü ñ 日本", ""]
    assert echo[0]["fields"]["ret"] == 0
    assert echo[0]["fields"]["ppid"] == sh[0]["pid"]
    assert sh[0]["fields"]["ppid"] == proc.pid  # probewatch itself started sh


def test_execsnoop_truncation_flagged(bpf: None) -> None:
    args = [f"arg{i}" for i in range(10)]
    r = run_cli("execsnoop", "--json", "--max-args", "4", "--", "/bin/true", *args)
    ev = [e for e in _events(r.stdout, "syscalls:execve") if e["fields"]["ret"] == 0][0]
    assert ev["fields"]["argv"] == ["/bin/true", "arg0", "arg1", "arg2"]
    assert "argv" in ev["fields"]["truncated"]
    t = run_cli("execsnoop", "--max-args", "4", "--", "/bin/true", *args)
    assert "/bin/true arg0 arg1 arg2 ..." in t.stdout


# ------------------------------------------------------------------ syscount


def test_syscount_counts_exactly(bpf: None, getppid_n: Path) -> None:
    r = run_cli("syscount", "--json", "-t", "0", "--", str(getppid_n), "1000000")
    assert r.returncode == 0, r.stderr
    rows = {row["syscall"]: row for row in json.loads(r.stdout)["rows"]}
    assert rows["getppid"]["count"] == 1_000_000
    assert rows["getppid"]["errors"] == 0


def test_syscount_exit_status_passes_through(bpf: None, getppid_n: Path) -> None:
    r = run_cli("syscount", "--", str(getppid_n), "10", "0", "7")
    assert r.returncode == 7
    assert re.search(r"^getppid\s+10\b", r.stdout, re.M), r.stdout


# ------------------------------------------------------------------ syscalls vs strace

_PTR = re.compile(r"0x[0-9a-f]+")


def _norm(line: str) -> str:
    line = _PTR.sub("ADDR", line)
    return re.sub(r"\)\s+= ", ") = ", line).strip()


def _body(lines: list[str], start: str, end: str | None) -> list[str]:
    out, on = [], False
    for ln in lines:
        if start in ln:
            on = True
        if on:
            out.append(ln)
        if on and end and end in ln:
            break
    return out


def test_syscalls_matches_strace(bpf: None, tmp_path: Path) -> None:
    strace = need_tool("strace")
    prog = build_c("bpf_strace_cmp")
    work = tmp_path / "w"
    work.mkdir()
    # strace -ff: one file per process, no <unfinished ...> splits
    subprocess.run([strace, "-ff", "-o", str(tmp_path / "st"), str(prog), str(work)],
                   check=True, capture_output=True, timeout=60)
    files = sorted(tmp_path.glob("st.*"), key=lambda p: int(p.suffix[1:]))
    parent_pid, child_pid = (int(f.suffix[1:]) for f in files)
    st_parent = [_norm(x) for x in files[0].read_text().splitlines()
                 if not x.startswith(("---", "+++"))]
    st_child = [_norm(x) for x in files[1].read_text().splitlines()
                if not x.startswith(("---", "+++"))]

    trace = tmp_path / "pw.txt"
    r = run_cli("syscalls", "-f", "-o", str(trace), "--", str(prog), str(work))
    assert r.returncode == 0, r.stderr
    ours: dict[str, list[str]] = {}
    main = None
    for ln in trace.read_text().splitlines():
        m = re.match(r"\[pid\s+(\d+)\] (.*)", ln)
        pid, text = (m.group(1), m.group(2)) if m else (main, ln)
        if not re.match(r"[a-z_0-9]+\(", text):
            continue  # the program's own stdout
        if pid is None:
            main = pid = "main"
        ours.setdefault(pid, []).append(_norm(text))
    # the parent: lines without a prefix and those of the first pid seen with one
    pids = [p for p in ours if p != "main"]
    parent_lines = ours.get("main", [])
    child_key = None
    for p in pids:
        if any("pw-child-marker" in x for x in ours[p]):
            child_key = p
        else:
            parent_lines += ours[p]
    assert child_key is not None, r.stdout

    def fix_pids(lines: list[str], real: dict[int, str]) -> list[str]:
        out = []
        for x in lines:
            for pid, tok in real.items():
                x = re.sub(rf"\b{pid}\b", tok, x)
            out.append(x)
        return out

    st_p = fix_pids(_body(st_parent, "pw-start-marker", "pw-end-marker"),
                    {parent_pid: "PARENT", child_pid: "CHILD"})
    ours_child_pid = int(child_key)
    ours_parent_pid = ours_child_pid - 1  # only used to name pids below
    del ours_parent_pid
    pw_p = _body(parent_lines, "pw-start-marker", "pw-end-marker")
    # our pids: learn them from getpid()/clone() returns in our own output
    getpid_ret = next(x for x in pw_p if x.startswith("getpid()")).rsplit("= ", 1)[1]
    pw_p = fix_pids(pw_p, {int(getpid_ret): "PARENT", ours_child_pid: "CHILD"})
    assert pw_p == st_p, "\n".join(["--- strace", *st_p, "--- probewatch", *pw_p])

    st_c = st_child  # the child runs only main-body code
    pw_c = ours[child_key]
    assert pw_c == st_c, "\n".join(["--- strace", *st_c, "--- probewatch", *pw_c])


# ------------------------------------------------------------------ tcpconnect


@pytest.mark.parametrize("family,addr", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_tcpconnect_sees_connect(bpf: None, family: int, addr: str) -> None:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind((addr, 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    code = (f"import socket,sys; s=socket.socket({int(family)}, socket.SOCK_STREAM); "
            f"s.connect(({addr!r}, {port})); print(s.getsockname()[1]); s.close()")
    try:
        r = run_cli("tcpconnect", "--json", "--", sys.executable, "-c", code)
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    evs = _events(r.stdout, "tcp:connect")
    assert evs, r.stdout + r.stderr
    f = evs[0]["fields"]
    assert f["daddr"] == addr and f["dport"] == port
    assert f["saddr"] == addr and f["sport"] > 0
    assert f["family"] == int(family)
    assert evs[0]["comm"].startswith("python")


# ------------------------------------------------------------------ cleanup


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_leaves_nothing(bpf: None, sig: int) -> None:
    import threading

    proc = subprocess.Popen([*CLI, "opensnoop"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # the header
    errs: list[str] = []
    t_out = threading.Thread(target=proc.stdout.read)  # keep the pipe drained
    t_err = threading.Thread(target=lambda: errs.append(proc.stderr.read()))  # type: ignore
    t_out.start()
    t_err.start()
    wait_bpf_attached(proc)
    ours = bpf_progs_of(proc.pid)
    assert len(ours) >= 2, ours
    proc.send_signal(sig)
    proc.wait(timeout=20)
    t_out.join(10)
    t_err.join(10)
    err = "".join(errs)
    # ^C is the normal end (0, summary printed), SIGTERM exits 128 + 15
    assert proc.returncode == (0 if sig == signal.SIGINT else 143), (proc.returncode, err)
    assert "Traceback" not in err
    assert bpf_progs_gone(ours)


def test_sigkill_leaves_nothing(bpf: None) -> None:
    proc = subprocess.Popen([*CLI, "opensnoop"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    wait_bpf_attached(proc)
    ours = bpf_progs_of(proc.pid)
    assert len(ours) >= 2, ours
    proc.kill()
    proc.wait(timeout=10)
    # fd-based links and programs go with the last fd (freed after an RCU grace period)
    assert bpf_progs_gone(ours)


def test_exception_path_closes(bpf: None) -> None:
    from probewatch.bpf_session import BpfSession

    before = bpf_progs_of(os.getpid())
    with pytest.raises(RuntimeError), BpfSession(syscalls=["openat"]) as s:
        s.start()
        ours = bpf_progs_of(os.getpid()) - before
        assert len(ours) >= 2, ours
        raise RuntimeError("boom")
    assert bpf_progs_of(os.getpid()) == before
    assert bpf_progs_gone(ours)


# ------------------------------------------------------------------ bashreadline


def test_bashreadline_sees_typed_command(bpf: None) -> None:
    import pty
    import select
    import threading

    if not os.path.exists("/bin/bash"):
        missing("no /bin/bash")
    proc = subprocess.Popen([*CLI, "bashreadline", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    pid = 0
    try:
        wait_bpf_attached(proc)
        pid, fd = pty.fork()
        if pid == 0:
            os.execvp("/bin/bash", ["bash", "--norc", "--noprofile", "-i"])
        seen = b""

        def read_until(*what: bytes) -> bool:
            nonlocal seen
            end = time.monotonic() + 20
            while not any(w in seen for w in what) and time.monotonic() < end:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:  # EIO: the pty's other side is gone
                        break
                    if not chunk:
                        break
                    seen += chunk
            return any(w in seen for w in what)

        assert read_until(b"$ ", b"# "), seen  # bash's prompt: readline waits
        os.write(fd, b"echo pw-typed-$((6*7))\n")
        assert read_until(b"pw-typed-42"), seen  # the line was read and run
        # the uprobe fired on readline's return; the event sits in the ring buffer, which
        # the tool drains before it ends on SIGINT (stdout is a pipe: block-buffered)
        os.write(fd, b"exit\n")
        read_until(b"\0")  # until EOF (or 20 s)
        os.waitpid(pid, 0)
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        reader.join(10)
        err = proc.stderr.read()  # type: ignore[union-attr]
    out = "".join(got)
    lines = [e["fields"]["line"] for e in _events(out, "bash:readline")]
    assert "echo pw-typed-$((6*7))" in lines, (out, err)


# ------------------------------------------------------------------ losses


def test_tiny_ringbuf_loss_adds_up(bpf: None) -> None:
    prog = build_c("bpf_openat_firehose")
    n = 50_000
    r = run_cli("opensnoop", "--json", "--ringbuf-kb", "4", "--", str(prog), str(n),
                "/etc/hostname")
    assert r.returncode == 0, r.stderr
    evs = _events(r.stdout, "syscalls:openat")
    s = summary_of(r.stderr)
    assert s["lost"] > 0, s  # a one-page ring cannot keep up
    assert s["generated"] == len(evs) + s["lost"], s
    assert s["total"] == len(evs)
    # everything generated is the firehose plus the dynamic loader's few opens
    target = [e for e in evs if e["fields"]["filename"] == "/etc/hostname"]
    assert n <= s["generated"] <= n + 50
    assert len(target) + s["lost"] >= n
    assert sum(int(v) for v in s["lost_per_cpu"].values()) == s["lost"]


# ------------------------------------------------------------------ -p, -c, --json

CHILD = ("import os, subprocess, sys; sys.stdin.readline(); "
         "[os.getppid() for _ in range(100)]; open('/etc/hostname').close(); "
         "subprocess.run(['/bin/true'])")


@pytest.mark.parametrize("tool", [["syscalls", "-e", "getppid"], ["opensnoop"], ["execsnoop"],
                                  ["syscount"]], ids=lambda t: t[0])
def test_tool_pid_filter(bpf: None, tool: list[str]) -> None:
    """README: the tools' -p PID. A process that exists before the tool starts, waits
    until the tool is attached, then does known work; only its (and its children's)
    activity is shown. The tool does not end with the process: ^C ends it (status 0)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    p = subprocess.Popen([*CLI, *tool, "--json", "-p", str(child.pid)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_bpf_attached(p)
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    if tool[0] == "syscount":
        rows = {r["syscall"]: r for r in json.loads(out)["rows"]}
        assert rows["getppid"]["count"] == 100 and rows["getppid"]["errors"] == 0
        return
    evs = _events(out)
    pids = {e["pid"] for e in evs}
    if tool[0] == "syscalls":
        assert [e["event"] for e in evs] == ["syscalls:getppid"] * 100
        assert pids == {child.pid}
        assert {e["fields"]["ret"] for e in evs} == {os.getpid()}  # the child's parent: us
    elif tool[0] == "opensnoop":
        host = [e for e in evs if e["fields"]["filename"] == "/etc/hostname"]
        assert len(host) == 1 and host[0]["pid"] == child.pid and host[0]["fields"]["ret"] >= 0
        assert child.pid in pids and os.getpid() not in pids
    else:
        [ex] = evs
        assert ex["event"] == "syscalls:execve" and ex["comm"] == "true"
        assert ex["fields"]["filename"] == "/bin/true" and ex["fields"]["argv"] == ["/bin/true"]
        assert ex["fields"]["ppid"] == child.pid and ex["fields"]["ret"] == 0


def test_syscalls_count_table(bpf: None, getppid_n: Path) -> None:
    """README: `syscalls -c`, the strace -c table; with -e only those rows."""
    r = run_cli("syscalls", "-c", "-e", "getppid", "--", str(getppid_n), "500")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["%", "time", "seconds", "usecs/call", "calls", "errors",
                                "syscall"]
    assert set(lines[1]) == {"-", " "} and lines[3] == lines[1]
    row = lines[2].split()
    assert row[0] == "100.00" and row[3:] == ["500", "getppid"], lines
    assert lines[4].split()[0] == "100.00" and lines[4].split()[3:] == ["500", "total"]
    assert len(lines) == 5


def test_syscalls_json_lines(bpf: None, getppid_n: Path) -> None:
    """README: `syscalls --json`: one JSON object per call, the summary on stderr."""
    r = run_cli("syscalls", "--json", "-e", "getppid", "--", str(getppid_n), "3")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    assert [e["event"] for e in evs] == ["syscalls:getppid"] * 3
    for e in evs:
        assert set(e) == {"ts", "cpu", "pid", "tid", "comm", "event", "probe", "fields"}
        assert e["comm"] == "getppid_n" and e["probe"] == "bpf:syscalls"
        f = e["fields"]
        assert f["nr"] == 110 and f["ret"] == f["ppid"] and f["duration_ns"] > 0
    assert summary_of(r.stderr)["events"] == {"syscalls:getppid": 3}
