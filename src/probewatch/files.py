"""Opening input files safely: regular files only, never blocking, one clear error.

An ELF file named in a probe spec or on the ``list`` command line may be anything a
user (or an attacker who controls a path) can name: a FIFO (opening it for reading
would wait for a writer forever), a device node (``/dev/zero`` reads forever; opening
some devices has side effects), a directory, or a ``/proc`` file that says it is empty
and fails on read (``/proc/self/mem``). :func:`open_regular` stats the path before
opening it, opens with ``O_NONBLOCK`` and checks the opened file again, so that only a
regular, non-empty file is ever read.

Example::

    with open_regular("/usr/bin/true", "an ELF file") as f:
        magic = f.read(4)
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import NotFound

_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """``"a FIFO"``, ``"a directory"``, ... for an ``st_mode`` (``"a regular file"``).

    Example::

        file_kind(os.lstat("/dev/null").st_mode)   # 'a character device'
    """
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def check_regular(path: str, st: os.stat_result, what: str) -> None:
    """Raise NotFound unless ``st`` is a regular file with something in it."""
    if not stat.S_ISREG(st.st_mode):
        raise NotFound(f"{path} is {file_kind(st.st_mode)}, not {what} (only regular files "
                       "are read)")
    if st.st_size == 0:
        raise NotFound(f"{path} is empty (0 bytes), not {what}")


def open_regular(path: str, what: str = "an ELF file") -> BinaryIO:
    """Open ``path`` for reading if it is a regular, non-empty file; NotFound otherwise
    (with the reason: missing, FIFO, device, directory, empty, permission). Never blocks.

    Example::

        open_regular("/tmp/fifo")   # NotFound: /tmp/fifo is a FIFO, not a regular file
    """
    try:
        check_regular(path, os.stat(path), what)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except OSError as e:
        raise NotFound(f"{path}: {e.strerror}") from None
    try:
        check_regular(path, os.fstat(fd), what)  # the file opened is the one checked
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


__all__ = ["check_regular", "file_kind", "open_regular"]
