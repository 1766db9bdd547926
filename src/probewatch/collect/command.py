"""The traced command's lifecycle, shared by every session backend.

A command to trace is forked at once but held at a gate (the child blocks reading a
pipe) until the probes and its pid filter are in place; only then does it exec, so
not one of its events is missed. A second pipe (close-on-exec) carries the errno
back when the exec fails. Exit statuses follow the shell: the exit code, or
``128 + N`` for a command killed by signal N.

:class:`SignalGuard` turns SIGTERM and SIGHUP into ``SystemExit(128 + N)`` while a
session runs, so that its ``finally`` / ``with`` clean-up runs on those signals too.

Example::

    cmd = GatedCommand()
    pid = cmd.start(["sh", "-c", "exit 3"])  # held: arm the probes for pid now
    cmd.release()                            # NotFound if it cannot be run
    assert cmd.wait() == 3
    cmd.close()
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from ..errors import NotFound, ProbewatchError

#: a signal handler, as :func:`signal.signal` takes it
Handler = Callable[[int, FrameType | None], Any]

#: what the shell reports for a command that could not be run
EXEC_FAILED = 127


def exit_code(status: int) -> int:
    """A wait status as the shell reports it: the exit code, or 128+N for signal N.

    Example::

        _, status = os.waitpid(pid, 0)
        rc = exit_code(status)  # 143 for a command killed by SIGTERM
    """
    rc = os.waitstatus_to_exitcode(status)
    return 128 - rc if rc < 0 else rc


def try_reap(pid: int) -> tuple[bool, int | None]:
    """Reap child ``pid`` if it has ended, without blocking: ``(ended, exit_code)``.

    A pid that is no child of this process (already reaped) counts as ended, with
    the exit code unknown (None).

    Example::

        ended, rc = try_reap(pid)  # (False, None) while it runs
    """
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True, None
    if got == 0:
        return False, None
    return True, exit_code(status)


def kill_child(pid: int) -> None:
    """SIGKILL child ``pid`` and reap it; a child that is already gone is no error.

    Example::

        kill_child(drainer_pid)
    """
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class GatedCommand:
    """A command forked by :meth:`start`, held at a gate until :meth:`release`.

    ``pid`` is the child's pid until it is reaped (then 0); ``pidfd`` (or -1 where
    pidfds are missing) becomes readable when it exits; ``returncode`` is its exit
    status once reaped (shell convention, 127 when it could not be run). A command
    never released is killed by :meth:`close`: it must not run untraced.

    Example::

        cmd = GatedCommand()
        pid = cmd.start(["true"])
        cmd.release()
        while not cmd.exited():
            select.select([cmd.pidfd], [], [], 0.2)
        print(cmd.returncode)  # 0
        cmd.close()
    """

    def __init__(self) -> None:
        self.pid = 0
        self.argv: list[str] = []
        self.pidfd = -1
        self.returncode: int | None = None
        self._gate_w = -1
        self._err_r = -1
        self._ended = False

    @property
    def gated(self) -> bool:
        """True between :meth:`start` and :meth:`release` (or :meth:`close`)."""
        return self._gate_w >= 0

    def start(self, argv: Sequence[str]) -> int:
        """Fork ``argv`` held at the gate; returns its pid.

        Example::

            pid = GatedCommand().start(["cat", "/etc/hostname"])
        """
        if not argv:
            raise ProbewatchError("no command given")
        if self.pid or self.gated:
            raise ProbewatchError("a command was started already")
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(gate_w)
                os.close(err_r)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                os.read(gate_r, 1)
                os.close(gate_r)
                os.execvp(argv[0], list(argv))
            except OSError as e:
                try:
                    os.write(err_w, f"{e.errno}".encode())
                except OSError:
                    pass
            finally:
                os._exit(EXEC_FAILED)
        os.close(gate_r)
        os.close(err_w)
        self.pid = pid
        try:
            self.pidfd = os.pidfd_open(pid)  # readable when the command exits
        except (AttributeError, OSError):
            self.pidfd = -1
        self.argv = list(argv)
        self._gate_w = gate_w
        self._err_r = err_r
        return pid

    def release(self) -> None:
        """Open the gate: the command execs now. Does nothing when it is not gated.

        Raises NotFound ("cannot run 'X': <strerror>", returncode 127) when the
        exec fails.

        Example::

            cmd.release()
        """
        if not self.gated:
            return
        os.write(self._gate_w, b"g")
        os.close(self._gate_w)
        self._gate_w = -1
        err = os.read(self._err_r, 64)
        os.close(self._err_r)
        self._err_r = -1
        if err:
            os.waitpid(self.pid, 0)
            self._reaped(EXEC_FAILED)
            raise NotFound(f"cannot run {self.argv[0]!r}: {os.strerror(int(err))}")

    def exited(self) -> bool:
        """Has the command ended? Reaps it (sets ``returncode``) without blocking.

        False while it runs and when no command was started.

        Example::

            if cmd.exited():
                print(cmd.returncode)
        """
        if not self.pid:
            return self._ended
        ended, rc = try_reap(self.pid)
        if ended:
            # rc is None when someone else reaped it: returncode stays unknown
            self._reaped(rc if rc is not None else self.returncode)
        return ended

    def wait(self) -> int | None:
        """Wait for the command to exit; its exit status (None if none was run).

        Example::

            rc = cmd.wait()  # 128+9 = 137 for a command killed by SIGKILL
        """
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            self._reaped(exit_code(status))
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the command and reap it. ``returncode`` is left as it was.

        Example::

            cmd.kill()
        """
        if self.pid:
            kill_child(self.pid)
            self._reaped(self.returncode)

    def close(self) -> None:
        """Kill a command that was never released, and close the pipes and pidfd.

        A released command is left running (wait for it with :meth:`wait`).
        Idempotent.

        Example::

            cmd.close()
        """
        if self.gated:  # never released: the command must not run untraced
            self.kill()
            os.close(self._gate_w)
            self._gate_w = -1
        if self._err_r >= 0:
            os.close(self._err_r)
            self._err_r = -1
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def _reaped(self, returncode: int | None) -> None:
        self.pid = 0
        self.returncode = returncode
        self._ended = True


def raise_exit(signum: int, frame: FrameType | None) -> None:
    """The default :class:`SignalGuard` handler: ``SystemExit(128 + signum)``.

    Example::

        signal.signal(signal.SIGTERM, raise_exit)
    """
    raise SystemExit(128 + signum)


class SignalGuard:
    """Install a handler for some signals (main thread only), and restore the old ones.

    By default SIGTERM and SIGHUP raise ``SystemExit(128 + N)``, which runs every
    ``finally`` and ``with``-exit on the way out. In any thread but the main one
    (where Python cannot set handlers) :meth:`install` does nothing.

    Example::

        guard = SignalGuard()
        guard.install()
        try:
            run()  # SIGTERM here -> SystemExit(143)
        finally:
            guard.restore()
    """

    def __init__(
        self,
        handler: Handler = raise_exit,
        signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP),
    ) -> None:
        self.handler = handler
        self.signals = tuple(signals)
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        """Set the handler for each signal, remembering the handler it replaces.

        Example::

            SignalGuard(signals=[signal.SIGINT, signal.SIGTERM]).install()
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            try:
                self._old[sig] = signal.signal(sig, self.handler)
            except (ValueError, OSError):
                pass

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced. Idempotent.

        Example::

            guard.restore()
        """
        for sig, h in self._old.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError, TypeError):
                pass
        self._old.clear()


__all__ = [
    "EXEC_FAILED",
    "GatedCommand",
    "SignalGuard",
    "exit_code",
    "kill_child",
    "raise_exit",
    "try_reap",
]
