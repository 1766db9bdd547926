"""Abuse around files, with real processes: device nodes, FIFOs, /proc files and
directories as inputs and outputs, full disks (a small tmpfs) and /dev/full, damaged
captures (hypothesis mutating a capture that `record` made), non-UTF-8 argv bytes,
SQL that would touch other files, and report on a capture being recorded or killed.

The documented outcome of every abuse: one line ``probewatch: error: ...`` on stderr
and exit status 1 (74 when the output cannot be written), nothing left in the kernel,
no file created or replaced that should not be, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import missing, require_bpf  # tests/conftest.py
from probewatch.capture import Capture
from probewatch.cli.main import main
from probewatch.sinks.capture import CaptureError

from .helpers import CLI, our_instances, run_cli, wait_for

pytestmark = pytest.mark.integration

SWITCH = "t:sched:sched_switch"
EXEC = "t:sched:sched_process_exec"


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("probewatch: error: "), err
    return lines[0]


def _cli(*argv: str) -> tuple[int, str]:
    """Run the CLI in this process: (exit status, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, tracefs: str) -> Path:
    """A real capture: process life and openat of a small shell command."""
    d = tmp_path_factory.mktemp("cap")
    db = d / "base.db"
    r = run_cli("record", "t:sched:sched_process_*", "t:syscalls:sys_enter_openat",
                "-o", str(db), "--", "sh", "-c", "cat /etc/hostname; ls / >/dev/null")
    assert r.returncode == 0, r.stderr
    with Capture(db) as cap:
        assert cap.count() > 5
    return db


def _node(p: str) -> tuple[int, int, int]:
    st_ = os.lstat(p)
    return (st_.st_mode, st_.st_ino, st_.st_rdev)


# ----------------------------------------------------------------- record's output


@pytest.mark.parametrize("force", [True, False], ids=["force", "noforce"])
@pytest.mark.parametrize("kind", ["/dev/null", "/dev/full", "fifo", "dir", "link-dev",
                                  "link-dir", "link-missing"])
def test_record_never_replaces_what_is_not_a_regular_file(
    tracefs: str, tmp_path: Path, kind: str, force: bool
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    target: str
    if kind.startswith("/dev/"):
        target = kind
    elif kind == "fifo":
        target = str(work / "fifo")
        os.mkfifo(target)
    elif kind == "dir":
        target = str(work / "d")
        os.mkdir(target)
    else:
        target = str(work / "link")
        os.symlink({"link-dev": "/dev/null", "link-dir": str(tmp_path),
                    "link-missing": str(work / "nothing")}[kind], target)
    before = _node(target)
    listing = sorted(os.listdir(work))
    rc, err = _cli("record", SWITCH, "-d", "0.2", "-o", target, *(["--force"] if force else []))
    assert rc == 1
    line = _one_error_line(err)
    assert "not a regular file" in line and "--force never replaces" in line
    assert _node(target) == before  # the node itself, untouched
    assert sorted(os.listdir(work)) == listing  # and nothing created beside it
    assert not os.path.exists(str(work / "nothing"))
    assert our_instances(tracefs, os.getpid()) == []  # refused before arming anything


@pytest.mark.parametrize("bad", [
    ["t:sched:nonexistent"],
    [SWITCH, "--filter", "prev_pid =="],
    [SWITCH, "--", "/nonexistent/cmd"],
    [SWITCH, "-p", "999999999"],
], ids=["spec", "filter", "command", "pid"])
def test_failed_record_leaves_the_old_capture(
    tracefs: str, capture: Path, tmp_path: Path, bad: list[str]
) -> None:
    old = tmp_path / "old.db"
    shutil.copy(capture, old)
    data = old.read_bytes()
    r = run_cli("record", *bad, "-o", str(old), "--force", timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("probewatch: error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert old.read_bytes() == data
    assert os.listdir(tmp_path) == ["old.db"]  # no temp file, no -wal
    assert our_instances(tracefs, r.pid) == []


def test_failed_record_creates_no_file(tracefs: str, tmp_path: Path) -> None:
    for bad in (["t:sched:nonexistent"], [SWITCH, "--", "/nonexistent/cmd"]):
        r = run_cli("record", *bad, "-o", str(tmp_path / "new.db"), timeout=60)
        assert r.returncode == 1 and r.stderr.startswith("probewatch: error: "), r.stderr
        assert "Traceback" not in r.stderr
        assert os.listdir(tmp_path) == []


def test_force_replaces_only_when_the_new_capture_is_complete(
    tracefs: str, capture: Path, tmp_path: Path
) -> None:
    old = tmp_path / "run.db"
    shutil.copy(capture, old)
    data = old.read_bytes()
    with subprocess.Popen([*CLI, "record", SWITCH, "-o", str(old), "--force", "-d", "1.5"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        # while it records, the old capture is still there as it was, the new one is
        # written to a hidden temporary file beside it
        assert wait_for(lambda: any(n.endswith(".tmp") for n in os.listdir(tmp_path)), 20)
        assert old.read_bytes() == data
        with Capture(old) as cap:
            assert cap.runs()[0].status == "complete"
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert os.listdir(tmp_path) == ["run.db"]
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    with Capture(old) as cap:
        assert cap.event_names() == ["sched:sched_switch"]
        assert cap.runs()[0].status == "complete" and cap.count() > 0


def test_signals_during_start_up_leave_no_file(tracefs: str, tmp_path: Path) -> None:
    """SIGTERM/SIGINT at any moment of start-up: either no file at all, or a capture
    that opens (its run interrupted); never an empty .db or a temporary file."""
    outcomes = set()
    leaks: list[str] = []
    for i, delay in enumerate([0.05, 0.15, 0.25, 0.35, 0.45, 0.6, 0.7, 0.8, 1.0, 1.2]):
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        db = tmp_path / f"s{i}.db"
        p = subprocess.Popen([*CLI, "record", SWITCH, "-o", str(db), "-d", "5"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        # (a SIGINT while Python still imports gives KeyboardInterrupt's traceback: the
        # signal handling of start-up is issue 16 item 3's; files are what this checks)
        assert sig == signal.SIGINT or "Traceback" not in err, err
        names = [n for n in os.listdir(tmp_path) if n.startswith(f"s{i}.") or
                 n.startswith(f".s{i}.")]
        if names:
            assert names == [db.name], names
            with Capture(db) as cap:
                assert cap.runs()[0].status in ("interrupted", "complete")
            outcomes.add("capture")
        else:
            outcomes.add("none")
        leaks += our_instances(tracefs, p.pid)
    assert outcomes  # both outcomes are fine; a leftover file is not
    if leaks:
        # a signal in the middle of the ftrace collector's start can leave its instance
        # busy (a reader still open): the start-up signal handling is issue 16 item 3's
        subprocess.run([*CLI, "cleanup"], capture_output=True, timeout=60)
        pytest.xfail(f"a start-up signal left tracefs instances {leaks} (issue 16 item 3)")


# ----------------------------------------------------------------- ELF inputs


_ELF_EXPECT = {"fifo": "is a FIFO", "dir": "is a directory", "zero": "is a character device",
               "mem": "is empty (0 bytes)", "empty": "is empty (0 bytes)"}


def _elf_input(tmp_path: Path, name: str) -> str:
    if name == "fifo":
        os.mkfifo(tmp_path / "fifo")
    elif name == "dir":
        (tmp_path / "dir").mkdir()
    elif name == "empty":
        (tmp_path / "empty").write_bytes(b"")
    return {"zero": "/dev/zero", "mem": "/proc/self/mem"}.get(name, str(tmp_path / name))


def test_elf_fifo_never_blocks(tracefs: str, tmp_path: Path) -> None:
    """A FIFO without a writer: opening it for reading would wait forever."""
    path = _elf_input(tmp_path, "fifo")
    for args in (["trace", f"u:{path}:main", "-d", "0.1"], ["list", "symbols", path]):
        t0 = time.monotonic()
        r = run_cli(*args, timeout=60)
        assert time.monotonic() - t0 < 50
        assert r.returncode == 1, r.stderr
        assert "is a FIFO, not an ELF file" in _one_error_line(r.stderr)
        assert our_instances(tracefs, r.pid) == []


@pytest.mark.parametrize("name", sorted(_ELF_EXPECT))
def test_elf_inputs_must_be_regular_files(
    tracefs: str, tmp_path: Path, name: str
) -> None:
    path = _elf_input(tmp_path, name)
    for args in (["trace", f"u:{path}:main", "-d", "0.1"], ["trace", f"ur:{path}:0x10"],
                 ["list", "symbols", path], ["list", "usdt", path]):
        rc, err = _cli(*args)
        assert rc == 1, (args, err)
        line = _one_error_line(err)
        assert _ELF_EXPECT[name] in line and "not an ELF file" in line, (args, line)
    assert [n for n in os.listdir(os.path.join(tracefs, "instances"))
            if n.startswith(f"probewatch-{os.getpid()}-")] == []


# ----------------------------------------------------------------- SQL


@pytest.mark.parametrize("sql", [
    "attach database '{d}/attached.db' as e",
    "vacuum into '{d}/vacuumed.db'",
    "select 1; attach '{d}/x.db' as x",
    "pragma journal_mode = delete",
    "pragma user_version = 3",
    "vacuum",
    "create temp table t (x)",
])
def test_query_touches_no_other_file(capture: Path, tmp_path: Path, sql: str) -> None:
    cap = tmp_path / "c.db"
    shutil.copy(capture, cap)
    data = cap.read_bytes()
    r = run_cli("query", str(cap), sql.format(d=tmp_path))
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert "query refused" in line or "query failed" in line, line
    assert sorted(os.listdir(tmp_path)) == ["c.db"]  # nothing created, not even -wal
    assert cap.read_bytes() == data


def test_query_still_reads(capture: Path) -> None:
    r = run_cli("query", str(capture), "select count(*) as n from events", "--json")
    assert r.returncode == 0, r.stderr
    r = run_cli("query", str(capture), "select name from pragma_table_info('events')")
    assert r.returncode == 0 and "fields" in r.stdout, r.stderr


# ----------------------------------------------------------------- full outputs


def _full(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout on /dev/full; ``.args`` is replaced by the pid."""
    with open("/dev/full", "w") as full, subprocess.Popen(
        [*CLI, *args], stdout=full, stderr=subprocess.PIPE, text=True
    ) as p:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        return subprocess.CompletedProcess(p.pid, p.returncode, "", err)


@pytest.mark.parametrize("args", [
    ["trace", SWITCH, "-d", "1"],
    ["trace", SWITCH, "-d", "1", "--json"],
    ["execsnoop", "-d", "1"],
    ["opensnoop", "-d", "1"],
    ["syscalls", "-e", "openat", "-d", "1"],
    ["list", "tracepoints"],
    ["list", "syscalls"],
    ["doctor"],
], ids=lambda a: "-".join(a[:2]))
def test_output_to_dev_full(tracefs: str, args: list[str]) -> None:
    if args[0] in ("execsnoop", "opensnoop", "syscalls"):
        require_bpf()  # the BPF tools: a kernel without it skips, naming what it lacks
    # something for the tools to see while they run
    bg = subprocess.Popen(["sh", "-c", "for i in $(seq 60); do cat /etc/hostname; done "
                           ">/dev/null; sleep 0.3; for i in $(seq 60); do /bin/true; done"])
    try:
        r = _full(*args)
    finally:
        bg.wait(timeout=30)
    assert r.returncode == 74, r.stderr
    line = _one_error_line(r.stderr)
    assert line == "probewatch: error: cannot write the output: No space left on device"
    assert our_instances(tracefs, r.args) == []


@pytest.mark.parametrize("cmd", [["stats"], ["report"], ["report", "--json"],
                                 ["query", "select * from events"],
                                 ["export", "--jsonl", "-"], ["export", "--perfetto", "-"]],
                         ids=lambda a: "-".join(a[:2]))
def test_capture_readers_to_dev_full(capture: Path, cmd: list[str]) -> None:
    r = _full(cmd[0], str(capture), *cmd[1:])
    assert r.returncode == 74, r.stderr
    assert _one_error_line(r.stderr) == (
        "probewatch: error: cannot write the output: No space left on device")


def test_export_into_dev_full_file(capture: Path) -> None:
    r = run_cli("export", str(capture), "--jsonl", "/dev/full")
    assert r.returncode == 74
    assert "cannot write /dev/full: No space left on device" in _one_error_line(r.stderr)


def _alive_with(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


@pytest.mark.parametrize("tool", [["trace", SWITCH], ["execsnoop"]], ids=["trace", "execsnoop"])
def test_full_output_stops_the_command(tracefs: str, tool: list[str]) -> None:
    marker = "31.4159"
    r = _full(*tool, "--", "sh", "-c",
              f"for i in $(seq 300); do /bin/true; done; sleep {marker}; echo never", timeout=60)
    assert r.returncode == 74, r.stderr
    _one_error_line(r.stderr)
    assert wait_for(lambda: not _alive_with(marker), 5), _alive_with(marker)
    assert our_instances(tracefs, r.args) == []


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if m.returncode != 0:
        missing(f"cannot mount a tmpfs (needs root): {m.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def test_record_on_a_full_file_system_keeps_what_it_could(tracefs: str, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "3m") as small:
        db = small / "full.db"
        # ~600000 syscalls in about a second: far more than 3 MiB of capture
        r = run_cli("record", "t:raw_syscalls:sys_enter", "-o", str(db), "-d", "20",
                    "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=300000",
                    timeout=60)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert "disk full after" in r.stderr and "the events written so far are kept" in r.stderr
        assert "[disk-full]" in r.stderr
        with Capture(db) as cap:
            st_ = cap.stats()
            assert st_.status == "disk-full"
            assert st_.events > 0 and cap.count() == st_.events
        assert our_instances(tracefs, r.pid) == []


def test_replacing_on_a_full_file_system_keeps_the_old_capture(
    tracefs: str, capture: Path, tmp_path: Path
) -> None:
    with _tmpfs(tmp_path / "small", "1m") as small:
        old = small / "old.db"
        shutil.copy(capture, old)
        data = old.read_bytes()
        (small / "filler").write_bytes(b"\0" * 400_000)
        r = run_cli("record", "t:raw_syscalls:sys_enter", "-o", str(old), "--force", "-d", "5",
                    timeout=60)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert f"the existing {old} is left unchanged" in r.stderr
        assert old.read_bytes() == data
        assert sorted(os.listdir(small)) == ["filler", "old.db"]


# ----------------------------------------------------------------- non-UTF-8 bytes


def test_non_utf8_filter_and_comm(tracefs: str, tmp_path: Path) -> None:
    r = run_cli("trace", SWITCH, "--filter", 'prev_comm == "\udcff"', "-d", "0.2")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    # a program whose comm is b"\xff\xfe" is found by -c with those bytes
    link = os.path.join(os.fsencode(str(tmp_path)), b"\xff\xfe")
    os.symlink(shutil.which("sleep") or "/bin/sleep", link)
    name = os.fsdecode(b"\xff\xfe")
    r = run_cli("trace", "t:syscalls:sys_enter_clock_nanosleep", "-c", name, "--json",
                "--", os.fsdecode(link), "0.1")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert '"total": 1' in r.stderr
    db = tmp_path / "u.db"
    r = run_cli("record", "t:syscalls:sys_enter_clock_nanosleep", "-c", name, "-o", str(db),
                "--", os.fsdecode(link), "0.1")
    assert r.returncode == 0, r.stderr
    with Capture(db) as cap:
        run = cap.runs()[0]
        assert run.comm == "\\xff\\xfe" and run.command == [str(tmp_path) + "/\\xff\\xfe",
                                                             "0.1"]
        assert cap.count() == 1
    for cmd in (["stats", str(db)], ["report", str(db)], ["query", str(db),
                                                          "select * from processes"]):
        rc, err = _cli(*cmd)
        assert rc == 0 and "Traceback" not in err, err
    # the BPF backend: handled, or one clear line
    r = run_cli("trace", SWITCH, "-c", name, "-d", "0.2", "--backend", "bpf")
    assert "Traceback" not in r.stderr
    if r.returncode != 0:
        _one_error_line(r.stderr)


# ----------------------------------------------------------------- live / killed captures


def test_report_on_a_live_then_killed_capture(tracefs: str, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    p = subprocess.Popen([*CLI, "record", SWITCH, "-o", str(db), "-d", "30"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def committed() -> bool:
            try:
                with Capture(db) as cap:
                    return cap.count() > 0
            except CaptureError:
                return False
            except Exception:
                return False
        assert wait_for(committed, 20)
        rc, err = _cli("report", str(db))
        assert rc == 0, err
        assert "still being recorded" in err and "killed" not in err
        assert "lost unknown (still recording)" in err
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["stats", str(db)]) == 0
        assert "status     recording" in out.getvalue()
        assert "lost       unknown (still recording)" in out.getvalue()
    finally:
        p.kill()
        p.wait()
    rc, err = _cli("report", str(db))
    assert "lost unknown (the run did not finish)" in err
    assert f"the recorder (pid {p.pid}) ended without closing the run" in err
    rc, err = _cli("report", str(db), "--json")
    assert '"lost": null' in err and '"status": "unfinished"' in err
    r = run_cli("stats", str(db))
    assert "lost       unknown (the run did not finish)" in r.stdout
    # a reused pid is not the recorder: a python process started after the run began
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.05)
        c = sqlite3.connect(db)
        c.execute("UPDATE runs SET recorder_pid = ?, start_time = start_time - 5",
                  (other.pid,))
        c.commit()
        c.close()
        rc, err = _cli("report", str(db))
        assert "is unfinished" in err and "still being recorded" not in err
    finally:
        other.kill()
        other.wait()
    # the SIGKILLed recorder's instance: swept by cleanup, as after any SIGKILL
    subprocess.run([*CLI, "cleanup"], capture_output=True, timeout=60)
    assert our_instances(tracefs, p.pid) == []


# ----------------------------------------------------------------- damaged captures

_DOCUMENTED = ("damaged capture", "not a probewatch capture", "truncated",
               "not an SQLite database", "capture is empty", "newer probewatch")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_real_capture(capture: Path, tmp_path: Path, data: st.DataObject) -> None:
    """Random bytes of a real capture changed: every reader either works or says
    "damaged capture" (or another documented capture error) in one line."""
    raw = bytearray(capture.read_bytes())
    n = data.draw(st.integers(1, 40), label="bytes changed")
    for _ in range(n):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    m = tmp_path / "m.db"
    m.write_bytes(bytes(raw))
    for argv in (["stats", str(m)], ["report", str(m), "--json"],
                 ["query", str(m), "select * from events"],
                 ["export", str(m), "--perfetto", "-"]):
        rc, err = _cli(*argv)
        assert rc in (0, 1), (argv, rc, err)
        if rc == 1:
            line = _one_error_line(err)
            assert any(d in line for d in _DOCUMENTED), (argv, line)
    try:
        with Capture(m) as cap:
            cap.runs()
            cap.probes()
            cap.processes()
            cap.stats()
            list(cap.events())
    except CaptureError:
        pass
