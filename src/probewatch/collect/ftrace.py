"""ftrace collection: a private tracefs instance read as binary pages.

Pages are drained from every CPU's ``trace_pipe_raw`` by a small forked drainer
process (so draining never waits on the consumer's GIL), which appends them to a
spool: a memfd, or for ``record`` an unnamed file next to the capture
(``spool_dir``). The consumer reads the spool at its own pace, a slice at a time,
decodes off the draining path, punches what it has read out of the spool, and merges
CPUs by timestamp up to the drainer's watermark.

Bounded memory: the spool never holds more than ``spool_bytes`` (its allocated
blocks are what counts, so punched-out space is free again). Default: 256 MiB or
1/16 of RAM, whichever is smaller, in memory; a quarter of the free disk space for
a spool file (the capture it feeds takes about twice the raw pages' size). When the
spool is full the drainer stops reading: the kernel's ring buffer overruns and
counts what it overwrites per CPU (reported as ``lost``), and the drainer says for
how long it was stalled (FULL records, :attr:`spool_full_ns`).

Draining: whole pages are spliced out of ``trace_pipe_raw`` (as trace-cmd does: the
kernel hands over pages its writer has left, without copying a page it is still writing
to); a CPU that gave no whole page in a round is read() to the end, so a page that
never fills still arrives within a round or two. A round starts when the kernel says a
CPU's buffer is :data:`WAKE_PERCENT` full, or :data:`DRAIN_MS` after the last one.
(Measured on a loaded 2-CPU VM: rounds on a 1 ms timer instead cost the traced task
about 15% more CPU per event than the kernel's wake-ups.) ``PROBEWATCH_SPLICE=0``,
``PROBEWATCH_DRAIN_MS``, ``PROBEWATCH_WAKE_PERCENT``, ``PROBEWATCH_NOTIFY_MS`` and
``PROBEWATCH_DRAIN_NICE`` change these (for benchmarks).

Spool record: ``<HHIQ`` = (cpu, kind, length, value) followed by ``length`` bytes.
kind PAGE carries one raw ring-buffer page; WATERMARK says every CPU has been read
up to trace-clock time ``value`` (no event older than that is still to come); FULL
says the spool was full for ``value`` ns; END says the drainer is done.

Text fallback: when the binary pages cannot be used (a CPU's ``trace_pipe_raw``
missing or not openable, the session cannot parse ``events/header_page`` /
``header_event``, or ``PROBEWATCH_FTRACE_TEXT=1``), ``start(text_reason=...)`` sets
the instance's print options (:data:`TEXT_OPTIONS`) and the same drainer reads the
instance's text ``trace_pipe`` (all CPUs, merged by the kernel) instead; its chunks
are spooled as kind TEXT (cpu 0) and parsed by :mod:`probewatch.decode.tracetext`.
Lifecycle, wake-ups and stats are the same in both modes.

Example::

    c = FtraceCollector(buffer_kb=4096)
    c.enable("sched", "sched_process_exec")
    c.start()
    for cpu, page in c.pages(timeout=1.0): ...
    c.close()
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FeatureUnavailable, ProbewatchError, TracefsError
from ..kernel.tracefs import Instance, tracefs_root
from .command import kill_child, try_reap

if TYPE_CHECKING:
    from ..sources.probes import ResolvedProbe

REC = struct.Struct("<HHIQ")
PAGE, WATERMARK, END, TEXT, FULL = 1, 2, 3, 4, 5
PAGE_READ = 65536  # read() returns one sub-buffer (4 KiB by default) at most
DEFAULT_BUFFER_KB = 4096  # per CPU; the kernel's default (1.4 MB) overflows in ~50 ms
#: default bound of the in-memory spool, MiB (smaller on machines with little RAM:
#: :func:`default_spool_bytes`)
DEFAULT_SPOOL_MB = 256
SLICE_PAGES = 64  # reads from one CPU per drain round before the next CPU's turn
FULL_POLL_MS = 5  # how often a drainer with a full spool looks for space again
#: the kernel wakes the drainer when a CPU's buffer is WAKE_PERCENT full; otherwise it
#: looks every DRAIN_MS while data comes, backing off to IDLE_MS when none does
DRAIN_MS = int(os.environ.get("PROBEWATCH_DRAIN_MS", "100"))
IDLE_MS = 100
WAKE_PERCENT = int(os.environ.get("PROBEWATCH_WAKE_PERCENT", "1"))
#: the consumer is woken at most every NOTIFY_MS (or when NOTIFY_BYTES wait, the spool
#: is full, or the drainer ends): each wake-up of a sleeping consumer can preempt the
#: traced task on its CPU, and larger slices decode cheaper per event
NOTIFY_MS = int(os.environ.get("PROBEWATCH_NOTIFY_MS", "20"))
NOTIFY_BYTES = 4 << 20
#: the drainer's nice value: it runs ahead of the consumer and of other load
DRAIN_NICE = int(os.environ.get("PROBEWATCH_DRAIN_NICE", "-10"))
#: full pages are spliced out of trace_pipe_raw (as trace-cmd does: the kernel hands
#: over pages the writer has left, no copy of a page it is still writing); "0": read()
SPLICE = os.environ.get("PROBEWATCH_SPLICE", "1") != "0"
F_SETPIPE_SZ = 1031
READ_SLICE = 1 << 20  # spool bytes the consumer decodes before it hands events on
MIN_DISK_SPOOL = 64 << 20  # a spool file gets at least this, or memory is used

#: environment variable that forces the text ``trace_pipe`` reader ("1"; "0" = off)
TEXT_ENV = "PROBEWATCH_FTRACE_TEXT"

#: instance options of the text reader: one line shape whatever the event
#: (decode/tracetext.py documents it). ``fields`` prints every field by name.
TEXT_OPTIONS: tuple[tuple[str, bool], ...] = (
    ("fields", True),
    ("raw", False),
    ("hex", False),
    ("bin", False),
    ("context-info", True),
    ("record-tgid", True),
    ("irq-info", False),
    ("latency-format", False),
    ("verbose", False),
    ("stacktrace", False),
    ("userstacktrace", False),
    ("annotate", False),
    ("block", False),
)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
PR_SET_PDEATHSIG = 1
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


@dataclass
class CpuStats:
    cpu: int
    entries: int = 0
    overrun: int = 0
    dropped: int = 0
    read: int = 0

    @property
    def lost(self) -> int:
        return self.overrun + self.dropped


@dataclass
class Losses:
    per_cpu: dict[int, int] = field(default_factory=dict)
    page_missed: int = 0  # from the missed-events flags on pages (cross-check)

    @property
    def total(self) -> int:
        return sum(self.per_cpu.values())


def parse_stats(text: str, cpu: int) -> CpuStats:
    st = CpuStats(cpu)
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k = k.strip()
        v = v.strip()
        if not v or not v.split()[0].isdigit():
            continue
        n = int(v.split()[0])
        if k == "entries":
            st.entries = n
        elif k == "overrun":
            st.overrun = n
        elif k == "dropped events":
            st.dropped = n
        elif k == "read events":
            st.read = n
    return st


def default_spool_bytes() -> int:
    """The default bound of the in-memory spool: :data:`DEFAULT_SPOOL_MB` MiB, or
    1/16 of the machine's RAM when that is smaller (at least 16 MiB).

    Example::

        default_spool_bytes()   # 268435456 on a machine with 4 GiB of RAM or more
    """
    cap = DEFAULT_SPOOL_MB << 20
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return cap
    return max(16 << 20, min(cap, total // 16))


def default_disk_spool_bytes(directory: str) -> int:
    """The default bound of a spool file in ``directory``: a quarter of the space free
    there when the run starts (the capture the pages are decoded into takes about twice
    their size, and must fit too); 0 when that is under :data:`MIN_DISK_SPOOL` (the
    disk is nearly full: spool in memory instead)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    n = st.f_bavail * st.f_frsize // 4
    return n if n >= MIN_DISK_SPOOL else 0


def open_spool(directory: str | None) -> int:
    """A new, empty spool: a memfd, or (``directory`` given) an unnamed file there
    (O_TMPFILE; a named file unlinked at once where the file system lacks it), so
    nothing is left behind however the run ends."""
    if directory is None:
        return os.memfd_create("probewatch-spool", os.MFD_CLOEXEC)
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise ProbewatchError(
                f"cannot create the spool file in {directory}: {e.strerror}") from None
    import tempfile

    fd, path = tempfile.mkstemp(prefix=".probewatch-spool-", dir=directory)
    os.unlink(path)
    return fd


def _can_punch(fd: int) -> bool:
    """Can consumed space be punched out of this (empty) spool file?"""
    try:
        os.write(fd, bytes(1 << 16))
        before = spool_used(fd)
        rc = _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             ctypes.c_long(0), ctypes.c_long(1 << 16))
        ok = rc == 0 and spool_used(fd) < before
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        return ok
    except OSError:
        return False


def spool_used(fd: int) -> int:
    """Bytes the spool really holds: its allocated blocks (consumed ranges are punched
    out), not its size."""
    return os.fstat(fd).st_blocks * 512


def _append(fd: int, data: bytes) -> bool:
    """Append all of ``data`` to the spool, or nothing (False) when the disk is full."""
    start = os.lseek(fd, 0, os.SEEK_CUR)
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        os.ftruncate(fd, start)  # no half record: the consumer reads whole ones
        os.lseek(fd, start, os.SEEK_SET)
        return False
    return True


def _splice_pipe(size: int) -> tuple[int, int] | None:
    """A pipe to splice pages through, ``size`` bytes big if the kernel allows."""
    try:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import fcntl

        fcntl.fcntl(w, F_SETPIPE_SZ, size)
    except OSError:
        pass  # the default (16 pages) still works, a few pages per splice
    return r, w


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def subbuf_size(instance_dir: str) -> int:
    """Bytes of one ring-buffer page (sub-buffer) of the instance, from its
    ``events/header_page`` (data offset + data size); 0 when it cannot be read."""
    try:
        with open(os.path.join(instance_dir, "events", "header_page")) as f:
            text = f.read()
    except OSError:
        return 0
    for line in text.splitlines():
        if " data;" in line:
            parts = dict(p.strip().split(":", 1) for p in line.split(";")[1:3]
                         if ":" in p)
            try:
                return int(parts["offset"]) + int(parts["size"])
            except (KeyError, ValueError):
                return 0
    return 0


def _drainer(
    cpu_fds: dict[int, int], spool_fd: int, ctrl_fd: int, notify_fd: int, kind: int = PAGE,
    limit: int = 0, page_ts: bool = True, page_size: int = 0,
) -> None:
    """Body of the drainer process: poll, drain the fds, append to the spool (as
    ``kind`` records: PAGE for trace_pipe_raw, TEXT for trace_pipe).

    Each round reads at most :data:`SLICE_PAGES` reads per fd, and no more than its
    share of the room left in the spool (then the next CPU gets its turn), and never
    lets the spool hold more than ``limit`` bytes (0: no limit). With ``page_size``
    (binary pages), whole pages are spliced out through a pipe; a CPU that gave whole
    pages in a round keeps the page its writer is on for a later round, one that gave
    none is read() to the end (a partly written page is copied out): latency stays
    bounded by the rounds, and a busy writer's page is not copied while it writes.
    When
    when it is full the drainer stops reading, the kernel's ring buffer overruns and
    counts what it overwrites, and a FULL record says for how long. The WATERMARK is
    the time up to which every CPU has been read: a CPU read to empty at round start
    ``now`` is done up to ``now``; a CPU cut at the slice limit is done up to the
    timestamp of the last page read (the first 8 bytes of a page; later pages are not
    older), when ``page_ts`` says the trace clock is CLOCK_MONOTONIC, like ``now``.
    """
    pack = REC.pack
    ts_of = struct.Struct("<Q").unpack_from
    poller = select.poll()
    for fd in cpu_fds.values():
        poller.register(fd, select.POLLIN)
    poller.register(ctrl_fd, select.POLLIN | select.POLLHUP)
    # while the spool is full, wait on the control pipe alone: the CPU fds are
    # readable all the time then, and polling them would spin
    ctrl_only = select.poll()
    ctrl_only.register(ctrl_fd, select.POLLIN | select.POLLHUP)
    full = False
    unwritten: list[bytes] = []
    order = list(cpu_fds.items())
    progress = dict.fromkeys(cpu_fds, 0)
    last_mark = 0
    final = False
    full_since = 0
    timeout = IDLE_MS
    idle = DRAIN_MS
    hs = REC.size
    turn = 0
    unnotified = 0  # page bytes appended since the consumer was last woken
    marked = False  # ... and whether anything else was (watermarks)
    last_notify = 0
    pipes: dict[int, tuple[int, int]] = {}
    if page_size and kind == PAGE and SPLICE:
        for cpu in cpu_fds:
            pp = _splice_pipe(SLICE_PAGES * page_size)
            if pp is not None:
                pipes[cpu] = pp
    while True:
        try:
            if full and final:  # the control pipe stays readable: just nap
                time.sleep(FULL_POLL_MS / 1000)
                ready = []
            else:
                ready = (ctrl_only if full else poller).poll(timeout)
        except InterruptedError:
            ready = []
        for fd, _ev in ready:
            if fd == ctrl_fd:
                final = True
        now = time.monotonic_ns()
        budget = limit - spool_used(spool_fd) if limit else 1 << 62
        if unwritten:
            budget = 0  # write what was read before reading more
        chunks: list[bytes] = []
        nbytes = 0
        full = False
        all_empty = True
        turn = (turn + 1) % len(order)  # who reads first rotates: fair when full
        share = budget // len(order)  # nearly full: every CPU gets its part
        for cpu, fd in order[turn:] + order[:turn]:
            n = 0
            mine = 0
            empty = False
            held = False
            pp = pipes.get(cpu)
            while True:
                if nbytes >= budget:
                    full = True
                    break
                if n >= SLICE_PAGES or (mine and mine >= share):
                    break
                if pp is not None:
                    want = min(SLICE_PAGES - n, max(1, (budget - nbytes) // (page_size + hs)))
                    try:
                        got = os.splice(fd, pp[1], want * page_size,
                                        flags=os.SPLICE_F_NONBLOCK)
                    except BlockingIOError:
                        got = 0
                    except OSError:
                        got = 0
                        pipes.pop(cpu, None)  # no splice here: read() from now on
                        pp = None
                    if got > 0:
                        data = _read_exact(pp[0], got) if pp is not None else b""
                        for off in range(0, len(data), page_size):
                            page = data[off : off + page_size]  # whole pages only
                            n += 1
                            nbytes += hs + len(page)
                            mine += hs + len(page)
                            chunks.append(pack(cpu, kind, len(page), 0))
                            chunks.append(page)
                            if page_ts:
                                ts = ts_of(page, 0)[0]
                                if ts > progress[cpu]:
                                    progress[cpu] = ts
                        held = True
                        continue
                    if held and not final:
                        break  # the writer's page: next round (or read at the end)
                try:
                    page = os.read(fd, PAGE_READ)
                except BlockingIOError:
                    empty = True
                    break
                except OSError as e:
                    if e.errno == errno.EINTR:
                        continue
                    empty = True
                    break
                if not page:
                    empty = True
                    break
                n += 1
                nbytes += hs + len(page)
                mine += hs + len(page)
                chunks.append(pack(cpu, kind, len(page), 0))
                chunks.append(page)
                if page_ts and kind == PAGE and len(page) >= 8:
                    ts = ts_of(page, 0)[0]
                    if ts > progress[cpu]:
                        progress[cpu] = ts
            if empty:
                held = False
                if now > progress[cpu]:
                    progress[cpu] = now
            elif not held or n >= SLICE_PAGES or full:
                all_empty = False  # more to read at once
        mark = min(progress.values())
        if mark > last_mark:
            chunks.append(pack(0, WATERMARK, 0, mark))
            last_mark = mark
        if full:
            if not full_since:
                full_since = now
        elif full_since:
            chunks.append(pack(0, FULL, 0, now - full_since))
            full_since = 0
        done = final and all_empty
        if done:
            chunks.append(pack(0, END, 0, 0))
        if unwritten:
            chunks[:0] = unwritten
        if chunks:
            data = b"".join(chunks)
            if _append(spool_fd, data):
                unwritten = []
                unnotified += nbytes
                marked = True
            else:  # the disk is full: keep the round (one budget at most), retry soon
                unwritten = [data]
                full, done = True, False
                if not full_since:
                    full_since = now
        since = now - last_notify
        if marked and (done or full or unnotified >= NOTIFY_BYTES
                       or since >= (NOTIFY_MS if unnotified else IDLE_MS) * 1_000_000):
            unnotified = 0
            marked = False
            last_notify = now
            try:
                os.write(notify_fd, b"x")
            except BlockingIOError:
                pass  # the consumer has wake-ups pending already
        if done:
            return
        # full: look again soon (the consumer frees space); cut at a slice: at once;
        # read to the end: again after DRAIN_MS, or later and later while nothing comes
        if full:
            timeout = FULL_POLL_MS
        elif not all_empty:
            timeout = 0
        elif nbytes:
            timeout = idle = DRAIN_MS
        else:
            idle = min(IDLE_MS, idle * 2)
            timeout = idle
        if unnotified:  # wake the consumer for it in time, even if nothing more comes
            timeout = min(timeout, NOTIFY_MS)


class FtraceCollector:
    """Owns one tracefs instance, its enabled events and the drainer process."""

    def __init__(
        self,
        buffer_kb: int | None = None,
        clock: str = "mono",
        root: str | None = None,
        spool_bytes: int | None = None,
        spool_dir: str | None = None,
    ) -> None:
        if spool_bytes is not None and spool_bytes < (1 << 20):
            raise ProbewatchError(f"the spool bound must be at least 1 MiB (got {spool_bytes} "
                                  "bytes)")
        if spool_dir is not None and spool_bytes is None:
            spool_bytes = default_disk_spool_bytes(spool_dir) or None
            if spool_bytes is None:
                spool_dir = None  # the disk is nearly full: it is the capture's
        #: where pages wait for the consumer: None = memory (a memfd), else a directory
        self.spool_dir = spool_dir
        #: the most bytes the spool holds (its allocated blocks)
        self.spool_bytes = spool_bytes or default_spool_bytes()
        #: what the session should tell the user (e.g. where the spool went instead)
        self.warnings: list[str] = []
        #: how long (ns) the drainer could not read because the spool was full
        self.spool_full_ns = 0
        #: the most the spool held at one time, as the consumer saw it (bytes)
        self.spool_peak = 0
        self.root = root or tracefs_root()
        self.instance = Instance.create(self.root)
        self._closed = False
        self._armed = 0
        self._drainer_pid = 0
        self._cpu_fds: dict[int, int] = {}
        self._stat_fds: dict[int, int] = {}
        self._spool = -1
        self._ctrl_w = -1
        self._notify_r = -1
        self._read_off = 0
        self._punched = 0
        self._buf = b""
        self._kind = PAGE
        self.text_reason: str | None = None
        self.ended = False
        self.watermark = 0
        self.stopped = False
        try:
            inst = self.instance
            inst.tracing_on(False)
            inst.set_buffer_kb(buffer_kb or DEFAULT_BUFFER_KB)
            inst.set_buffer_percent(WAKE_PERCENT)
            self.clock = clock
            try:
                inst.set_clock(clock)
            except ProbewatchError:
                self.clock = "local"  # the instance keeps the kernel's default clock
            inst.set_option("record-cmd", True)
            inst.set_option("record-tgid", True)
            inst.set_notrace_pids([os.getpid()])
        except BaseException:
            self.instance.remove()
            raise

    # -- configuration
    def enable(self, system: str, name: str, filter_expr: str | None = None) -> None:
        self.instance.enable(system, name, filter_expr)

    def arm(self, probe: ResolvedProbe, filter: str | None = None, **how: Any) -> int:
        """:class:`~probewatch.collect.base.Collector`: enable the probe's event (a
        dynamic probe must be defined in tracefs first) with its kernel filter."""
        self.enable(probe.system, probe.name, filter)
        self._armed += 1
        return self._armed - 1

    def set_pids(self, pids: list[int], follow_fork: bool = True) -> None:
        self.instance.set_option("event-fork", follow_fork)
        self.instance.set_event_pids(pids)

    def add_pids(self, pids: list[int]) -> None:
        self.instance.write("set_event_pid", " ".join(str(p) for p in pids), append=True)

    def cpus(self) -> list[int]:
        return [c for c, _ in self.instance.cpu_dirs()]

    # -- running
    def raw_unavailable(self) -> str | None:
        """Why the binary per-CPU ``trace_pipe_raw`` files cannot be read, or None.

        Opens (and closes) each CPU's file once, as :meth:`start` will.
        """
        fds, why = self._open_raw()
        for fd in fds.values():
            os.close(fd)
        return why

    def _open_raw(self) -> tuple[dict[int, int], str | None]:
        fds: dict[int, int] = {}
        try:
            dirs = list(self.instance.cpu_dirs())
        except OSError as e:
            return fds, f"{self.instance.file('per_cpu')} cannot be listed ({e.strerror})"
        if not dirs:
            return fds, f"{self.instance.file('per_cpu')} lists no CPU"
        for cpu, d in dirs:
            path = os.path.join(d, "trace_pipe_raw")
            try:
                fds[cpu] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as e:
                for fd in fds.values():
                    os.close(fd)
                if e.errno == errno.ENOENT:
                    return {}, f"{path} does not exist"
                return {}, f"{path} cannot be opened ({e.strerror})"
        return fds, None

    def _open_text(self, reason: str) -> int:
        """Set the text options and open the instance's ``trace_pipe``."""
        inst = self.instance
        for name, on in TEXT_OPTIONS:
            if not inst.set_option(name, on) and name == "fields":
                raise FeatureUnavailable(
                    f"cannot read trace events: {reason}, and the text fallback needs the "
                    f"tracefs option 'fields' (Linux 6.1 or later)"
                )
        path = inst.file("trace_pipe")
        try:
            return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise TracefsError(
                f"cannot open {path}: {e.strerror} (and the binary reader is unusable: "
                f"{reason})"
            ) from None

    @property
    def text_mode(self) -> bool:
        """Is the text ``trace_pipe`` read (instead of binary pages)?"""
        return self.text_reason is not None

    def start(self, text_reason: str | None = None) -> None:
        """Open the files to read, fork the drainer and turn tracing on.

        Binary ``trace_pipe_raw`` pages unless ``text_reason`` says why not, or a CPU's
        file cannot be opened: then the text ``trace_pipe`` (:attr:`text_reason` says
        why; PAGE records become TEXT records).
        """
        inst = self.instance
        if text_reason is None:
            fds, text_reason = self._open_raw()
            self._cpu_fds.update(fds)
        if text_reason is not None:
            self._cpu_fds[0] = self._open_text(text_reason)
            self._kind = TEXT
            self.text_reason = text_reason
        try:
            dirs = list(inst.cpu_dirs())
        except OSError:
            dirs = []
        for cpu, d in dirs:
            try:
                self._stat_fds[cpu] = os.open(os.path.join(d, "stats"), os.O_RDONLY)
            except OSError:
                pass  # stats() reports what it can read
        self._spool = open_spool(self.spool_dir)
        if self.spool_dir is not None and not _can_punch(self._spool):
            os.close(self._spool)
            self.warnings.append(
                f"the file system of {self.spool_dir} cannot punch holes into files: "
                f"raw pages are spooled in memory instead (at most "
                f"{default_spool_bytes() >> 20} MiB)")
            self.spool_dir = None
            self.spool_bytes = default_spool_bytes()
            self._spool = open_spool(None)
        ctrl_r, self._ctrl_w = os.pipe()
        self._notify_r, notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # drainer
            code = 0
            try:
                # first: the parent's handlers (SystemExit, KeyboardInterrupt) must not
                # run here; ^C reaches the whole process group, the parent decides
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:
                    os._exit(0)
                try:  # wake promptly when the buffer fills, even on a busy machine
                    os.setpriority(os.PRIO_PROCESS, 0, DRAIN_NICE)
                except OSError:
                    pass
                os.close(self._ctrl_w)
                os.close(self._notify_r)
                _drainer(self._cpu_fds, self._spool, ctrl_r, notify_w, self._kind,
                         self.spool_bytes, page_ts=self.clock == "mono",
                         page_size=subbuf_size(self.instance.path))
            except BaseException:
                code = 1
            os._exit(code)
        self._drainer_pid = pid
        os.close(ctrl_r)
        os.close(notify_w)
        # the drainer's own reads must not be traced either
        self.instance.set_notrace_pids([os.getpid(), pid])
        inst.tracing_on(True)

    def stop(self) -> None:
        """Turn tracing off and ask the drainer for a final drain (pages() then ends)."""
        if self.stopped:
            return
        self.stopped = True
        try:
            self.instance.tracing_on(False)
        except Exception:
            pass
        if self._ctrl_w >= 0:
            try:
                os.write(self._ctrl_w, b"q")
            except OSError:
                pass

    def wait_data(self, timeout: float, also: int = -1) -> None:
        """Block until the drainer has appended something, fd ``also`` (e.g. a pidfd)
        is readable, or timeout seconds pass."""
        if self._notify_r < 0:
            time.sleep(timeout)
            return
        fds = [self._notify_r] if also < 0 else [self._notify_r, also]
        r, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if self._notify_r in r:
            try:
                os.read(self._notify_r, 4096)
            except BlockingIOError:
                pass

    def backlog(self) -> int:
        """Spooled bytes not yet read by :meth:`read_spool`."""
        if self._spool < 0:
            return 0
        return os.fstat(self._spool).st_size - self._read_off

    def read_spool(
        self, max_bytes: int | None = READ_SLICE
    ) -> Iterator[tuple[int, int, bytes | int]]:
        """Yield (kind, cpu, page or text bytes | watermark ns) for what is spooled, at
        most about ``max_bytes`` of it (None: everything); :meth:`backlog` says what is
        left. Space read is given back to the kernel (punched out of the spool)."""
        if self._spool < 0:
            return
        st = os.fstat(self._spool)
        used = st.st_blocks * 512
        if used > self.spool_peak:
            self.spool_peak = used
        size = st.st_size
        if max_bytes is not None:
            size = min(size, self._read_off + max_bytes)
        unpack = REC.unpack_from
        hs = REC.size
        while self._read_off < size:
            n = min(size - self._read_off, 8 << 20)
            chunk = os.pread(self._spool, n, self._read_off)
            if not chunk:
                break
            data = self._buf + chunk if self._buf else chunk
            self._read_off += len(chunk)
            pos = 0
            end = len(data)
            while pos + hs <= end:
                cpu, kind, length, value = unpack(data, pos)
                if pos + hs + length > end:
                    break
                if kind == PAGE or kind == TEXT:
                    yield kind, cpu, data[pos + hs : pos + hs + length]
                elif kind == WATERMARK:
                    if value > self.watermark:
                        self.watermark = value
                    yield WATERMARK, cpu, value
                elif kind == FULL:
                    self.spool_full_ns += value
                elif kind == END:
                    self.ended = True
                    yield END, cpu, 0
                pos += hs + length
            self._buf = data[pos:]
        self._punch()

    def _punch(self) -> None:
        """Give consumed spool space back to the kernel (whole 64 KiB blocks)."""
        done = (self._read_off - len(self._buf)) & ~0xFFFF
        step = min(4 << 20, max(1 << 16, self.spool_bytes // 16))
        if done - self._punched >= step:
            rc = _libc.fallocate(
                self._spool,
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                ctypes.c_long(self._punched),
                ctypes.c_long(done - self._punched),
            )
            if rc == 0:
                self._punched = done

    def drainer_alive(self) -> bool:
        """Is the drainer still running? Reaps it (without blocking) once it has ended."""
        if not self._drainer_pid:
            return False
        ended, _ = try_reap(self._drainer_pid)
        if ended:
            self._drainer_pid = 0
        return not ended

    def stats(self) -> dict[int, CpuStats]:
        out = {}
        for cpu, fd in self._stat_fds.items():
            try:
                text = os.pread(fd, 4096, 0).decode(errors="replace")
            except OSError:
                continue
            out[cpu] = parse_stats(text, cpu)
        if not out and not self._closed:
            for cpu, d in self.instance.cpu_dirs():
                try:
                    with open(os.path.join(d, "stats")) as f:
                        out[cpu] = parse_stats(f.read(), cpu)
                except OSError:
                    pass
        return out

    def close(self) -> None:
        """Stop everything and remove the instance; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self.instance.tracing_on(False)
        except Exception:
            pass
        if self._drainer_pid:
            kill_child(self._drainer_pid)
            self._drainer_pid = 0
        for fd in (
            list(self._cpu_fds.values())
            + list(self._stat_fds.values())
            + [self._spool, self._ctrl_w, self._notify_r]
        ):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._cpu_fds.clear()
        self._stat_fds.clear()
        self._spool = self._ctrl_w = self._notify_r = -1
        self.instance.remove()
