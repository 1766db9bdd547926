"""collect.command: the gated traced command and the SIGTERM/SIGHUP guard (no tracing)."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probewatch.collect.command import (
    EXEC_FAILED,
    GatedCommand,
    SignalGuard,
    exit_code,
    kill_child,
    try_reap,
)
from probewatch.errors import NotFound, ProbewatchError


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


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


def test_exec_failure_raises_not_found_with_127(cmd: GatedCommand) -> None:
    pid = cmd.start(["/nonexistent/probewatch-no-such-program", "arg"])
    assert pid > 0 and cmd.pid == pid and cmd.gated
    with pytest.raises(NotFound) as ei:
        cmd.release()
    assert str(ei.value) == (
        "cannot run '/nonexistent/probewatch-no-such-program': No such file or directory"
    )
    assert cmd.returncode == EXEC_FAILED == 127
    assert cmd.pid == 0 and not cmd.gated
    assert cmd.exited()  # reaped by release()
    assert cmd.wait() == 127
    assert _gone(pid)


def test_exec_failure_permission_denied(cmd: GatedCommand, tmp_path: Path) -> None:
    f = tmp_path / "not-executable"
    f.write_text("#!/bin/sh\n")
    f.chmod(0o644)
    if os.geteuid() == 0 and os.access(f, os.X_OK):
        pytest.skip("root may execute anything here")
    cmd.start([str(f)])
    with pytest.raises(NotFound, match=r"^cannot run '.*not-executable': Permission denied$"):
        cmd.release()
    assert cmd.returncode == 127


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
        pytest.skip("no pidfd_open on this kernel")
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
