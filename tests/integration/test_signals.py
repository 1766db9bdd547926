"""Signals at every moment of start-up leave nothing behind (issue 16 item 3).

A loop over delays sends SIGTERM, SIGHUP or SIGINT to ``trace 'u:libc:malloc'
'u:libc:mem*'`` while it resolves symbols, creates its instance, defines its uprobes,
enables them and starts its drainer; after each run tracefs must hold no instance
and no uprobe of that pid.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_bpf  # tests/conftest.py

from .helpers import (
    CLI,
    json_lines,
    our_instances,
    require_uprobe_events,
    summary_of,
    wait_for,
)

pytestmark = pytest.mark.integration

SPECS = ["u:libc:malloc", "u:libc:mem*"]
DELAYS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # scaled to the start-up time
SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


def _objects(tracefs: str, pid: int) -> tuple[list[str], list[str]]:
    """(instances, uprobe definitions) of probewatch process ``pid``."""
    inst = [n for n in os.listdir(os.path.join(tracefs, "instances"))
            if n.startswith(f"probewatch-{pid}-")]
    with open(os.path.join(tracefs, "uprobe_events")) as f:
        probes = [ln for ln in f.read().splitlines() if f"probewatch_{pid}/" in ln]
    return inst, probes


def _expected_rc(sig: int) -> set[int]:
    # -sig: killed by the default disposition before Python set a handler (nothing
    # existed yet); SIGINT: 130 during start-up, 0 once tracing (^C ends a trace)
    if sig == signal.SIGINT:
        return {130, 0, -sig}
    return {128 + sig, -sig}


def _startup_time(tracefs: str) -> float:
    """Seconds from spawning ``trace SPECS`` until its instance traces (tracing_on 1)."""
    p = subprocess.Popen([*CLI, "trace", *SPECS, "-d", "20"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 15 and p.poll() is None:
            inst, _ = _objects(tracefs, p.pid)
            try:
                with open(os.path.join(tracefs, "instances", inst[0], "tracing_on")) as f:
                    if inst and f.read().strip() == "1":
                        return time.monotonic() - t0
            except (OSError, IndexError):
                pass
            time.sleep(0.02)
        raise AssertionError("trace did not start tracing within 15 s")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def test_signal_at_any_moment_of_startup_leaves_nothing(tracefs: str) -> None:
    require_uprobe_events(tracefs)
    seen_armed = 0  # runs where the signal came after kernel objects existed
    results = []
    # delays from 0 to a little past the moment tracing starts on this machine now
    t_on = _startup_time(tracefs)
    delays = [round(t_on * 1.2 * k / (len(DELAYS) - 1), 3) for k in range(len(DELAYS))]
    for i, delay in enumerate(delays):
        sig = SIGNALS[i % len(SIGNALS)]
        # -d bounds a run that would survive its signal (a defect): system-wide malloc
        p = subprocess.Popen([*CLI, "trace", *SPECS, "-d", "5"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay)
            inst, probes = _objects(tracefs, p.pid)
            armed = bool(inst or probes)
            p.send_signal(sig)
            _, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        seen_armed += armed
        left = _objects(tracefs, p.pid)
        results.append((delay, sig.name, p.returncode, armed, left))
        assert left == ([], []), f"after {sig.name} at {delay}s: left {left}"
        if sig == signal.SIGINT and "Fatal Python error: init_import_site" in err:
            continue  # ^C while the interpreter itself started (before any of ours)
        assert p.returncode in _expected_rc(sig), (delay, sig.name, p.returncode, err)
        if p.returncode > 0:  # a handler ran: one clean exit, no traceback
            assert "Traceback" not in err, err
        assert not os.path.isdir(os.path.join(tracefs, "events", f"probewatch_{p.pid}"))
    # the loop must have hit start-up after the first kernel object, or it proves nothing
    assert seen_armed >= 2, (t_on, results)


def test_sigterm_during_bpf_startup_leaves_nothing(tracefs: str) -> None:
    require_bpf()
    for delay in (0.1, 0.3, 0.5):
        p = subprocess.Popen([*CLI, "trace", "--backend", "bpf", *SPECS, "-d", "5"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        assert p.returncode in (143, -signal.SIGTERM), (delay, err)
        assert "Traceback" not in err, err
        assert _objects(tracefs, p.pid) == ([], [])


# -- with a command: closed pipe, SIGTERM, SIGHUP, SIGINT (issue 16 items 12 and 13)

LOOP = "while :; do /bin/true; done"  # an exec event every millisecond or so


def _traced(tmp_path: Path, script: str, *opts: str) -> tuple[subprocess.Popen[str], int]:
    """Start ``trace t:sched:sched_process_exec -- sh -c SCRIPT``; -> (probewatch, sh pid).
    A ``{ready}`` in SCRIPT becomes ``: > FILE`` (a builtin): this returns once the
    script got there (its traps set), not after a guessed head start."""
    pidfile, ready = tmp_path / "cmd.pid", tmp_path / "cmd.ready"
    script = script.replace("{ready}", f": > {ready}")
    p = subprocess.Popen([*CLI, "trace", "t:sched:sched_process_exec", *opts, "--", "sh", "-c",
                          f"echo $$ > {pidfile}; {script}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) or (
            f": > {ready}" in script and not ready.exists()):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < end, "the command did not start"
        time.sleep(0.05)
    return p, int(pidfile.read_text())


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _reap(p: subprocess.Popen[str], cmd_pid: int) -> None:
    """After a failed test: nothing of it keeps running."""
    if p.poll() is None:
        p.kill()
        p.wait()
    if _alive(cmd_pid):
        os.kill(cmd_pid, signal.SIGKILL)


def _summary_total(err: str) -> int:
    m = re.search(r"^(\d+) events \(", err, re.M)
    assert m, err
    return int(m.group(1))


def test_closed_pipe_stops_the_command_and_exits_141(tracefs: str, tmp_path: Path) -> None:
    p, cmd_pid = _traced(tmp_path, LOOP)
    try:
        assert p.stdout is not None and p.stderr is not None
        assert p.stdout.readline().split()[:2] == ["TIME(s)", "CPU"]
        p.stdout.close()  # as `| head -1` does
        rc = p.wait(timeout=30)
        alive = _alive(cmd_pid)
        _reap(p, cmd_pid)  # a command left running would hold stderr open
        err = p.stderr.read()
        assert not alive, "the command keeps running untraced"
        assert rc == 141, err
        _summary_total(err)  # printed to stderr (what reached the reader is unknown)
        assert "Traceback" not in err and "Broken pipe" not in err, err
        assert our_instances(tracefs, p.pid) == []
    finally:
        _reap(p, cmd_pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_sighup_stop_the_command(tracefs: str, tmp_path: Path, sig: int) -> None:
    p, cmd_pid = _traced(tmp_path, "exec sleep 60")
    try:
        # the exec (the event this test expects printed) has happened: sh is now sleep
        assert wait_for(lambda: _comm(cmd_pid) == "sleep"), _comm(cmd_pid)
        # no wait for the reader: SIGTERM stops tracing, and what it read from the ring
        # buffer (the exec) is still printed and counted before the run ends
        t = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 128 + sig, err
        assert time.monotonic() - t < 5  # sleep dies of the signal passed on
        assert not _alive(cmd_pid)
        # the command's exec was printed, and the summary counts what was printed
        assert _summary_total(err) == len(out.splitlines()) - 1 >= 1, (out, err)
        assert our_instances(tracefs, p.pid) == []
    finally:
        _reap(p, cmd_pid)


@pytest.mark.parametrize("json_out", [False, True])
def test_sigint_to_a_command_that_ignores_it(tracefs: str, tmp_path: Path,
                                             json_out: bool) -> None:
    # ^C stops tracing (buffered events are still printed), then after a grace period
    # the command, which ignores SIGINT, is killed; printed == counted
    opts = ("--json",) if json_out else ()
    p, cmd_pid = _traced(tmp_path, f"trap '' INT; {{ready}}; {LOOP}", *opts)
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
            total = summary_of(err)["total"]
            assert total == len(json_lines(out)) > 0
        else:
            assert _summary_total(err) == len(out.splitlines()) - 1 > 0
        assert our_instances(tracefs, p.pid) == []
    finally:
        _reap(p, cmd_pid)


def test_two_sigints_kill_the_command_at_once(tracefs: str, tmp_path: Path) -> None:
    p, cmd_pid = _traced(tmp_path, f"trap '' INT; {{ready}}; {LOOP}", "--json")
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
        assert our_instances(tracefs, p.pid) == []
    finally:
        _reap(p, cmd_pid)
