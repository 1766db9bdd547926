"""trace --count on the bpf backend at the limit: raw tracepoints, a per-CPU array.

Counts must stay exact (the same as ftrace's and perf's), pid scoping must follow
children and threads, and the summary must say which program type counted, so a
silent fall-back to the generic tracepoint program fails here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c  # tests/conftest.py

from .helpers import CLI, run_cli, summary_of, trace_then_reuse_pid, wait_bpf_attached

pytestmark = pytest.mark.integration

FAST = ("tp_btf", "raw_tp")
GETPPID = "t:syscalls:sys_enter_getppid"
SYS4 = ["t:syscalls:sys_enter_getppid", "t:syscalls:sys_exit_getppid",
        "t:syscalls:sys_enter_getpgid", "t:syscalls:sys_exit_getpgid"]


@pytest.fixture(scope="module")
def fork_getppid() -> Path:
    return build_c("fork_getppid", "-pthread")


@pytest.fixture(scope="module")
def getpgid_n() -> Path:
    return build_c("getpgid_n")


def _count(*args: str, backend: str = "bpf", how: str | None = None) -> dict[str, Any]:
    env = None if how is None else {**os.environ, "PROBEWATCH_BPF_COUNT": how}
    r = run_cli("trace", "--count", "--json", "--backend", backend, *args, env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return summary_of(r.stderr)


@pytest.mark.parametrize("how", FAST)
def test_exact_with_children_and_threads(bpf: None, fork_getppid: Path, how: str) -> None:
    """4 tasks (process, thread, child, grandchild) x 3000 getppid: exactly 12000
    entries and exits, on each program type; forks (2 processes, 1 thread) and task
    exits (4) on raw tracepoints of the same names."""
    specs = [GETPPID, "t:syscalls:sys_exit_getppid", "t:sched:sched_process_fork",
             "t:sched:sched_process_exit"]
    s = _count(*specs, "--", str(fork_getppid), "3000", how=how)
    assert s["counted_by"] == how and "count_path" not in s
    assert s["events"] == {GETPPID: 12000, "t:syscalls:sys_exit_getppid": 12000,
                           "t:sched:sched_process_fork": 3, "t:sched:sched_process_exit": 4}
    assert s["lost"] == 0


def test_auto_takes_the_fast_path(bpf: None, fork_getppid: Path) -> None:
    """The CLI's default (auto backend, no filter) counts on raw tracepoints."""
    r = run_cli("trace", "--count", "--json", GETPPID, "--", str(fork_getppid), "500")
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["backend"] == "bpf"
    assert s["counted_by"] in FAST
    assert s["events"] == {GETPPID: 2000}


def test_several_syscalls_equal_on_every_backend(bpf: None, getpgid_n: Path,
                                                 fork_getppid: Path) -> None:
    """Entries and exits of two syscalls in processes run one after another by a
    shell: the same counts from ftrace, perf, the generic bpf program and the fast
    path; getpgid (which the shell does not call) exactly."""
    cmd = ["--", "sh", "-c", f"{getpgid_n} 2500; {fork_getppid} 700"]
    got = {b: _count(*SYS4, *cmd, backend=b)["events"] for b in ("ftrace", "perf")}
    got["bpf-tracepoint"] = _count(*SYS4, *cmd, how="tracepoint")["events"]
    s = _count(*SYS4, *cmd)
    assert s["counted_by"] in FAST
    got["bpf"] = s["events"]
    assert got["bpf"]["t:syscalls:sys_enter_getpgid"] == 2500
    assert got["bpf"]["t:syscalls:sys_exit_getpgid"] == 2500
    assert got["bpf"][GETPPID] >= 2800  # and whatever sh itself asks
    assert got["bpf"]["t:syscalls:sys_exit_getppid"] == got["bpf"][GETPPID]
    for b, ev in got.items():
        assert ev == got["bpf"], b


def test_every_syscall_on_two_links(bpf: None, getpgid_n: Path) -> None:
    """All syscall tracepoints, entries and exits: auto counts them on bpf (two raw
    tracepoint links) and the totals equal ftrace's, per spec."""
    specs = ["t:syscalls:sys_enter_*", "t:syscalls:sys_exit_*"]
    cmd = ["--", str(getpgid_n), "1500"]
    r = run_cli("trace", "--count", "--json", *specs, *cmd)
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["backend"] == "bpf" and s["counted_by"] in FAST
    ftrace = _count(*specs, *cmd, backend="ftrace")["events"]
    assert s["events"] == ftrace
    assert s["events"]["t:syscalls:sys_enter_*"] > 1500


def _wait_file(path: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)


def test_pid_scoping(bpf: None, getpgid_n: Path, tmp_path: Path) -> None:
    """-p PID counts that process only: its 300 calls before tracing began are not
    counted, its 7000 after are, and 5000 of another process meanwhile are not."""
    sync = tmp_path / "sync"
    target = subprocess.Popen([str(getpgid_n), "300", str(sync), "7000"])
    p = None
    try:
        _wait_file(Path(f"{sync}.a"))
        p = subprocess.Popen([*CLI, "trace", "--count", "--json", "--backend", "bpf",
                              "-p", str(target.pid), "t:syscalls:sys_enter_getpgid",
                              "t:syscalls:sys_exit_getpgid"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_bpf_attached(p)
        Path(f"{sync}.b").touch()
        _wait_file(Path(f"{sync}.c"))
        subprocess.run([str(getpgid_n), "5000"], check=True)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        Path(f"{sync}.d").touch()
        target.wait(timeout=30)
        if p is not None and p.poll() is None:
            p.kill()
    assert p.returncode in (0, 130), err
    s = summary_of(err)
    assert s["counted_by"] in FAST
    assert s["events"] == {"t:syscalls:sys_enter_getpgid": 7000,
                           "t:syscalls:sys_exit_getpgid": 7000}


def _fds(pid: int, what: str) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == what
        except OSError:
            pass
    return n


def test_one_program_per_job(bpf: None, getpgid_n: Path, tmp_path: Path) -> None:
    """While counting one syscall of a command: three programs and three links (the
    count program on sys_enter, the fork follower, the exit that forgets a pid), not a
    second copy of them (each copy counts every event again: twice the cost)."""
    sync = tmp_path / "sync"
    p = subprocess.Popen([*CLI, "trace", "--count", "--json", "t:syscalls:sys_enter_getpgid",
                          "--", str(getpgid_n), "10", str(sync), "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_file(Path(f"{sync}.a"))
        assert wait_bpf_attached(p) == 3
        assert _fds(p.pid, "anon_inode:bpf-prog") == 3
        Path(f"{sync}.b").touch()
        _wait_file(Path(f"{sync}.c"))
        Path(f"{sync}.d").touch()
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    s = summary_of(err)
    assert s["events"] == {"t:syscalls:sys_enter_getpgid": 30}
    assert s["counted_by"] in FAST


def test_unfit_runs_fall_back_and_say_why(bpf: None, fork_getppid: Path) -> None:
    """--comm and --filter need the generic program; the counts stay exact."""
    s = _count("--comm", "fork_getppid", GETPPID, "--", str(fork_getppid), "400")
    assert s["counted_by"] == "tracepoint" and s["count_path"] == "--comm"
    assert s["events"] == {GETPPID: 1600}
    s = _count("--filter", "common_pid > 0", GETPPID, "--", str(fork_getppid), "400")
    assert s["counted_by"] == "tracepoint" and s["count_path"] == "--filter"
    assert s["events"] == {GETPPID: 1600}


def _count_progs() -> set[str]:
    """Ids of the count programs loaded now (anyone's: another probewatch may run)."""
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True,
                         text=True).stdout
    return {line.split(":", 1)[0] for line in out.splitlines() if "name pw_cnt_" in line}


def test_nothing_stays_loaded(bpf: None, fork_getppid: Path) -> None:
    """After a run no count program of it is loaded (the kernel frees them with the
    fds); programs loaded before the run (another probewatch) do not count."""
    before = _count_progs()
    s = _count(GETPPID, "t:sched:sched_process_exit", "--", str(fork_getppid), "10")
    assert s["counted_by"] in ("tp_btf", "raw_tp")  # the count programs did run
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = _count_progs() - before
        if not left:
            break
        time.sleep(0.1)
    assert not left


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="ia32 syscalls are x86_64's")
def test_compat_syscalls_are_not_counted(bpf: None) -> None:
    """A 32-bit process's getppid (ia32 number 64, semget's on x86_64) and exit (1,
    write's): the syscall tracepoints ignore compat syscalls, and so must the raw
    tracepoint path, which sees them under those numbers."""
    exe = build_c("ia32_getppid", "-m32", "-nostdlib", "-static", "-fno-pie", "-no-pie")
    if subprocess.run([str(exe), "1"]).returncode != 0:
        pytest.skip("the kernel runs no 32-bit programs (CONFIG_IA32_EMULATION)")
    specs = ["t:syscalls:sys_enter_semget", "t:syscalls:sys_exit_semget",
             "t:syscalls:sys_enter_getppid", "t:syscalls:sys_enter_write"]
    want = dict.fromkeys(specs, 0)
    assert _count(*specs, "--", str(exe), "3000", backend="ftrace")["events"] == want
    for how in FAST:
        s = _count(*specs, "--", str(exe), "3000", how=how)
        assert s["counted_by"] == how
        assert s["events"] == want, how


def test_a_reused_pid_is_not_counted(bpf: None, tmp_path: Path) -> None:
    """A counted child exits; an unrelated process given the same pid (through
    ns_last_pid) while the count goes on is not counted: the exit took the pid out of
    the set."""
    child, reused, _, err, _ = trace_then_reuse_pid(["--count", "--json", GETPPID],
                                                    build_c("getppid_n"), tmp_path)
    assert reused, "could not get the counted child's pid again"
    s = summary_of(err)
    assert s["counted_by"] in FAST
    # the child's 5 and whatever bash makes itself; never the other process's 1000
    assert 5 <= s["events"][GETPPID] < 1000, s
