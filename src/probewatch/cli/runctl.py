"""Signals, output and the traced command of a front end's run (``-- COMMAND``).

:class:`RunControl` is installed before the session and gives ^C, SIGTERM, SIGHUP and
a closed output pipe one meaning in every phase of a run (see its docstring);
:func:`finish_command` waits for or stops the traced command once tracing is over and
returns the exit status (the command's, or 141/143/129/130);
:func:`signal_safe_stdout` puts stdout on a writer that loses nothing when a signal
handler runs during a write to a full pipe.

Example (the shape of ``probewatch trace``)::

    ctl = RunControl()
    ctl.install()
    out = signal_safe_stdout()
    with open_session(...) as s:
        ...                       # add probes, s.trace_command(argv)
        s.start()
        ctl.session, ctl.phase = s, "running"
        for ev in s.events():     # ^C: s.stop() was called, the loop drains and ends
            if ctl.abort:         # a second ^C
                break
            ...
        s.close()
        ctl.phase = "waiting"
    rc = finish_command(s.command, argv[0], ctl, 0)
    ctl.restore()
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from ..collect.command import GatedCommand
from ..sinks.writer import write_some

#: after ^C, how long a traced command may take to exit before it is killed
INT_GRACE = 2.0
#: after SIGTERM/SIGHUP (passed on to the command) or a closed output pipe (the
#: command gets SIGTERM): how long it may take to exit before SIGKILL
TERM_GRACE = 2.0


class RunControl:
    """The signals of one run, installed before the session exists.

    While the session exists it handles SIGTERM/SIGHUP itself (``SystemExit``) and
    routes SIGINT here (held back while it creates kernel objects). Phases:

    - ``startup``: SIGINT raises KeyboardInterrupt, SIGTERM/SIGHUP SystemExit(128+N);
      the session's ``with`` removes whatever it made.
    - ``running``: the first SIGINT stops tracing (what is buffered is still printed),
      a second one ends printing at once (:attr:`abort`) and kills the command.
    - ``waiting`` (the session is closed, the command still runs): SIGTERM/SIGHUP are
      noted in :attr:`signal` and passed on to the command; SIGINT as in ``running``.

    After :meth:`take_term` (once the session has started), SIGTERM/SIGHUP in
    ``running`` no longer unwind at once: the first one stops tracing like ^C (what was
    read from the kernel is still delivered and counted) and is noted in
    :attr:`signal` (the run then ends with 128+N); a second one sets :attr:`abort`.
    """

    def __init__(self) -> None:
        self.phase = "startup"
        self.session: Any = None
        self.interrupts = 0
        self.signal = 0
        self._term = False
        #: the run's output (an :class:`~probewatch.sinks.writer.Out`): after SIGTERM/
        #: SIGHUP its writes give up TERM_GRACE seconds on (a reader that takes nothing
        #: cannot hold the run up; the lines not written are counted)
        self.out: Any = None
        self._alarm = False
        self._old: dict[int, Any] = {}

    @property
    def abort(self) -> bool:
        """Two ^C: stop printing and do not wait for the command."""
        return self.interrupts >= 2

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                if sig == signal.SIGINT and not callable(signal.getsignal(sig)):
                    continue  # ignored (a background job): stays ignored
                self._old[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):
                pass

    def take_sigint(self) -> None:
        """Route ^C here from now on, over a session's own SIGINT handler.

        For a session that handles SIGINT itself by raising KeyboardInterrupt (the BPF
        tools' :class:`~probewatch.bpf_session.BpfSession`): call it once the session
        has started, so that ^C stops tracing instead of cutting a write short. The
        session's restore leaves this handler in place; :meth:`restore` puts back the
        one :meth:`install` found. Nothing happens when SIGINT was not installed (it was
        ignored: a background job).
        """
        if signal.SIGINT in self._old:
            try:
                signal.signal(signal.SIGINT, self._on_signal)
            except (ValueError, OSError):
                pass

    def take_term(self) -> None:
        """Route SIGTERM and SIGHUP here from now on, over the session's guard (which
        raises SystemExit at once, losing what was read but not yet delivered).

        Call it once the session has started (before that, and while it creates kernel
        objects, the guard's unwinding is what cleans up). From then on the first
        SIGTERM/SIGHUP stops tracing as the first ^C does and is noted in
        :attr:`signal`: the event loop delivers what is buffered, then ends, and the
        caller ends the run with ``128 + ctl.signal``. A second one sets :attr:`abort`.
        :meth:`restore` puts back the handlers :meth:`install` found.

        Example::

            s.start()
            ctl.session, ctl.phase = s, "running"
            ctl.take_term()
        """
        self._term = True
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if sig in self._old:
                try:
                    signal.signal(sig, self._on_signal)
                except (ValueError, OSError):
                    pass

    def begin(self, session: Any, start: Callable[[], None],
              command: GatedCommand | None = None) -> None:
        """``start()`` the session, then enter ``running`` and :meth:`take_term`.

        A SIGTERM/SIGHUP that comes while the session makes its kernel objects is held
        back by the session's guard and raised (``SystemExit``) once ``start()`` is
        done, i.e. after ``command`` was released: its events may be in the kernel's
        buffers already, so the signal is taken as one that came in ``running``
        (tracing stops, what was read is delivered, :attr:`signal` is set) instead of
        unwinding. Without a released command it unwinds as in ``startup``.

        Example::

            ctl.begin(s, s.start, s.command if argv else None)
        """
        try:
            start()
        except SystemExit as e:
            if (e.code not in (128 + signal.SIGTERM, 128 + signal.SIGHUP)
                    or e.__context__ is not None  # start() failed as well
                    or command is None or not command.pid or command.gated):
                raise
            self.signal = int(e.code) - 128
        self.session = session
        self.phase = "running"
        self.take_term()
        if self.signal:
            session.stop()

    def restore(self) -> None:
        if self._alarm:
            self._alarm = False
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        for sig, h in self._old.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError, TypeError):
                pass
        self._old.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            if self.phase == "startup":
                raise KeyboardInterrupt
            self.interrupts += 1
            if self.interrupts == 1 and self.phase == "running" and self.session is not None:
                self.session.stop()  # the event loop drains what is buffered, then ends
            return
        if self.phase == "waiting":
            self.signal = self.signal or signum
            return
        if self._term and self.phase == "running":
            if self.signal:  # a second one: stop delivering at once
                self.interrupts = max(self.interrupts, 2)
                return
            self.signal = signum
            if self.session is not None:
                self.session.stop()  # the event loop delivers what is buffered, then ends
            self._bound_output()
            return
        raise SystemExit(128 + signum)

    def _bound_output(self) -> None:
        """Writes to :attr:`out` give up TERM_GRACE seconds from now; a write blocked
        already is woken (SIGALRM) every 0.2 s to see it."""
        out = self.out
        if out is None or not hasattr(out, "give_up"):
            return
        end = time.monotonic() + TERM_GRACE
        if out.cutoff is None or out.cutoff > end:
            out.set_cutoff(end)
        try:
            signal.signal(signal.SIGALRM, lambda n, f: out.give_up())
            signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
            self._alarm = True
        except (ValueError, OSError):
            pass


def finish_command(command: GatedCommand, name: str, ctl: RunControl, ended_by: int) -> int:
    """Wait for (or stop) the traced command once tracing is over; the exit status."""
    if ended_by:
        if command.exited():  # it had ended by itself: its status
            return command.returncode if command.returncode is not None else 128 + ended_by
        # a closed pipe: SIGTERM (the command may write elsewhere); else pass it on
        command.terminate(signal.SIGTERM if ended_by == signal.SIGPIPE else ended_by,
                          TERM_GRACE)
        return 128 + ended_by
    # tracing ended by ^C, the deadline, -n or the command's exit: wait for it, until
    # SIGTERM/SIGHUP (passed on) or ^C (a grace period; a second ^C cuts it short)
    while not command.wait_for(None, interrupted=lambda: bool(ctl.interrupts or ctl.signal)):
        if ctl.signal:
            command.terminate(ctl.signal, TERM_GRACE)
            return 128 + ctl.signal
        if not ctl.abort:
            print(f"probewatch: waiting {INT_GRACE:g}s for {name} (pid {command.pid}) to "
                  f"exit; ^C again kills it", file=sys.stderr)
            if command.wait_for(INT_GRACE, interrupted=lambda: bool(ctl.abort or ctl.signal)):
                break
            if ctl.signal:
                continue
        command.terminate(signal.SIGTERM, 1.0)
        return 128 + signal.SIGINT
    return command.returncode if command.returncode is not None else 0


class _WholeWrites(io.RawIOBase):
    """A raw writer on fd 1 whose write() always writes all it is given.

    CPython's BufferedWriter loses data when a signal handler that returns (^C stops
    tracing) runs while a write to a full pipe is partly done; a raw layer that never
    reports a partial write avoids that.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        total = len(view)
        while view:
            view = view[write_some(self._fd, view):]  # O_NONBLOCK too
        return total

    def close(self) -> None:  # fd 1 stays open
        super().close()


def signal_safe_stdout() -> TextIO:
    """sys.stdout on :class:`_WholeWrites` (same encoding, errors and line buffering)."""
    std = sys.stdout
    try:
        fd = std.fileno()
    except (AttributeError, OSError, ValueError):
        return std  # not a real file (captured by a test harness)
    std.flush()
    out = io.TextIOWrapper(io.BufferedWriter(_WholeWrites(fd), 1 << 16),
                           encoding=std.encoding, errors=std.errors,
                           line_buffering=bool(getattr(std, "line_buffering", False)))
    sys.stdout = out
    return out


def output_end(e: BaseException) -> int:
    """The signal that ended a run's printing loop: SIGPIPE for a closed output pipe
    (stdout then goes to /dev/null), SIGTERM/SIGHUP for the session's guard's exit
    (``SystemExit(143/129)``). Anything else is raised again.

    Example::

        try:
            ...                                  # the printing loop
        except (BrokenPipeError, SystemExit) as e:
            ended_by = output_end(e)
    """
    if isinstance(e, BrokenPipeError):
        silence_stdout()
        return signal.SIGPIPE
    if isinstance(e, SystemExit) and e.code in (143, 129):
        return int(e.code) - 128
    raise e


def silence_stdout() -> None:
    """The reader of stdout is gone: what is still buffered goes to /dev/null."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


__all__ = ["INT_GRACE", "TERM_GRACE", "RunControl", "finish_command", "output_end",
           "signal_safe_stdout", "silence_stdout"]
