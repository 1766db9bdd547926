"""-- COMMAND in the BPF tools and in record: a closed pipe, SIGTERM, SIGHUP and ^C stop
(or wait for) the command, never leave it running untraced (issue 16 items 12, 13).

Modelled on test_signals.py (trace): the command is ``sh -c 'echo $$ > FILE; LOOP'``
with an exec every millisecond or so; the tests check the exit status, that the
command is gone, and that the summary counts what was printed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import missing, require_bpf  # tests/conftest.py

from .helpers import CLI, json_lines, our_instances, summary_of, wait_for

pytestmark = pytest.mark.integration

LOOP = "while :; do /bin/true; done"


@pytest.fixture(scope="module")
def bpf() -> None:
    require_bpf()


def _start(tmp_path: Path, argv: list[str], script: str) -> tuple[subprocess.Popen[str], int]:
    """Start ``probewatch ARGV -- sh -c SCRIPT``; -> (probewatch, sh pid). A ``{ready}``
    in SCRIPT becomes ``: > FILE`` (a builtin: no extra exec), and this returns once the
    script got there (its traps set, its first work done): no fixed sleep."""
    pidfile, ready = tmp_path / "cmd.pid", tmp_path / "cmd.ready"
    script = script.replace("{ready}", f": > {ready}")
    p = subprocess.Popen([*CLI, *argv, "--", "sh", "-c", f"echo $$ > {pidfile}; {script}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) or (
            f": > {ready}" in script and not ready.exists()):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < end, "the command did not start"
        time.sleep(0.02)
    return p, int(pidfile.read_text())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _reap(p: subprocess.Popen[str], cmd_pid: int) -> None:
    if p.poll() is None:
        p.kill()
        p.wait()
    if _alive(cmd_pid):
        os.kill(cmd_pid, signal.SIGKILL)


def _tool_total(err: str) -> int:
    m = re.search(r"^(\d+) events in ", err, re.M)
    assert m, err
    return int(m.group(1))


# -- the BPF tools (run_tool)


def test_tool_closed_pipe_stops_the_command_and_exits_141(bpf: None, tmp_path: Path) -> None:
    p, cmd_pid = _start(tmp_path, ["execsnoop"], LOOP)
    try:
        assert p.stdout is not None and p.stderr is not None
        assert p.stdout.readline().split()[:2] == ["PCOMM", "PID"]
        p.stdout.close()  # as `| head -1` does
        rc = p.wait(timeout=30)
        alive = _alive(cmd_pid)
        _reap(p, cmd_pid)
        err = p.stderr.read()
        assert not alive, "the command keeps running untraced"
        assert rc == 141, err
        _tool_total(err)
        assert "Traceback" not in err and "Broken pipe" not in err, err
    finally:
        _reap(p, cmd_pid)


@pytest.mark.parametrize("tool,sig", [("execsnoop", signal.SIGTERM),
                                      ("opensnoop", signal.SIGHUP)])
def test_tool_sigterm_sighup_stop_the_command(bpf: None, tmp_path: Path, tool: str,
                                              sig: int) -> None:
    # the command's own exec/open is printed; then it sleeps, ignoring nothing
    p, cmd_pid = _start(tmp_path, [tool, "--json"],
                        "cat /etc/hostname >/dev/null; {ready}; exec sleep 60")
    try:
        t = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 128 + sig, err
        assert time.monotonic() - t < 5  # sleep dies of the signal passed on
        assert not _alive(cmd_pid)
        assert summary_of(err)["total"] == len(json_lines(out)) >= 1, (out, err)
        assert "Traceback" not in err, err
    finally:
        _reap(p, cmd_pid)


def test_tool_sigterm_to_a_command_that_ignores_it(bpf: None, tmp_path: Path) -> None:
    # SIGTERM is passed on; a command that ignores it is killed after the grace period
    p, cmd_pid = _start(tmp_path, ["syscount"],
                        f"trap '' TERM; for i in $(seq 30); do /bin/true; done; {{ready}}; {LOOP}")
    try:
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        took = time.monotonic() - t
        assert p.returncode == 143, err
        assert not _alive(cmd_pid)
        assert 1.5 < took < 10, took
        # the counts were printed: at least the 30 children waited for before the signal
        m = re.search(r"^wait4 +(\d+)", out, re.M)
        assert m and int(m.group(1)) >= 30, out
    finally:
        _reap(p, cmd_pid)


@pytest.mark.parametrize("json_out", [False, True])
def test_tool_sigint_to_a_command_that_ignores_it(bpf: None, tmp_path: Path,
                                                  json_out: bool) -> None:
    opts = ["--json"] if json_out else []
    p, cmd_pid = _start(tmp_path, ["execsnoop", *opts], f"trap '' INT; {{ready}}; {LOOP}")
    try:
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        took = time.monotonic() - t
        assert p.returncode == 130, err
        assert not _alive(cmd_pid)
        assert 1.5 < took < 10, took  # the grace period (2 s), then the kill
        assert "^C again kills it" in err
        if json_out:
            assert summary_of(err)["total"] == len(json_lines(out)) > 0
        else:
            assert _tool_total(err) == len(out.splitlines()) - 1 > 0, err
        assert "Traceback" not in err, err
    finally:
        _reap(p, cmd_pid)


def test_tool_two_sigints_kill_the_command_at_once(bpf: None, tmp_path: Path) -> None:
    p, cmd_pid = _start(tmp_path, ["execsnoop", "--json"], f"trap '' INT; {{ready}}; {LOOP}")
    try:
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 130, err
        assert time.monotonic() - t < 1.8  # no grace period after the second ^C
        assert not _alive(cmd_pid)
        assert summary_of(err)["total"] == len(json_lines(out))
    finally:
        _reap(p, cmd_pid)


def test_tool_command_status_is_the_exit_status(bpf: None) -> None:
    r = subprocess.run([*CLI, "syscalls", "-e", "getppid", "--", "sh", "-c", "exit 7"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 7, r.stderr


def test_tool_missing_command_fails_before_arming(bpf: None) -> None:
    r = subprocess.run([*CLI, "execsnoop", "--", "/nonexistent/prog"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("probewatch: error:") and "/nonexistent/prog" in r.stderr
    assert "Traceback" not in r.stderr


# -- record -- COMMAND

EXEC = "t:sched:sched_process_exec"


def _run_status(db: Path) -> str:
    from probewatch.capture import Capture

    with Capture(db) as cap:
        [run] = cap.runs()
        return str(run.status)


def _recording(db: Path) -> bool:
    """The recorder has begun its run in DB (armed, the command released)."""
    try:
        return _run_status(db) == "recording"
    except Exception:  # not there yet, or mid-creation
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_record_sigterm_sighup_stop_the_command(tracefs: str, tmp_path: Path,
                                                sig: int) -> None:
    db = tmp_path / "t.db"
    p, cmd_pid = _start(tmp_path, ["record", EXEC, "-o", str(db)], "{ready}; exec sleep 60")
    try:
        # the run is begun in the file (the command is released a moment before that:
        # a signal in between leaves no file, as a run that never began)
        assert wait_for(lambda: _recording(db), 30)
        t = time.monotonic()
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 128 + sig, err
        assert time.monotonic() - t < 5
        assert not _alive(cmd_pid), "the command keeps running untraced"
        assert "Traceback" not in err, err
        assert _run_status(db) == "interrupted"
        assert our_instances(tracefs, p.pid) == []
    finally:
        _reap(p, cmd_pid)


def test_record_echo_closed_pipe_stops_the_command(tracefs: str, tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    p, cmd_pid = _start(tmp_path, ["record", EXEC, "-o", str(db), "--echo"], LOOP)
    try:
        assert p.stdout is not None and p.stderr is not None
        assert p.stdout.readline().split()[:2] == ["TIME(s)", "CPU"]
        p.stdout.close()
        rc = p.wait(timeout=30)
        alive = _alive(cmd_pid)
        _reap(p, cmd_pid)
        err = p.stderr.read()
        assert not alive, "the command keeps running untraced"
        assert rc == 141, err
        assert "Traceback" not in err and "Broken pipe" not in err, err
        assert _run_status(db) == "interrupted"
    finally:
        _reap(p, cmd_pid)


def test_record_sigint_to_a_command_that_ignores_it(tracefs: str, tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    p, cmd_pid = _start(tmp_path, ["record", EXEC, "-o", str(db)],
                        f"trap '' INT; {{ready}}; {LOOP}")
    try:
        assert wait_for(lambda: _recording(db), 30)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        took = time.monotonic() - t
        assert p.returncode == 130, err
        assert not _alive(cmd_pid)
        assert 1.5 < took < 10, took
        assert "^C again kills it" in err
        assert _run_status(db) == "interrupted"
        assert re.search(r"recorded [1-9]\d* events", err), err
    finally:
        _reap(p, cmd_pid)


def test_record_full_disk_stops_the_command(tracefs: str, getppid_n: Path,
                                            tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if m.returncode != 0:
        missing(f"cannot mount a tmpfs (needs root): {m.stderr.strip()}")
    p = None
    cmd_pid = 0
    try:
        db = mnt / "full.db"
        # a command that never ends by itself: only the recorder can stop it
        p, cmd_pid = _start(tmp_path, ["record", "t:syscalls:sys_enter_getppid", "-o",
                                       str(db)], f"while :; do {getppid_n} 20000; done")
        _, err = p.communicate(timeout=60)
        assert p.returncode == 1, err
        assert not _alive(cmd_pid), "the command keeps running untraced"
        assert "disk full" in err and "[disk-full]" in err, err
        assert "waiting for" not in err and "stopping sh" in err, err
        assert "Traceback" not in err, err
    finally:
        if p is not None:
            _reap(p, cmd_pid)
        subprocess.run(["umount", "-l", str(mnt)], check=False)
