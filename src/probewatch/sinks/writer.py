"""Standard output of the front ends: never an encoding error, and a deadline that holds.

:class:`Out` takes text (``write``/``flush`` like a text stream), encodes it as UTF-8
(anything unencodable as a backslash escape: no ``UnicodeEncodeError`` whatever a
traced process put into its strings) and writes it to the file descriptor.

With a cutoff (``set_cutoff(t)``, a ``time.monotonic()`` time, e.g. the end of ``-d``
plus a grace) a write never blocks past it: the output is written in whole lines of
at most ``PIPE_BUF`` bytes once ``poll()`` says the descriptor takes them, and when
the reader of a pipe has not taken the rest by the cutoff, :class:`OutputCut` is
raised and the rest is dropped (its line count is in the exception, for the
summary). A line longer than ``PIPE_BUF`` that was begun is finished first, so the
output never ends in half a line.

Example::

    out = Out()                      # sys.stdout's descriptor
    out.write("PID  COMM\\n"); out.flush()
"""

from __future__ import annotations

import atexit
import os
import select
import sys
import time
from typing import IO, Any, Protocol

PIPE_BUF = 4096
_FLUSH_AT = 8192


class TextOut(Protocol):
    """What the sinks write to: a text stream (sys.stdout, a file) or an :class:`Out`."""

    def write(self, s: str, /) -> int: ...

    def flush(self) -> None: ...


class OutputCut(Exception):
    """The cutoff passed before the reader took this many lines (``lines``)."""

    def __init__(self, lines: int, nbytes: int) -> None:
        super().__init__(f"{lines} lines ({nbytes} bytes) not written by the deadline")
        self.lines = lines
        self.nbytes = nbytes


class Out:
    """A text stream over a file descriptor (default: stdout's); see the module doc."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        stream = stream if stream is not None else sys.stdout
        self._stream = stream
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None  # a StringIO and the like: written as text
        else:
            stream.flush()  # anything printed before stays before
        self._parts: list[str] = []
        self._size = 0
        self.cutoff: float | None = None
        self.cut_lines = 0
        #: what a write without a cutoff still has to write (None: not in one)
        self._left: memoryview | None = None
        self._tty = self.fd is not None and os.isatty(self.fd)
        if self.fd in (1, 2):  # what is buffered still goes out when the run ends early
            atexit.register(self._flush_at_exit)

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except (OSError, OutputCut):
            pass

    def set_cutoff(self, when: float | None) -> None:
        """Writes give up at ``when`` (time.monotonic()); None: they block as long as needed."""
        self.cutoff = when

    def fileno(self) -> int:
        if self.fd is None:
            raise OSError("no file descriptor")
        return self.fd

    def isatty(self) -> bool:
        return self._tty

    def write(self, s: str) -> int:
        self._parts.append(s)
        self._size += len(s)
        if self._size >= _FLUSH_AT or self._tty:
            self.flush()
        return len(s)

    def write_bytes(self, data: bytes) -> None:
        """Write UTF-8 encoded text (whole lines) after what was written before, at once
        (the JSON sink's runs come encoded already)."""
        if self.fd is None:
            self.write(data.decode("utf-8", "surrogateescape"))
            return
        self.flush()
        if self.cutoff is None:
            self._write_all(data)
        else:
            self._write_until(data, self.cutoff)

    def flush(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        if self.fd is None:
            self._stream.write(text.encode("utf-8", "backslashreplace").decode("utf-8"))
            self._stream.flush()
            return
        data = text.encode("utf-8", "backslashreplace")
        if self.cutoff is None:
            self._write_all(data)
        else:
            self._write_until(data, self.cutoff)

    def _write_all(self, data: bytes) -> None:
        """Write it all, as long as it takes, unless a cutoff is set meanwhile (by a
        signal handler: the rest is then written until it, see :meth:`give_up`)."""
        fd = self.fd
        assert fd is not None
        view = memoryview(data)
        self._left = view
        try:
            while view:
                view = view[write_some(fd, view):]
                self._left = view
                if view and self.cutoff is not None:
                    self._left = None
                    self._write_until(bytes(view), self.cutoff)
                    return
        finally:
            self._left = None

    def give_up(self) -> None:
        """From a signal handler, once the cutoff passed: a write blocked without a
        cutoff (the reader takes nothing) gives up; raises :class:`OutputCut` with what
        it had left (nothing happens outside such a write)."""
        left = self._left
        if left is None or self.cutoff is None or time.monotonic() < self.cutoff:
            return
        self._left = None
        rest = bytes(left)
        lines = rest.count(b"\n") + (0 if rest.endswith(b"\n") else 1)
        self.cut_lines += lines
        raise OutputCut(lines, len(rest))

    def _write_until(self, data: bytes, cutoff: float) -> None:
        fd = self.fd
        assert fd is not None
        view = memoryview(data)
        pos, n = 0, len(data)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while pos < n:
            left = cutoff - time.monotonic()
            if left <= 0 or not poller.poll(max(0, int(left * 1000) + 1)):
                if time.monotonic() < cutoff:
                    continue
                rest = bytes(view[pos:])
                lines = rest.count(b"\n") + (0 if rest.endswith(b"\n") else 1)
                self.cut_lines += lines
                raise OutputCut(lines, len(rest))
            end = data.rfind(b"\n", pos, pos + PIPE_BUF) + 1
            if end <= pos:  # one line longer than PIPE_BUF: finish it, whatever it takes
                end = data.find(b"\n", pos) + 1 or n
                _write_all(fd, view[pos:end])
                pos = end
                continue
            try:
                pos += os.write(fd, view[pos:end])
            except BlockingIOError:  # O_NONBLOCK: less room than the lines; poll again
                time.sleep(0.001)

    def close(self) -> None:
        self.flush()


class Deadline:
    """``-d SECS`` as the printing loop sees it: events stamped after the end are not
    printed, and writes to stdout give up ``GRACE`` seconds after it.

    ``clock`` is the clock of Event.ts: with "mono" (CLOCK_MONOTONIC, the BPF clock and
    the ftrace default) events are compared by their time stamps, otherwise by the time
    they are printed. Call :meth:`arm` when tracing starts.
    """

    GRACE = 0.3

    def __init__(self, duration: float | None, clock: str = "mono") -> None:
        self.duration = duration
        self.clock = clock
        self.end: float | None = None
        self.ts_end: int | None = None

    def arm(self, out: Out | None = None) -> None:
        if self.duration is None:
            return
        self.end = time.monotonic() + self.duration
        if self.clock == "mono":
            self.ts_end = time.monotonic_ns() + int(self.duration * 1e9)
        if out is not None:
            out.set_cutoff(self.end + self.GRACE)

    def late(self, ts: int) -> bool:
        """The event (time stamp ``ts``) came after the deadline."""
        if self.end is None:
            return False
        if self.ts_end is not None:
            return ts > self.ts_end
        return time.monotonic() > self.end

    def on_time(self, batch: list[Any]) -> int:
        """How many events at the front of a time-ordered batch came before the deadline."""
        if self.end is None or not batch or not self.late(batch[-1].ts):
            return len(batch)
        for i, ev in enumerate(batch):
            if self.late(ev.ts):
                return i
        return len(batch)


def write_some(fd: int, data: Any) -> int:
    """``os.write``, also on a descriptor in non-blocking mode (O_NONBLOCK, which a
    terminal or a pipe may hand down): when it would block, wait with ``poll()`` until
    the descriptor takes data, then write. Returns how many bytes were written.

    Example::

        n = write_some(1, b"line\n")
    """
    while True:
        try:
            return os.write(fd, data)
        except BlockingIOError:
            p = select.poll()
            p.register(fd, select.POLLOUT)
            p.poll()  # a reader gone shows as POLLERR: the write then raises EPIPE


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        k = write_some(fd, view)
        view = view[k:]


__all__ = ["Deadline", "Out", "OutputCut", "PIPE_BUF", "TextOut", "write_some"]
