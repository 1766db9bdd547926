"""The ftrace drainer's spool, without a kernel: SOCK_SEQPACKET socket pairs stand in
for the per-CPU trace_pipe_raw files (one read = one page, EAGAIN when empty)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import time

from probewatch.collect.ftrace import (
    END,
    FULL,
    PAGE,
    REC,
    SLICE_PAGES,
    WATERMARK,
    _drainer,
    spool_used,
)

PAGE_SIZE = 4096


def _page(ts: int, tag: int) -> bytes:
    return struct.pack("<QI", ts, tag).ljust(PAGE_SIZE, b"\0")


def _cpus(pages: dict[int, list[bytes]]) -> tuple[dict[int, int], list[socket.socket]]:
    fds, keep = {}, []
    for cpu, pp in pages.items():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        for p in pp:
            a.send(p)
        b.setblocking(False)
        fds[cpu] = b.fileno()
        keep += [a, b]
    return fds, keep


def _records(fd: int) -> list[tuple[int, int, int, bytes]]:
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    out, pos = [], 0
    while pos + REC.size <= len(data):
        cpu, kind, n, value = REC.unpack_from(data, pos)
        out.append((kind, cpu, value, data[pos + REC.size : pos + REC.size + n]))
        pos += REC.size + n
    assert pos == len(data), "a half record in the spool"
    return out


def test_drain_slices_and_watermarks() -> None:
    n0 = SLICE_PAGES * 2 + 5  # CPU 0 needs three rounds
    fds, keep = _cpus({0: [_page(1000 + i, i) for i in range(n0)],
                       1: [_page(5000, 0), _page(5001, 1)]})
    spool = os.memfd_create("t")
    ctrl_r, ctrl_w = os.pipe()
    os.write(ctrl_w, b"q")  # stop at once: drain to empty, then END
    nr, nw = os.pipe2(os.O_NONBLOCK)
    _drainer(fds, spool, ctrl_r, nw, PAGE, limit=0)
    recs = _records(spool)
    assert recs[-1][0] == END
    pages = [(c, struct.unpack_from("<I", p, 8)[0]) for k, c, _, p in recs if k == PAGE]
    assert [t for c, t in pages if c == 0] == list(range(n0))
    assert [t for c, t in pages if c == 1] == [0, 1]
    marks = [v for k, _, v, _ in recs if k == WATERMARK]
    assert marks == sorted(marks) and len(set(marks)) == len(marks)
    # while CPU 0 was cut at the slice limit, the watermark followed its page
    # timestamps: never past a page of CPU 0 still to come
    seen = 0
    for k, c, v, p in recs:
        if k == PAGE and c == 0:
            seen = struct.unpack_from("<Q", p)[0]
        elif k == WATERMARK and seen < 1000 + n0 - 1:
            assert v <= seen, (v, seen)
    assert marks[-1] > 10**9  # in the end every CPU was read to empty: "now"
    for s in keep:
        s.close()
    for fd in (spool, ctrl_r, ctrl_w, nr, nw):
        os.close(fd)


def test_full_spool_stops_reading() -> None:
    limit = 64 * 1024
    fds, keep = _cpus({0: [_page(10 + i, i) for i in range(200)],
                       1: [_page(10 + i, i) for i in range(200)]})
    spool = os.memfd_create("t")
    ctrl_r, ctrl_w = os.pipe()
    nr, nw = os.pipe2(os.O_NONBLOCK)
    pid = os.fork()
    if pid == 0:
        try:
            _drainer(fds, spool, ctrl_r, nw, PAGE, limit=limit)
        finally:
            os._exit(0)
    time.sleep(0.5)  # long enough to fill; nobody consumes
    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the drainer must wait for space"
    used = spool_used(spool)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert limit <= used <= limit + PAGE_SIZE + REC.size + 4096, used
    recs = _records(spool)
    n = sum(1 for k, *_ in recs if k == PAGE)
    assert n < 20 and not any(k in (FULL, END) for k, *_ in recs)
    # both CPUs had their turn before the spool was full
    assert {c for k, c, _, _ in recs if k == PAGE} == {0, 1}
    # what was not read is still in the "kernel"
    left = 0
    for s in keep[1::2]:
        while True:
            try:
                s.recv(PAGE_SIZE)
                left += 1
            except BlockingIOError:
                break
    assert left == 400 - n
    for s in keep:
        s.close()
    for fd in (spool, ctrl_r, ctrl_w, nr, nw):
        os.close(fd)
