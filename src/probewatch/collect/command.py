"""The traced command's lifecycle, shared by every session backend.

A command to trace is forked at once but held at a gate (the child blocks reading a
pipe) until the probes and its pid filter are in place; only then does it exec, so
not one of its events is missed. A second pipe (close-on-exec) carries the errno
back when the exec fails. Exit statuses follow the shell: the exit code, or
``128 + N`` for a command killed by signal N.

The command runs as it would untraced: its PATH search is done before the fork
(:func:`resolve_command`, so the traced child makes exactly one ``execve``), and
the child gets back the signal dispositions and signal mask this process started
with (Python itself ignores SIGPIPE and SIGXFSZ; those go back to the default).
Environment, working directory, file descriptors and rlimits are left as they are.
A gated child whose parent dies (the gate pipe closes unopened) exits with 127
instead of running untraced.

:class:`SignalGuard` turns SIGTERM and SIGHUP into ``SystemExit(128 + N)`` while a
session exists, so that its ``finally`` / ``with`` clean-up runs on those signals
too; :meth:`SignalGuard.deferred` holds signals back while a kernel object is
created and recorded, so that a signal at any moment leaves nothing behind.

Example::

    cmd = GatedCommand()
    pid = cmd.start(["sh", "-c", "exit 3"])  # held: arm the probes for pid now
    cmd.release()                            # NotFound if it cannot be run
    assert cmd.wait() == 3
    cmd.close()
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from ..errors import NotFound, ProbewatchError

#: a signal handler, as :func:`signal.signal` takes it
Handler = Callable[[int, FrameType | None], Any]

#: what the shell reports for a command that could not be run
EXEC_FAILED = 127

#: signals CPython ignores at start-up (a command must get them back as SIG_DFL)
PYTHON_IGNORED = frozenset({signal.SIGPIPE, signal.SIGXFSZ})


def _startup_ignored() -> frozenset[int]:
    """Signals this process was started with ignored (nohup's SIGHUP, a background
    job's SIGINT), read before probewatch installs any handler."""
    out = set()
    for sig in signal.valid_signals():
        if sig in PYTHON_IGNORED or sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                out.add(int(sig))
        except (ValueError, OSError):
            pass
    return frozenset(out)


#: dispositions and mask inherited by this process, restored in a traced command
STARTUP_IGNORED = _startup_ignored()
STARTUP_MASK = frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def resolve_command(name: str, path: str | None = None) -> str:
    """The file ``execvp(name)`` would run: ``name`` itself when it has a slash, else
    the first executable regular file named ``name`` in ``path`` (default: $PATH).

    Raises NotFound ("cannot run 'X': ...") when there is none, with execvp's errno
    (EACCES when only non-executable candidates were found).

    Example::

        resolve_command("grep")    # '/usr/bin/grep'
        resolve_command("./prog")  # './prog' (checked, not searched)
    """
    if not name:
        raise NotFound("cannot run '': No such file or directory")
    if "/" in name:
        candidates = [name]
    else:
        search = os.environ.get("PATH", os.defpath) if path is None else path
        candidates = [os.path.join(d or ".", name) for d in search.split(os.pathsep)]
    err = errno.ENOENT
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError as e:
            if e.errno == errno.EACCES:
                err = errno.EACCES
            continue
        if stat.S_ISREG(st.st_mode) and os.access(c, os.X_OK):
            return c
        err = errno.EACCES
    where = "" if "/" in name else " (searched PATH)"
    raise NotFound(f"cannot run {name!r}: {os.strerror(err)}{where}")


def program_file(cmd: Sequence[str], pid: int | None) -> str:
    """The executable file the program runs: the command's (its interpreter for a
    ``#!`` script) or ``/proc/PID/exe`` (through the process's root).

    Example::

        program_file(["ls", "-l"], None)   # '/usr/bin/ls'
    """
    if pid is not None:
        try:
            path = os.readlink(f"/proc/{pid}/exe")
        except OSError as e:
            raise NotFound(f"process {pid}: cannot read its executable ({e.strerror})") from None
        if path.endswith(" (deleted)"):
            raise NotFound(f"process {pid}: its executable {path} was deleted")
        return f"/proc/{pid}/root{path}" if os.path.exists(f"/proc/{pid}/root{path}") else path
    path = os.path.realpath(resolve_command(cmd[0]))
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise NotFound(f"{path}: {e.strerror}") from None
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        if words:
            return os.path.realpath(resolve_command(os.fsdecode(words[0])))
    return path


def _child_signal_plan() -> tuple[list[tuple[int, Any]], frozenset[int] | None]:
    """What the forked child must change: [(signal, SIG_DFL|SIG_IGN)], and the mask to
    set (None when the current one is right). Computed in the parent, before fork."""
    changes: list[tuple[int, Any]] = []
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        want = signal.SIG_IGN if sig in STARTUP_IGNORED else signal.SIG_DFL
        try:
            have = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if have is not want:
            changes.append((int(sig), want))
    mask = frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return changes, (None if mask == STARTUP_MASK else STARTUP_MASK)


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


def _prepared_execve(exe: str, args: list[str]) -> Callable[[], None]:
    """execve(exe, args, this environment) with its C arrays built now, before the
    fork: what the child does once the gate opens is then one libc call. os.execve
    would build them after the gate, and with long environment values that is a few
    malloc() calls of the launcher that a traced ``u:libc:malloc`` (ltrace, mallocs)
    would count as the command's. Raises OSError when the exec fails."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.execve
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p),
                   ctypes.POINTER(ctypes.c_char_p)]
    fn.restype = ctypes.c_int
    path = os.fsencode(exe)
    argv = (ctypes.c_char_p * (len(args) + 1))(*[os.fsencode(a) for a in args], None)
    env = [k + b"=" + v for k, v in os.environb.items()]
    envp = (ctypes.c_char_p * (len(env) + 1))(*env, None)

    def run() -> None:
        fn(path, argv, envp)
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

    return run


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

        The PATH search is done here (NotFound, before anything is forked, when
        there is nothing to run), so the child execs exactly once.

        Example::

            pid = GatedCommand().start(["cat", "/etc/hostname"])
        """
        if not argv:
            raise ProbewatchError("no command given")
        if self.pid or self.gated:
            raise ProbewatchError("a command was started already")
        exe = resolve_command(argv[0])
        args = list(argv)
        execve = _prepared_execve(exe, args)
        changes, mask = _child_signal_plan()
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                for sig, disp in changes:
                    signal.signal(sig, disp)
                if mask is not None:
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                os.close(gate_w)
                os.close(err_r)
                if os.read(gate_r, 1) == b"g":  # EOF: the tracer is gone, do not run
                    execve()
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
        self.argv = args
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

    def wait_for(
        self, timeout: float | None, interrupted: Callable[[], bool] | None = None
    ) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the command to exit.

        True once it has ended (``returncode`` is set); False on time-out or as soon
        as ``interrupted()`` is true (checked at least every 50 ms, e.g. a flag a
        signal handler sets).

        Example::

            if not cmd.wait_for(2.0):
                cmd.terminate()
        """
        end = None if timeout is None else time.monotonic() + timeout
        while not self.exited():
            if not self.pid or (interrupted is not None and interrupted()):
                return self._ended
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0:
                return False
            if self.pidfd >= 0:
                select.select([self.pidfd], [], [], left)
            else:
                time.sleep(left)
        return True

    def terminate(self, sig: int = signal.SIGTERM, grace: float = 2.0) -> bool:
        """Stop a running command: send ``sig``, wait up to ``grace`` seconds, then
        SIGKILL. True when it ended of its own accord or from ``sig``; False when it
        had to be killed. ``returncode`` is its status either way.

        Example::

            cmd.terminate(signal.SIGHUP)  # returncode 129 unless it handles SIGHUP
        """
        if not self.pid:
            return True
        if self.gated:  # never ran: nothing to ask
            self.close()
            return True
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        if self.wait_for(grace):
            return True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()
        return False

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
    ``finally`` and ``with``-exit on the way out. ``chain`` names signals whose
    current Python handler (e.g. SIGINT's KeyboardInterrupt) is kept but routed
    through the guard, so that :meth:`deferred` holds them back as well; a chained
    signal that is ignored or default is left alone. In any thread but the main one
    (where Python cannot set handlers) :meth:`install` does nothing.

    Inside ``with guard.deferred():`` a signal is only noted; it is acted on when the
    outermost such block ends. A session creates each kernel object and records it
    for clean-up inside one such block, so no signal can fall between the two.

    Example::

        guard = SignalGuard(chain=[signal.SIGINT])
        guard.install()
        try:
            with guard.deferred():
                obj = create_kernel_object()  # a SIGTERM here waits ...
                owned.append(obj)             # ... until it is recorded
            run()  # SIGTERM here -> SystemExit(143)
        finally:
            guard.restore()
    """

    def __init__(
        self,
        handler: Handler = raise_exit,
        signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP),
        chain: Sequence[int] = (),
    ) -> None:
        self.handler = handler
        self.signals = tuple(signals)
        self.chain = tuple(s for s in chain if s not in self.signals)
        self._old: dict[int, Any] = {}
        self._orig: dict[int, Any] = {}  # kept after restore(), for stale dispatchers
        self._depth = 0
        self._pending = 0

    @property
    def installed(self) -> bool:
        """Are this guard's handlers in place?"""
        return bool(self._old)

    def install(self) -> None:
        """Set the handler for each signal, remembering the handler it replaces.

        Does nothing when installed already.

        Example::

            SignalGuard(signals=[signal.SIGINT, signal.SIGTERM]).install()
        """
        if self._old or threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            try:
                self._old[sig] = signal.signal(sig, self._dispatch)
            except (ValueError, OSError):
                pass
        for sig in self.chain:
            try:
                if callable(signal.getsignal(sig)):
                    self._old[sig] = signal.signal(sig, self._dispatch)
            except (ValueError, OSError):
                pass
        self._orig = dict(self._old)

    def _dispatch(self, signum: int, frame: FrameType | None) -> None:
        if self._depth > 0:
            if not self._pending:
                self._pending = signum
            return
        self._act(signum, frame)

    def _act(self, signum: int, frame: FrameType | None) -> None:
        if signum in self.chain:
            old = _live_handler(signum, self._orig.get(signum))
            if callable(old):
                old(signum, frame)
            return
        self.handler(signum, frame)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold this guard's signals back until the block ends; then act on the first.

        Blocks nest; only the outermost one acts.

        Example::

            with guard.deferred():
                os.mkdir(instance_dir)
                created.append(instance_dir)
        """
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._pending:
                sig, self._pending = self._pending, 0
                self._act(sig, None)

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced. Idempotent.

        A signal still held back by :meth:`deferred` is acted on when that block ends.

        Example::

            guard.restore()
        """
        for sig, h in self._old.items():
            try:
                if signal.getsignal(sig) != self._dispatch:
                    continue  # replaced after ours (another guard): theirs to put back
                signal.signal(sig, _live_handler(sig, h))
            except (ValueError, OSError, TypeError):
                pass
        self._old.clear()


def _live_handler(sig: int, h: Any) -> Any:
    """``h``, or, when it is the dispatcher of a guard restored since (two guards
    restored out of order), the handler that guard had replaced."""
    for _ in range(64):
        g = getattr(h, "__self__", None)
        if not isinstance(g, SignalGuard) or g.installed or sig not in g._orig:
            break
        h = g._orig[sig]
    return h


__all__ = [
    "EXEC_FAILED",
    "GatedCommand",
    "SignalGuard",
    "exit_code",
    "kill_child",
    "raise_exit",
    "resolve_command",
    "try_reap",
]
