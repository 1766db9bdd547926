"""probewatch trace / Session on the live kernel: real events from real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need_tool  # tests/conftest.py

from .helpers import (
    CLI,
    children_of,
    json_lines,
    our_instances,
    run_cli,
    summary_of,
    wait_armed,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_exact_getppid_count_json(tracefs: str, getppid_n: Path) -> None:
    r = run_cli("trace", "t:syscalls:sys_enter_getppid", "--json", "--", str(getppid_n), "5000")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    assert len(evs) == 5000
    pids = {e["pid"] for e in evs}
    assert len(pids) == 1
    e = evs[0]
    assert e["event"] == "syscalls:sys_enter_getppid"
    assert e["probe"] == "t:syscalls:sys_enter_getppid"
    assert e["comm"] == "getppid_n"
    assert e["tid"] == e["pid"]
    assert e["fields"]["__syscall_nr"] == 110  # x86_64 getppid
    ts = [x["ts"] for x in evs]
    assert ts == sorted(ts)
    s = summary_of(r.stderr)
    assert s["events"] == {"t:syscalls:sys_enter_getppid": 5000}
    assert s["lost"] == 0


def test_count_mode(tracefs: str, getppid_n: Path) -> None:
    r = run_cli("trace", "--count", "--json", "t:syscalls:sys_enter_getppid", "--",
                str(getppid_n), "200000")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    s = summary_of(r.stderr)
    assert s["events"]["t:syscalls:sys_enter_getppid"] + s["lost"] == 200000
    assert s["lost"] == 0


def test_exec_events_of_command(tracefs: str) -> None:
    r = run_cli("trace", "t:sched:sched_process_exec", "--json", "--",
                "sh", "-c", "/bin/true; /bin/echo hi >/dev/null")
    assert r.returncode == 0, r.stderr
    files = [e["fields"]["filename"] for e in json_lines(r.stdout)]
    assert files[-2:] == ["/bin/true", "/bin/echo"], files
    assert len(files) == 3  # sh itself, then its two children
    assert files[0].endswith("sh")


def test_exit_status_is_the_commands(tracefs: str, getppid_n: Path) -> None:
    r = run_cli("trace", "--count", "t:syscalls:sys_enter_getppid", "--",
                str(getppid_n), "10", "0", "7")
    assert r.returncode == 7, r.stderr
    assert re.search(r"^10 events \(t:syscalls:sys_enter_getppid: 10\) in \d+\.\d\ds, lost 0$",
                     r.stderr, re.M), r.stderr


def test_missing_command(tracefs: str) -> None:
    r = run_cli("trace", "t:syscalls:sys_enter_getppid", "--", "/nonexistent/cmd")
    assert r.returncode == 1
    assert r.stderr == "probewatch: error: cannot run '/nonexistent/cmd': " \
        "No such file or directory\n"
    assert "Traceback" not in r.stderr
    assert our_instances(tracefs, r.pid) == []


def test_glob_spec_expands(tracefs: str) -> None:
    r = run_cli("trace", "--json", "t:syscalls:sys_enter_openat*", "--", "sh", "-c",
                "cat /etc/hostname >/dev/null")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    assert {e["probe"] for e in evs} == {"t:syscalls:sys_enter_openat*"}
    # glibc's open() is openat(AT_FDCWD, ...): every dfd is AT_FDCWD = -100, decoded by
    # the declared C type (an int in an 8-byte slot); cat's libc, locale and the file
    opens = [e for e in evs if e["event"] == "syscalls:sys_enter_openat"]
    assert {e["fields"]["dfd"] for e in opens} == {-100}
    assert "cat" in {e["comm"] for e in opens}
    assert {type(e["fields"]["filename"]) for e in opens} == {int}  # a user pointer


def test_kernel_filter(tracefs: str, getppid_n: Path) -> None:
    r = run_cli("trace", "--json", "t:sched:sched_process_exec", "--filter",
                'filename ~ "*echo"', "--", "sh", "-c", "/bin/true; /bin/echo x >/dev/null")
    assert r.returncode == 0, r.stderr
    files = [e["fields"]["filename"] for e in json_lines(r.stdout)]
    assert files == ["/bin/echo"]


def test_bad_filter_shows_kernel_message(tracefs: str) -> None:
    r = run_cli("trace", "t:syscalls:sys_enter_getppid", "--filter", "bogus >< 3", "-d", "1")
    assert r.returncode == 1
    assert "Field not found" in r.stderr
    assert "^" in r.stderr
    assert "Traceback" not in r.stderr
    assert our_instances(tracefs, r.pid) == []


def test_unknown_tracepoint(tracefs: str) -> None:
    r = run_cli("trace", "t:sched:sched_process_exek", "-d", "1")
    assert r.returncode == 1
    assert "no tracepoint sched:sched_process_exek" in r.stderr
    assert "sched:sched_process_exec" in r.stderr  # nearest name offered
    assert "Traceback" not in r.stderr


def test_bad_spec_kind(tracefs: str) -> None:
    r = run_cli("trace", "nosuchkind:foo:bar", "-d", "1")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "probewatch: error: expected probe kind (tracepoint/t, uprobe/u, uretprobe/ur, "
        "kprobe/k, kretprobe/kr, usdt/U), got 'nosuchkind'",
        "  nosuchkind:foo:bar",
        "  ^",
    ]


def test_comm_filter_and_max_events(tracefs: str, getppid_n: Path) -> None:
    p = subprocess.Popen([*CLI, "trace", "--json", "-c", "getppid_n", "-n", "50",
                          "t:syscalls:sys_enter_getppid", "-d", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_armed(tracefs, p)
    subprocess.run([str(getppid_n), "1000"], check=True)
    subprocess.run(["sh", "-c", "for i in 1 2 3; do :; done"], check=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    evs = json_lines(out)
    assert len(evs) == 50
    assert {e["comm"] for e in evs} == {"getppid_n"}
    assert our_instances(tracefs, p.pid) == []


def test_python_api(tracefs: str, getppid_n: Path) -> None:
    import probewatch

    with probewatch.Session() as s:
        assert s.add("tracepoint:syscalls:sys_enter_getppid") == ["syscalls:sys_enter_getppid"]
        child = s.trace_command([str(getppid_n), "321"])
        evs = list(s.events(duration=30))
        inst = our_instances(tracefs, os.getpid())
        assert inst
    assert len(evs) == 321
    assert all(e.pid == child for e in evs)
    assert s.summary().events == {"tracepoint:syscalls:sys_enter_getppid": 321}
    assert our_instances(tracefs, os.getpid()) == []


def test_session_comm_filter_and_count(tracefs: str, getppid_n: Path) -> None:
    """README: Session(comm=...) and s.count(). dash calls getppid() once at start-up
    (for $PPID): with comm= it is not counted, without it it is."""
    import probewatch

    spec = "t:syscalls:sys_enter_getppid"
    got = {}
    for comm in ("getppid_n", None):
        with probewatch.Session(comm=comm) as s:
            assert s.add(spec) == ["syscalls:sys_enter_getppid"]
            s.trace_command(["sh", "-c", f"{getppid_n} 250; {getppid_n} 50"])
            got[comm] = s.count(duration=30)
            assert s.summary().events == got[comm]
        assert our_instances(tracefs, os.getpid()) == []
    assert got == {"getppid_n": {spec: 300}, None: {spec: 301}}


def test_next_run_sweeps_dead_owners(tracefs: str, getppid_n: Path) -> None:
    """README: after a SIGKILL, the next run (any run, not only `cleanup`) removes the
    instance whose owner pid is dead."""
    p = subprocess.Popen([*CLI, "trace", "t:syscalls:sys_enter_getppid", "-d", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_armed(tracefs, p)
    p.kill()
    p.wait()
    left = our_instances(tracefs, p.pid)
    assert len(left) == 1, left
    r = run_cli("trace", "--count", "--backend", "ftrace", "t:syscalls:sys_enter_getppid",
                "--", str(getppid_n), "10")
    assert r.returncode == 0, r.stderr
    assert our_instances(tracefs, p.pid) == []  # swept by that run
    assert our_instances(tracefs, r.pid) == []  # and its own removed


def test_session_cleans_up_on_exception(tracefs: str) -> None:
    import probewatch

    with pytest.raises(RuntimeError):
        with probewatch.Session() as s:
            s.add("t:sched:sched_switch")
            s.start()
            assert our_instances(tracefs, os.getpid())
            raise RuntimeError("boom")
    assert our_instances(tracefs, os.getpid()) == []


def test_two_sessions_at_once(tracefs: str, getppid_n: Path) -> None:
    procs = [
        subprocess.Popen([*CLI, "trace", "--json", "t:syscalls:sys_enter_getppid", "--",
                          str(getppid_n), str(n), "300"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (1111, 2222)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err), n in zip(procs, outs, (1111, 2222), strict=True):
        assert p.returncode == 0, err
        evs = json_lines(out)
        assert len(evs) == n
        assert len({e["pid"] for e in evs}) == 1
    for p in procs:
        assert our_instances(tracefs, p.pid) == []


class _TopLevel:
    """Snapshot/restore of the top-level tracefs state that `trace-cmd record -k` keeps.

    Only files whose value changed are written back, so nothing else is disturbed.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.saved: dict[str, str] = {}
        files = ["tracing_on", "buffer_size_kb", "trace_clock", "set_event_pid",
                 "current_tracer", "events/syscalls/sys_enter_getppid/enable",
                 "events/syscalls/sys_enter_getppid/filter"]
        files += [f"options/{o}" for o in os.listdir(os.path.join(root, "options"))]
        for f in files:
            try:
                with open(os.path.join(root, f)) as fh:
                    self.saved[f] = fh.read()
            except OSError:
                pass

    @staticmethod
    def _value(f: str, text: str) -> str:
        if f == "trace_clock":
            return text.split("[")[1].split("]")[0]
        if f.endswith("/filter"):
            return "0" if text.strip() == "none" else text.strip()
        if f == "buffer_size_kb" and "expanded:" in text:
            return text.split("expanded:")[1].strip(" )\n")
        return text.strip()

    def restore(self) -> None:
        for f, old in self.saved.items():
            path = os.path.join(self.root, f)
            try:
                with open(path) as fh:
                    now = fh.read()
                if now == old:
                    continue
                with open(path, "w") as fh:  # these files are replaced, not appended to
                    fh.write(self._value(f, old))
            except OSError:
                pass


def test_trace_cmd_alongside_is_not_disturbed(
    tracefs: str, getppid_n: Path, tmp_path: Path
) -> None:
    tc = need_tool("trace-cmd")
    top = _TopLevel(tracefs)
    try:
        dat = tmp_path / "tc.dat"
        ours = subprocess.Popen([*CLI, "trace", "--json", "t:syscalls:sys_enter_getppid", "--",
                                 str(getppid_n), "4000", "500"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tcr = subprocess.run([tc, "record", "-k", "-d", "-e", "syscalls:sys_enter_getppid",
                              "-F", "-o", str(dat), str(getppid_n), "3000", "200"],
                             capture_output=True, text=True, timeout=120)
        out, err = ours.communicate(timeout=60)
        assert tcr.returncode == 0, tcr.stderr
        assert ours.returncode == 0, err
        assert len(json_lines(out)) == 4000
        rep = subprocess.run([tc, "report", "-i", str(dat)], capture_output=True, text=True,
                             timeout=120)
        assert rep.stdout.count("sys_enter_getppid") == 3000
    finally:
        top.restore()
    assert our_instances(tracefs, ours.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_cleans_up(tracefs: str, sig: int) -> None:
    p = subprocess.Popen([*CLI, "trace", "t:sched:sched_switch", "-d", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_armed(tracefs, p)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in err
    # ^C is the normal way to end a trace (exit 0, summary printed); SIGTERM exits 143
    assert p.returncode == (0 if sig == signal.SIGINT else 143), (p.returncode, err)
    assert our_instances(tracefs, p.pid) == []


def test_sigkill_then_sweep(tracefs: str, getppid_n: Path) -> None:
    p = subprocess.Popen([*CLI, "trace", "t:syscalls:sys_enter_getppid", "--",
                          str(getppid_n), "1", "60000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_armed(tracefs, p)

    def traced() -> list[int]:
        want = f"{getppid_n}\0" "1\0" "60000\0"
        out = []
        for c in children_of(p.pid):
            try:
                if open(f"/proc/{c}/cmdline").read() == want:
                    out.append(c)
            except OSError:
                pass
        return out

    assert wait_for(lambda: traced() != [])
    cmd = traced()
    assert len(cmd) == 1, children_of(p.pid)
    p.kill()
    p.wait()
    # the drainer dies with its parent (PDEATHSIG); the instance stays until swept
    left = our_instances(tracefs, p.pid)
    assert left, "expected a stale instance after SIGKILL"
    r = run_cli("cleanup")
    assert r.returncode == 0, r.stderr
    assert f"instance {left[0]}" in r.stdout
    assert our_instances(tracefs, p.pid) == []
    os.kill(cmd[0], signal.SIGKILL)  # the traced command, by its pid


def test_cleanup_never_touches_live_or_foreign(tracefs: str) -> None:
    foreign = os.path.join(tracefs, "instances", "someone-elses")
    os.mkdir(foreign)
    try:
        p = subprocess.Popen([*CLI, "trace", "t:sched:sched_switch", "-d", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_for(lambda: our_instances(tracefs, p.pid) != []), "no instance"
            r = run_cli("cleanup")
            assert r.returncode == 0, r.stderr
            alive = p.poll() is None
            assert our_instances(tracefs, p.pid) != [], (alive, r.stdout)  # live: untouched
            assert os.path.isdir(foreign)
        finally:
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    finally:
        os.rmdir(foreign)
    assert our_instances(tracefs, p.pid) == []


def test_help_has_examples() -> None:
    r = subprocess.run([sys.executable, "-m", "probewatch", "trace", "-h"], capture_output=True,
                       text=True)
    assert r.returncode == 0
    assert "examples:" in r.stdout


@pytest.mark.parametrize("backend", ["ftrace", "perf", "bpf"])
def test_sigterm_prints_what_was_read(tracefs: str, getppid_n: Path, tmp_path: Path,
                                      backend: str) -> None:
    """SIGTERM right after the command made its events: every one of them is printed
    and counted (it was read from the kernel or is still there), none vanishes between
    the reader and the output; exit 143, and the command gets the SIGTERM too."""
    if backend == "bpf":
        from conftest import require_bpf

        require_bpf()
    n = 300
    for i in range(3):  # the signal lands in a different spot of the reader each time
        ready = tmp_path / f"ready{i}"
        p = subprocess.Popen(
            [*CLI, "trace", "--backend", backend, "--json", "t:syscalls:sys_enter_getppid",
             "--", "sh", "-c", f"{getppid_n} {n}; : > {ready}; exec sleep 60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_for(lambda r=ready, q=p: r.exists() or q.poll() is not None, 30)
            assert p.poll() is None, p.communicate()
            p.send_signal(signal.SIGTERM)  # at once: the events are in flight
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 143, err
        assert "Traceback" not in err, err
        s, evs = summary_of(err), json_lines(out)
        assert s["lost"] == 0, s
        assert s["total"] == len(evs), (i, s, err[-500:])  # printed = counted
        # (sh makes a getppid call of its own)
        assert sum(e["comm"] == "getppid_n" for e in evs) == n, (i, s, err[-500:])
        assert our_instances(tracefs, p.pid) == []


def test_sigterm_with_a_reader_that_takes_nothing(tracefs: str) -> None:
    """SIGTERM drains what was read, but a reader of stdout that takes nothing cannot
    hold the run up: the writes give up after the grace period (TERM_GRACE, 2 s), the
    lines not written are counted in a warning, exit 143, nothing left behind."""
    import fcntl
    import struct
    import termios

    r, w = os.pipe()
    p = subprocess.Popen([*CLI, "trace", "t:sched:sched_switch"], stdout=w,
                         stderr=subprocess.PIPE, text=True)
    os.close(w)
    try:
        seen = [-1]

        def full() -> bool:  # the pipe takes no more: probewatch is blocked writing
            n = struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"\0\0\0\0"))[0]
            same, seen[0] = n == seen[0], n
            return (n >= 16384 and same) or p.poll() is not None

        assert wait_for(full, 30, interval=0.3), "the pipe did not fill"
        assert p.poll() is None, p.communicate()
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(r)
    assert p.returncode == 143, err
    assert took < 8, took
    assert re.search(r"warning: \d+ lines were not written: the reader of the output did "
                     r"not take them in time after SIGTERM", err), err
    assert re.search(r"^\d+ events \(t:sched:sched_switch: \d+\)", err, re.M), err
    assert our_instances(tracefs, p.pid) == []
