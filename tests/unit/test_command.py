"""collect.command: the gated traced command and the SIGTERM/SIGHUP guard (no tracing)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import kernel_lacks  # tests/conftest.py
from probewatch.collect.command import (
    EXEC_FAILED,
    STARTUP_IGNORED,
    STARTUP_MASK,
    GatedCommand,
    SignalGuard,
    exit_code,
    kill_child,
    resolve_command,
    try_reap,
)
from probewatch.errors import NotFound, ProbewatchError


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _children() -> set[int]:
    me = os.getpid()
    out = set()
    for t in os.listdir(f"/proc/{me}/task"):
        try:
            with open(f"/proc/{me}/task/{t}/children") as f:
                out.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_exited(cmd: GatedCommand, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cmd.exited():
        assert time.monotonic() < end, "command did not exit"
        time.sleep(0.01)


@pytest.fixture
def cmd() -> Iterator[GatedCommand]:
    c = GatedCommand()
    yield c
    c.close()
    if c.pid:  # a released command a failing test left running
        c.kill()


# -- GatedCommand


def test_missing_command_raises_before_fork(cmd: GatedCommand) -> None:
    kids = _children()
    with pytest.raises(NotFound) as ei:
        cmd.start(["/nonexistent/probewatch-no-such-program", "arg"])
    assert str(ei.value) == (
        "cannot run '/nonexistent/probewatch-no-such-program': No such file or directory"
    )
    assert cmd.pid == 0 and not cmd.gated
    assert _children() == kids  # nothing was forked
    with pytest.raises(NotFound) as ei:
        cmd.start(["probewatch-no-such-program-xyz"])
    assert str(ei.value) == ("cannot run 'probewatch-no-such-program-xyz': "
                             "No such file or directory (searched PATH)")


def test_exec_failure_at_release_raises_not_found_with_127(
    cmd: GatedCommand, tmp_path: Path
) -> None:
    f = tmp_path / "not-a-program"
    f.write_bytes(b"\x7fELF garbage, no interpreter line")
    f.chmod(0o755)
    pid = cmd.start([str(f), "arg"])
    assert pid > 0 and cmd.pid == pid and cmd.gated
    with pytest.raises(NotFound) as ei:
        cmd.release()
    assert str(ei.value) == f"cannot run {str(f)!r}: Exec format error"
    assert cmd.returncode == EXEC_FAILED == 127
    assert cmd.pid == 0 and not cmd.gated
    assert cmd.exited()  # reaped by release()
    assert cmd.wait() == 127
    assert _gone(pid)


def test_exec_failure_permission_denied(cmd: GatedCommand, tmp_path: Path) -> None:
    f = tmp_path / "not-executable"
    f.write_text("#!/bin/sh\n")
    f.chmod(0o644)
    with pytest.raises(NotFound, match=r"^cannot run '.*not-executable': Permission denied$"):
        cmd.start([str(f)])
    assert cmd.pid == 0


# -- resolve_command


def test_resolve_command_searches_path_like_execvp(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    (a / "prog").write_text("#!/bin/sh\n")  # not executable: skipped
    (a / "prog").chmod(0o644)
    (b / "prog").mkdir()  # a directory: skipped
    (c / "prog").write_text("#!/bin/sh\n")
    (c / "prog").chmod(0o755)
    path = os.pathsep.join([str(tmp_path / "missing"), str(a), str(b), str(c)])
    assert resolve_command("prog", path) == str(c / "prog")
    # only non-executable candidates: EACCES, as execvp reports it
    with pytest.raises(NotFound, match=r"^cannot run 'prog': Permission denied \(searched"):
        resolve_command("prog", os.pathsep.join([str(a), str(b)]))
    with pytest.raises(NotFound, match="No such file or directory"):
        resolve_command("prog", str(tmp_path / "missing"))
    # a name with a slash is not searched
    assert resolve_command(str(c / "prog"), "") == str(c / "prog")
    with pytest.raises(NotFound):
        resolve_command("")


def test_resolve_command_empty_path_entry_is_cwd(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "here").write_text("#!/bin/sh\n")
    (tmp_path / "here").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert resolve_command("here", "/nonexistent-dir:") == "./here"
    assert os.path.samefile(resolve_command("here", "/nonexistent-dir:"), tmp_path / "here")


def test_normal_exit_status(cmd: GatedCommand) -> None:
    cmd.start(["sh", "-c", "exit 3"])
    assert cmd.returncode is None
    cmd.release()
    assert cmd.wait() == 3
    assert cmd.returncode == 3 and cmd.pid == 0
    assert cmd.wait() == 3  # again: no second waitpid


def test_exit_zero_seen_by_exited(cmd: GatedCommand) -> None:
    cmd.start(["true"])
    cmd.release()
    _wait_exited(cmd)
    assert cmd.returncode == 0 and cmd.pid == 0
    assert cmd.exited()  # stays ended


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_signal_killed_status_is_128_plus_sig(cmd: GatedCommand, sig: signal.Signals) -> None:
    # the gate resets SIGINT/SIGTERM/SIGHUP to their defaults in the child
    cmd.start(["sh", "-c", f"kill -{int(sig)} $$; sleep 5"])
    cmd.release()
    assert cmd.wait() == 128 + sig


def test_signal_killed_status_via_exited(cmd: GatedCommand) -> None:
    cmd.start(["sleep", "30"])
    cmd.release()
    assert not cmd.exited()
    os.kill(cmd.pid, signal.SIGTERM)
    _wait_exited(cmd)
    assert cmd.returncode == 143


def test_held_at_gate_until_release(cmd: GatedCommand, tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    pid = cmd.start(["touch", str(mark)])
    time.sleep(0.2)
    assert not mark.exists()
    assert not cmd.exited()  # still waiting at the gate
    assert os.path.exists(f"/proc/{pid}")
    cmd.release()
    assert cmd.wait() == 0
    assert mark.exists()


def test_pidfd_readable_on_exit(cmd: GatedCommand) -> None:
    cmd.start(["sleep", "0.2"])
    if cmd.pidfd < 0:
        kernel_lacks("pidfd_open (Linux 5.3+)")
    r, _, _ = select.select([cmd.pidfd], [], [], 0)
    assert r == []  # gated: not exited
    cmd.release()
    r, _, _ = select.select([cmd.pidfd], [], [], 10)
    assert r == [cmd.pidfd]
    assert cmd.exited() and cmd.returncode == 0


def test_close_kills_unreleased_child(tmp_path: Path) -> None:
    before = _fds()
    mark = tmp_path / "ran"
    cmd = GatedCommand()
    pid = cmd.start(["touch", str(mark)])
    assert cmd.gated
    cmd.close()
    assert _gone(pid)  # killed and reaped, no zombie left
    assert cmd.pid == 0 and not cmd.gated
    assert cmd.returncode is None  # it never ran
    assert cmd.wait() is None
    assert not mark.exists()
    assert _fds() == before  # gate, error pipe and pidfd closed
    cmd.close()  # idempotent


def test_kill_unreleased_child(cmd: GatedCommand) -> None:
    pid = cmd.start(["true"])
    cmd.kill()
    assert _gone(pid) and cmd.pid == 0
    assert cmd.returncode is None
    assert cmd.exited()


def test_close_leaves_released_command_running(tmp_path: Path) -> None:
    before = _fds()
    cmd = GatedCommand()
    cmd.start(["sh", "-c", "exit 5"])
    cmd.release()
    cmd.close()
    assert _fds() == before
    assert cmd.wait() == 5


def test_start_needs_argv_and_only_once(cmd: GatedCommand) -> None:
    with pytest.raises(ProbewatchError, match="no command given"):
        cmd.start([])
    cmd.start(["true"])
    with pytest.raises(ProbewatchError, match="started already"):
        cmd.start(["true"])


def test_no_command() -> None:
    cmd = GatedCommand()
    assert not cmd.exited()
    assert cmd.wait() is None
    cmd.release()  # nothing to release
    cmd.kill()
    cmd.close()


# -- helpers


def _fork_child(seconds: float, code: int) -> int:
    """A plain child that sleeps, then exits with ``code``."""
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os._exit(code)
    return pid


def test_exit_code_and_try_reap() -> None:
    pid = _fork_child(0.3, 7)
    assert try_reap(pid) == (False, None)
    _, status = os.waitpid(pid, 0)
    assert exit_code(status) == 7
    assert try_reap(pid) == (True, None)  # no child of ours any more


def test_kill_child() -> None:
    pid = _fork_child(30, 0)
    kill_child(pid)
    assert _gone(pid)
    kill_child(pid)  # already gone: no error


# -- SignalGuard


@pytest.fixture
def saved_handlers() -> Iterator[None]:
    sigs = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
    old = {s: signal.getsignal(s) for s in sigs}
    yield
    for s, h in old.items():
        signal.signal(s, h)


@pytest.mark.usefixtures("saved_handlers")
def test_signal_guard_sigterm_is_system_exit_143() -> None:
    def before(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, before)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    guard = SignalGuard()
    guard.install()
    try:
        with pytest.raises(SystemExit) as ei:
            signal.raise_signal(signal.SIGTERM)
        assert ei.value.code == 143
        with pytest.raises(SystemExit) as ei:
            signal.raise_signal(signal.SIGHUP)
        assert ei.value.code == 129
    finally:
        guard.restore()
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    guard.restore()  # idempotent
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.usefixtures("saved_handlers")
def test_signal_guard_custom_handler_and_signals() -> None:
    seen: list[int] = []
    guard = SignalGuard(lambda signum, frame: seen.append(signum), [signal.SIGUSR1])
    guard.install()
    term = signal.getsignal(signal.SIGTERM)
    signal.raise_signal(signal.SIGUSR1)
    guard.restore()
    assert seen == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is term  # not touched


@pytest.mark.usefixtures("saved_handlers")
def test_signal_guard_does_nothing_off_the_main_thread() -> None:
    old = signal.getsignal(signal.SIGTERM)
    guard = SignalGuard()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            guard.install()
            guard.restore()
        except BaseException as e:  # pragma: no cover - the failure being tested
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) is old


# -- what the command inherits


def _sigset_hex(sigs: frozenset[int]) -> str:
    return f"{sum(1 << (s - 1) for s in sigs):016x}"


def _status_lines(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("SigIgn", "SigBlk", "SigCgt"):
            out[k] = v.strip()
    return out


@pytest.mark.usefixtures("saved_handlers")
def test_child_gets_default_signals_and_empty_mask(cmd: GatedCommand, tmp_path: Path) -> None:
    # this process ignores SIGPIPE/SIGXFSZ (Python), handles SIGTERM, ignores SIGUSR1
    # (set after start-up) and blocks SIGUSR2: none of it reaches the command
    assert signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN
    # reference: a command started by subprocess (which restores SIGPIPE/SIGXFSZ) first
    ref = tmp_path / "ref"
    subprocess.run(["sh", "-c", f"cat /proc/self/status > {ref}"], check=True)
    signal.signal(signal.SIGTERM, lambda s, f: None)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        out = tmp_path / "status"
        cmd.start(["sh", "-c", f"cat /proc/self/status > {out}"])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    cmd.release()
    assert cmd.wait() == 0
    got = _status_lines(out)
    # what pytest started with (normally nothing): not SIGPIPE, SIGXFSZ or SIGUSR1
    assert got["SigIgn"] == _sigset_hex(STARTUP_IGNORED)
    assert got["SigBlk"] == _sigset_hex(STARTUP_MASK)
    assert not {signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1} & STARTUP_IGNORED
    assert got == _status_lines(ref)


def test_child_keeps_env_cwd_fds_rlimits(cmd: GatedCommand, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBEWATCH_TEST_VAR", "a b\tc")
    monkeypatch.chdir(tmp_path)
    script = ("echo \"$PROBEWATCH_TEST_VAR\"; pwd; ls /proc/self/fd | sort -n | tr '\\n' ' ';"
              " echo; ulimit -n; ulimit -c")
    out = tmp_path / "out"
    cmd.start(["sh", "-c", f"({script}) > {out}"])
    cmd.release()
    assert cmd.wait() == 0
    ref = tmp_path / "ref"
    subprocess.run(["sh", "-c", f"({script}) > {ref}"], check=True, close_fds=False)
    assert out.read_text() == ref.read_text()
    assert out.read_text().splitlines()[:2] == ["a b\tc", str(tmp_path)]


def test_gated_child_does_not_run_when_the_gate_closes(tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    cmd = GatedCommand()
    pid = cmd.start(["touch", str(mark)])
    os.close(cmd._gate_w)  # as when the tracer dies: EOF instead of "go"
    cmd._gate_w = -1
    assert cmd.wait() == EXEC_FAILED
    assert not mark.exists()
    assert _gone(pid)
    cmd.close()


# -- wait_for / terminate


def test_wait_for_times_out_and_is_interruptible(cmd: GatedCommand) -> None:
    cmd.start(["sleep", "30"])
    cmd.release()
    t = time.monotonic()
    assert cmd.wait_for(0.3) is False
    assert 0.25 < time.monotonic() - t < 3
    t = time.monotonic()
    assert cmd.wait_for(None, interrupted=lambda: time.monotonic() - t > 0.2) is False
    assert cmd.returncode is None
    os.kill(cmd.pid, signal.SIGTERM)
    assert cmd.wait_for(10) is True
    assert cmd.returncode == 143


def test_terminate_sends_signal_then_kills(cmd: GatedCommand) -> None:
    cmd.start(["sleep", "30"])
    cmd.release()
    assert cmd.terminate(signal.SIGHUP, grace=5) is True
    assert cmd.returncode == 129


def test_terminate_kills_a_command_that_ignores_the_signal(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    cmd = GatedCommand()
    cmd.start(["sh", "-c", f"trap '' TERM; : > {ready}; sleep 30"])
    cmd.release()
    end = time.monotonic() + 20
    while not ready.exists():  # the trap is set: no head start to guess
        assert time.monotonic() < end and not cmd.exited()
        time.sleep(0.01)
    t = time.monotonic()
    assert cmd.terminate(signal.SIGTERM, grace=0.3) is False
    assert time.monotonic() - t < 5
    assert cmd.returncode == 137
    cmd.close()


# -- SignalGuard.deferred


@pytest.mark.usefixtures("saved_handlers")
def test_deferred_holds_signals_until_the_block_ends() -> None:
    guard = SignalGuard()
    guard.install()
    done: list[str] = []
    try:
        with pytest.raises(SystemExit) as ei:
            with guard.deferred():
                signal.raise_signal(signal.SIGTERM)
                done.append("created")
                with guard.deferred():  # nested: only the outermost acts
                    signal.raise_signal(signal.SIGHUP)
                    done.append("inner")
                done.append("recorded")
        assert ei.value.code == 143  # the first signal held back
        assert done == ["created", "inner", "recorded"]
        with guard.deferred():
            pass  # nothing pending: nothing raised
    finally:
        guard.restore()


@pytest.mark.usefixtures("saved_handlers")
def test_deferred_chains_sigint_to_keyboard_interrupt() -> None:
    old = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    guard = SignalGuard(chain=[signal.SIGINT])
    guard.install()
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with guard.deferred():
                signal.raise_signal(signal.SIGINT)
                done.append(1)
        assert done == [1]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # outside: at once, as before
    finally:
        guard.restore()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, old)


@pytest.mark.usefixtures("saved_handlers")
def test_chain_leaves_an_ignored_signal_alone() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    guard = SignalGuard(signals=[signal.SIGTERM], chain=[signal.SIGHUP])
    guard.install()
    try:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.raise_signal(signal.SIGHUP)  # still ignored
    finally:
        guard.restore()


@pytest.mark.usefixtures("saved_handlers")
def test_guards_restored_out_of_order_leave_the_original_handlers() -> None:
    old_int = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    a = SignalGuard(chain=[signal.SIGINT])
    b = SignalGuard(chain=[signal.SIGINT])
    try:
        a.install()
        b.install()
        a.restore()  # the first session closes first
        with pytest.raises(KeyboardInterrupt):  # b still routes ^C to the original
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(SystemExit):
            signal.raise_signal(signal.SIGTERM)
        b.restore()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        a.restore()
        b.restore()
        signal.signal(signal.SIGINT, old_int)
