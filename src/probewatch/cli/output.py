"""Writing to stdout/stderr safely: an output error becomes one line and an exit status.

A front end writes with plain ``print``/``sys.stdout.write``; when the output cannot
take it (``/dev/full``, a full disk, an I/O error, a closed pipe) the ``OSError``
propagates, every ``with``/``finally`` on the way out removes what the run created in
the kernel, and :func:`probewatch.cli.main.main` turns it into one line with
:func:`output_failed` (exit status :data:`EX_IOERR`, 74) instead of a traceback.

Example::

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        rc = output_failed(e)     # "probewatch: error: cannot write the output: ..."
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from typing import TextIO

#: exit status for an output that cannot be written (sysexits.h EX_IOERR)
EX_IOERR = 74

#: errnos of a write that cannot go on: the output is full, gone or broken
OUTPUT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE, errno.ENXIO,
     errno.EROFS, errno.EBADF, errno.ECONNRESET}
)


def silence_stdout() -> None:
    """Point fd 1 at /dev/null so that the flush at interpreter exit (of whatever is still
    buffered) cannot fail again and print "Exception ignored ..." after our one line."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        out = sys.stdout
        n = out.fileno() if out is not None else 1
        os.dup2(fd, n)
    except (OSError, ValueError, AttributeError):
        try:
            os.dup2(fd, 1)
        except OSError:
            pass
    finally:
        os.close(fd)


def say(line: str, stream: TextIO | None = None) -> None:
    """Print one line on stderr (or ``stream``); never raises (stderr may be full too)."""
    s = sys.stderr if stream is None else stream
    try:
        if s is not None:
            s.write(line + "\n")
            s.flush()
    except (OSError, ValueError):
        pass


def describe(e: OSError) -> str:
    """The error in words, naming the file when the OSError carries one."""
    what = e.strerror or str(e)
    if e.filename is not None:
        return f"{os.fsdecode(e.filename)!r}: {what}" if isinstance(
            e.filename, bytes) else f"{e.filename}: {what}"
    return what


def stop_children(grace: float = 1.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every child process of this one (a
    traced ``-- COMMAND`` that must not go on running untraced after the monitor failed);
    returns their pids. Children are found in /proc/self/task/*/children."""
    kids = _children(os.getpid())
    if not kids:
        return []
    # the whole tree below them too (a shell's own children would run on, orphaned)
    todo, tree = list(kids), set(kids)
    while todo:
        for c in _children(todo.pop()):
            if c not in tree:
                tree.add(c)
                todo.append(c)
    for pid in sorted(tree - kids):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    for pid in kids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    end = time.monotonic() + grace
    left = set(kids)
    while left and time.monotonic() < end:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.02)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    return sorted(kids)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.update(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
    return out


def output_failed(e: OSError) -> int:
    """Report an OSError that ended a command in one line, stop any traced command,
    and return the exit status: 74 (EX_IOERR) for an output that cannot be written
    (full disk, /dev/full, I/O error), 1 for any other OSError."""
    stop_children()
    if e.errno in OUTPUT_ERRNOS and e.filename is None:
        silence_stdout()
        say(f"probewatch: error: cannot write the output: {describe(e)}")
        return EX_IOERR
    say(f"probewatch: error: {describe(e)}")
    return EX_IOERR if e.errno in OUTPUT_ERRNOS else 1


__all__ = ["EX_IOERR", "OUTPUT_ERRNOS", "describe", "output_failed", "say", "silence_stdout",
           "stop_children"]
