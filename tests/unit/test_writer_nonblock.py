"""Out and the signal-safe stdout on a descriptor in O_NONBLOCK mode: a full pipe makes
a write wait (poll) instead of raising BlockingIOError or dropping data."""

from __future__ import annotations

import fcntl
import io
import os
import threading
import time
from collections.abc import Iterator

import pytest

from probewatch.cli.runctl import _WholeWrites
from probewatch.sinks.writer import Out, write_some


@pytest.fixture
def nb_pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def _slow_reader(fd: int, got: list[bytes], delay: float = 0.2) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)  # the pipe fills first
        while True:
            b = os.read(fd, 65536)
            if not b:
                return
            got.append(b)
            time.sleep(0.001)

    t = threading.Thread(target=run)
    t.start()
    return t


def _lines(n: int) -> list[str]:
    return [f"line {i:06d} " + "x" * 40 + "\n" for i in range(n)]


def test_out_on_a_nonblocking_pipe_loses_nothing(nb_pipe: tuple[int, int]) -> None:
    r, w = nb_pipe
    got: list[bytes] = []
    t = _slow_reader(r, got)
    out = Out(os.fdopen(w, "w", closefd=False))
    lines = _lines(5000)  # ~270 KB: four pipes full
    for ln in lines:
        out.write(ln)
    out.flush()
    os.close(w)
    t.join(10)
    assert b"".join(got).decode() == "".join(lines)


def test_out_with_a_cutoff_on_a_nonblocking_pipe(nb_pipe: tuple[int, int]) -> None:
    r, w = nb_pipe
    got: list[bytes] = []
    t = _slow_reader(r, got)
    out = Out(os.fdopen(w, "w", closefd=False))
    out.set_cutoff(time.monotonic() + 30)
    lines = _lines(3000)
    for ln in lines:
        out.write(ln)
    out.flush()
    os.close(w)
    t.join(10)
    assert b"".join(got).decode() == "".join(lines)


def test_whole_writes_on_a_nonblocking_pipe(nb_pipe: tuple[int, int]) -> None:
    r, w = nb_pipe
    got: list[bytes] = []
    t = _slow_reader(r, got)
    stream = io.BufferedWriter(_WholeWrites(w), 1 << 16)
    data = "".join(_lines(4000)).encode()
    stream.write(data)
    stream.flush()
    os.close(w)
    t.join(10)
    assert b"".join(got) == data


def test_write_some_raises_when_the_reader_is_gone(nb_pipe: tuple[int, int]) -> None:
    r, w = nb_pipe
    while True:  # fill the pipe
        try:
            os.write(w, b"y" * 4096)
        except BlockingIOError:
            break
    os.close(r)
    with pytest.raises(BrokenPipeError):
        write_some(w, b"z")
