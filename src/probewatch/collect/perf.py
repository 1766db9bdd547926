"""perf_event collection: one perf event per probe and CPU, one mmap ring per CPU.

Every probe is opened with perf_event_open(2) on every CPU: tracepoints (and dynamic
events defined in tracefs) as PERF_TYPE_TRACEPOINT, uprobes/uretprobes through the
``uprobe`` PMU and kprobes through the ``kprobe`` PMU. The PMU probes are fd-based:
nothing is written to tracefs and the kernel removes the probe when the last fd
closes, so even a SIGKILLed run leaves nothing behind.

Each CPU has one ring (``pages`` data pages, mmapped); the other events of that CPU
write into it too (PERF_EVENT_IOC_SET_OUTPUT). Samples carry
``IDENTIFIER | TID | TIME | CPU | RAW`` (plus ``REGS_USER`` for uprobes whose
arguments are registers), timestamps on CLOCK_MONOTONIC. The RAW part is the ftrace
record of the event, decoded by the event's
:class:`~probewatch.decode.format.EventFormat` like ftrace's pages.

Scope: ``pids`` given, the events are per task (each thread of each pid, on every CPU)
with ``inherit``: children and new threads are traced by the kernel's inheritance, not
by filtering every task. Without pids the events are system-wide and a kernel filter
``common_pid != <self>`` keeps the reader out of its own trace.

Losses: the kernel counts every time a probe fired for a wanted task in the event's
counter (read(2) of the fd, inherited children included); what the rings delivered is
counted per probe while reading; the difference is what was lost, per probe.
PERF_RECORD_LOST records give the per-CPU totals as a cross-check (their ``id`` is
the event that wrote next, not necessarily the one that lost); the kernel writes one
only when it next finds space, so a ring still full when tracing ends has none:
sampling events are read with PERF_FORMAT_LOST (Linux 6.0+, :meth:`PerfCollector.ring_lost`),
which counts those too. What no perf counter sees (a BPF program on the same
tracepoint returning 0 hides the hit from every perf event there) is counted by the
session's referee (:mod:`probewatch.collect.tpreferee`).

Counting only (``sampling=False``): no rings at all, the counters are read at the end
(what ``perf stat`` does): the cheapest way to count on this backend.

Example::

    col = PerfCollector(pages=64)
    i = col.add_tracepoint(fmt.id)               # fmt: an EventFormat
    col.open()
    col.enable()
    col.poll(100)
    for cpu, chunk in col.read(): ...            # whole records: decode/perfring.py
    col.close()
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FeatureUnavailable, KernelRejected, NotFound, ProbewatchError
from ..kernel.perf import (
    ATTR_COMM,
    ATTR_COMM_EXEC,
    ATTR_DISABLED,
    ATTR_EXCLUDE_CALLCHAIN_KERNEL,
    ATTR_EXCLUDE_CALLCHAIN_USER,
    ATTR_INHERIT,
    ATTR_MMAP,
    ATTR_MMAP2,
    ATTR_SAMPLE_ID_ALL,
    ATTR_TASK,
    ATTR_USE_CLOCKID,
    ATTR_WATERMARK,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_RAW,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_TYPE_TRACEPOINT,
    PerfError,
    PerfEventAttr,
    new_attr,
    perf_event_open,
)

if TYPE_CHECKING:
    from ..sources.probes import ResolvedProbe

PERF_SAMPLE_CALLCHAIN = 1 << 5
PERF_SAMPLE_STREAM_ID = 1 << 9
PERF_SAMPLE_REGS_USER = 1 << 12
PERF_SAMPLE_IDENTIFIER = 1 << 16
PERF_SAMPLE_REGS_ABI_NONE = 0

# ioctls (linux/perf_event.h)
IOC_ENABLE = 0x2400
IOC_DISABLE = 0x2401
IOC_SET_OUTPUT = 0x2405
IOC_SET_FILTER = 0x40082406
IOC_ID = 0x80082407

#: read_format: the samples the kernel could not put into the ring (Linux 6.0+)
PERF_FORMAT_LOST = 1 << 4


CLOCK_MONOTONIC = 1
PAGE = mmap.PAGESIZE
EVENT_SOURCES = "/sys/bus/event_source/devices"
#: data pages per CPU ring (a power of two): 4 MiB with 4 KiB pages, like ftrace's default
DEFAULT_PAGES = 1024


# x86_64 perf register numbers (arch/x86/include/uapi/asm/perf_regs.h), by pt_regs name
PERF_REGS_X86_64 = {
    "ax": 0, "bx": 1, "cx": 2, "dx": 3, "si": 4, "di": 5, "bp": 6, "sp": 7, "ip": 8,
    "flags": 9, "cs": 10, "ss": 11,
    **{f"r{n}": 16 + n - 8 for n in range(8, 16)},
}
PERF_REGS = {"x86_64": PERF_REGS_X86_64}


def pmu_type(name: str) -> int | None:
    """The dynamic PMU type of ``uprobe`` / ``kprobe`` (None: the kernel lacks it)."""
    try:
        with open(os.path.join(EVENT_SOURCES, name, "type")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pmu_retprobe_bit(name: str) -> int:
    """The config bit that makes a PMU probe a return probe (``format/retprobe``:
    ``config:0``)."""
    try:
        with open(os.path.join(EVENT_SOURCES, name, "format", "retprobe")) as f:
            text = f.read().strip()
    except OSError:
        return 0
    _, _, bit = text.partition(":")
    return int(bit.split("-")[0]) if bit.strip().isdigit() else 0


def online_cpus() -> list[int]:
    """CPUs that are online now (``/sys/devices/system/cpu/online``)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        cpus.extend(range(int(a), int(b or a) + 1))
    return cpus


def threads_of(pid: int) -> list[int]:
    """The thread ids of ``pid`` (itself first); NotFound when it is gone."""
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        raise NotFound(f"no process with pid {pid}") from None
    return [pid] + [t for t in tids if t != pid]


@dataclass
class PerfProbe:
    """One probe to open on every CPU (and task): its attr fields and kernel filter."""

    type: int
    config: int
    what: str  # for messages: the spec or event
    config1: bytes | None = None  # uprobe path / kprobe function (kept alive for open)
    config2: int = 0
    regs_mask: int = 0
    filter: str | None = None
    ids: set[int] = field(default_factory=set)
    fds: list[int] = field(default_factory=list)
    #: counting twins of the sampling events: the kernel stops (throttles) a sampling
    #: event that fires too fast and then does not count it either; these never stop
    count_fds: list[int] = field(default_factory=list)
    #: the CPU of each of ``fds``
    fd_cpus: list[int] = field(default_factory=list)


class Ring:
    """One CPU's mmapped ring: :meth:`take` copies out what is there and frees it."""

    def __init__(self, fd: int, pages: int) -> None:
        self.size = pages * PAGE
        try:
            self.mm = mmap.mmap(fd, PAGE + self.size, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise KernelRejected(
                f"cannot map a perf ring of {pages} pages: {e.strerror} (a smaller "
                f"--buffer-kb, or raise /proc/sys/kernel/perf_event_mlock_kb)") from None
        self._hdr = memoryview(self.mm)[:PAGE].cast("Q")
        self._data = memoryview(self.mm)[PAGE:]
        self.mask = self.size - 1

    def pending(self) -> int:
        """Bytes written and not yet taken."""
        return int(self._hdr[128] - self._hdr[129])

    def take(self) -> bytes:
        """The records written since the last take (whole records), and frees them."""
        hdr = self._hdr
        head = hdr[128]  # data_head; x86 and arm64 loads of it are ordered enough here:
        tail = hdr[129]  # the kernel publishes head after the data (smp_store_release)
        n = head - tail
        if n <= 0:
            return b""
        start = tail & self.mask
        data = self._data
        if start + n <= self.size:
            chunk = bytes(data[start : start + n])
        else:
            chunk = bytes(data[start:]) + bytes(data[: n - (self.size - start)])
        hdr[129] = head  # data_tail: the kernel may overwrite it now
        return chunk

    def close(self) -> None:
        self._hdr.release()
        self._data.release()
        self.mm.close()


class PerfCollector:
    """Opens the probes' perf events, owns their rings and reads them.

    ``pids``: trace only these tasks (with their threads, and their future children
    when ``inherit``); otherwise system-wide. ``sampling=False`` opens counters only.
    """

    def __init__(self, pages: int = DEFAULT_PAGES, pids: list[int] | None = None,
                 inherit: bool = True, sampling: bool = True, wakeup_bytes: int = 0,
                 exclude_self: bool = True, callchain: str | None = None) -> None:
        if pages < 1 or pages & (pages - 1):
            raise ProbewatchError(f"perf ring pages must be a power of two (got {pages})")
        self.pages = pages
        self.pids = list(pids or [])
        self.inherit = inherit
        self.sampling = sampling
        self.wakeup_bytes = wakeup_bytes or max(PAGE, min(self.pages * PAGE // 4, 256 << 10))
        self.exclude_self = exclude_self
        if callchain not in (None, "user", "kernel", "both"):
            raise ProbewatchError(f"stack must be user, kernel or both (got {callchain!r})")
        #: PERF_SAMPLE_CALLCHAIN: "user", "kernel" or "both" frames (None: no stacks)
        self.callchain = callchain
        self.probes: list[PerfProbe] = []
        self.rings: dict[int, Ring] = {}
        self._ring_fd: dict[int, int] = {}
        self._poll = select.poll()
        self._opened = False
        self._closed = False
        self.enabled = False
        #: PERF_RECORD_LOST totals per CPU
        self.lost_per_cpu: dict[int, int] = {}
        self._final_counts: list[int] | None = None
        #: the tasks the events were opened for ([-1]: system-wide), after open()
        self.tasks: list[int] = []
        #: sampling events are opened with PERF_FORMAT_LOST (cleared if the kernel
        #: refuses it: before Linux 6.0)
        self.format_lost = True
        self._final_ring_lost: dict[int, int] | None = None

    # -- what to open
    def add_tracepoint(self, tp_id: int, what: str, filter: str | None = None) -> int:
        """A tracepoint (or a tracefs-defined dynamic event) by its ``events/.../id``."""
        self.probes.append(PerfProbe(PERF_TYPE_TRACEPOINT, tp_id, what, filter=filter))
        return len(self.probes) - 1

    def add_uprobe(self, path: str, offset: int, retprobe: bool, what: str,
                   regs_mask: int = 0, filter: str | None = None) -> int:
        """A uprobe through the ``uprobe`` PMU (fd-based: no tracefs objects)."""
        t = pmu_type("uprobe")
        if t is None:
            raise FeatureUnavailable(
                f"cannot arm {what!r} on the perf backend: this kernel has no uprobe PMU "
                f"({EVENT_SOURCES}/uprobe; Linux 4.17+ with CONFIG_UPROBE_EVENTS)")
        cfg = (1 << pmu_retprobe_bit("uprobe")) if retprobe else 0
        self.probes.append(PerfProbe(t, cfg, what, config1=os.fsencode(path) + b"\0",
                                     config2=offset, regs_mask=regs_mask, filter=filter))
        return len(self.probes) - 1

    def add_kprobe(self, function: str, offset: int, retprobe: bool, what: str,
                   filter: str | None = None) -> int:
        """A kprobe through the ``kprobe`` PMU."""
        t = pmu_type("kprobe")
        if t is None:
            raise FeatureUnavailable(
                f"cannot arm {what!r} on the perf backend: this kernel has no kprobe PMU "
                f"({EVENT_SOURCES}/kprobe missing: CONFIG_KPROBE_EVENTS is off); "
                f"kprobes cannot run here on any backend")
        cfg = (1 << pmu_retprobe_bit("kprobe")) if retprobe else 0
        self.probes.append(PerfProbe(t, cfg, what, config1=function.encode() + b"\0",
                                     config2=offset, filter=filter))
        return len(self.probes) - 1

    def arm(self, probe: ResolvedProbe, filter: str | None = None, **how: Any) -> int:
        """:class:`~probewatch.collect.base.Collector`: a probe with a format (a
        tracepoint, or a probe defined in tracefs) by its id; a uprobe or kprobe through
        its PMU (``how``: ``regs_mask``, the user registers to sample)."""
        what = probe.spec.text
        if probe.fmt is not None:
            return self.add_tracepoint(probe.fmt.id, what, filter=filter)
        dp = probe.dynamic
        assert dp is not None
        if probe.kind in ("uprobe", "uretprobe"):
            return self.add_uprobe(dp.target_path, dp.offset, probe.kind == "uretprobe", what,
                                   regs_mask=int(how.get("regs_mask", 0)), filter=filter)
        if probe.kind in ("kprobe", "kretprobe"):
            return self.add_kprobe(dp.symbol or "", probe.spec.offset or 0,
                                   probe.kind == "kretprobe", what, filter=filter)
        raise ProbewatchError(f"{what}: the perf PMUs cannot arm a {probe.kind} probe "
                              "(define it in tracefs and arm its format)")

    def stop(self) -> None:
        """:class:`~probewatch.collect.base.Collector`: :meth:`disable`."""
        self.disable()

    # -- opening
    def _attr(self, p: PerfProbe, track_comm: bool,
              sampling: bool = True) -> tuple[PerfEventAttr, object]:
        flags = ATTR_DISABLED | ATTR_USE_CLOCKID
        if self.pids and self.inherit:
            flags |= ATTR_INHERIT
        attr = new_attr(p.type, p.config, flags)
        attr.clockid = CLOCK_MONOTONIC
        keep: object = None
        if p.config1 is not None:
            keep = ctypes.create_string_buffer(p.config1)
            attr.config1 = ctypes.addressof(keep)
            attr.config2 = p.config2
        if sampling:
            attr.flags |= ATTR_SAMPLE_ID_ALL | ATTR_WATERMARK
            if track_comm:
                attr.flags |= ATTR_COMM | ATTR_COMM_EXEC | ATTR_TASK
                if self.callchain in ("user", "both"):  # mappings, for user frames
                    attr.flags |= ATTR_MMAP | ATTR_MMAP2
            attr.sample_period = 1
            attr.sample_type = (PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME
                                | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW)
            if self.callchain is not None:
                attr.sample_type |= PERF_SAMPLE_CALLCHAIN
                attr.sample_max_stack = 127
                if self.callchain == "user":
                    attr.flags |= ATTR_EXCLUDE_CALLCHAIN_KERNEL
                elif self.callchain == "kernel":
                    attr.flags |= ATTR_EXCLUDE_CALLCHAIN_USER
            if p.regs_mask:
                attr.sample_type |= PERF_SAMPLE_REGS_USER
                attr.sample_regs_user = p.regs_mask
            attr.wakeup_events = self.wakeup_bytes  # union: wakeup_watermark
            if self.format_lost:
                attr.read_format = PERF_FORMAT_LOST
        return attr, keep

    def open(self) -> None:
        """Open every probe on every CPU (and task), map the rings, set the filters.

        Everything opened is recorded at once: close() releases it whatever fails.
        """
        if self._opened:
            return
        self._opened = True
        cpus = online_cpus()
        tasks = [-1]
        if self.pids:
            tasks = []
            for pid in self.pids:
                tasks.extend(t for t in threads_of(pid) if t not in tasks)
        self.tasks = tasks
        me = os.getpid()
        for pi, p in enumerate(self.probes):
            filt = p.filter
            if self.exclude_self and not self.pids:
                mine = f"common_pid != {me}"
                filt = f"({filt}) && {mine}" if filt else mine
            for cpu in cpus:
                for task in tasks:
                    fd = self._open_one(p, task, cpu, filt, pi == 0, self.sampling)
                    p.fds.append(fd)
                    p.fd_cpus.append(cpu)
                    p.ids.add(_ioctl_u64(fd, IOC_ID))
                    if not self.sampling:
                        continue
                    p.count_fds.append(self._open_one(p, task, cpu, filt, False, False))
                    ring_fd = self._ring_fd.get(cpu)
                    if ring_fd is None:
                        self._ring_fd[cpu] = fd
                        self.rings[cpu] = Ring(fd, self.pages)
                        self._poll.register(fd, select.POLLIN)
                    else:
                        try:
                            fcntl.ioctl(fd, IOC_SET_OUTPUT, ring_fd)
                        except OSError as e:
                            raise KernelRejected(
                                f"{p.what}: the kernel refused to share CPU {cpu}'s perf "
                                f"ring (PERF_EVENT_IOC_SET_OUTPUT: {e.strerror})") from None

    def _open_one(self, p: PerfProbe, task: int, cpu: int, filt: str | None,
                  track_comm: bool, sampling: bool) -> int:
        attr, keep = self._attr(p, track_comm, sampling)
        try:
            try:
                fd = perf_event_open(attr, pid=task, cpu=cpu)
            except PerfError as e:
                if not (sampling and self.format_lost and e.errno == errno.EINVAL):
                    raise
                self.format_lost = False  # a kernel before 6.0: no PERF_FORMAT_LOST
                attr.read_format = 0
                fd = perf_event_open(attr, pid=task, cpu=cpu)
        except PerfError as e:
            raise self._open_error(p, e, task) from None
        finally:
            del keep  # the path / function name only has to live through the call
        if filt:
            try:
                self._set_filter(p, fd, filt)
            except BaseException:
                os.close(fd)
                raise
        return fd

    def _open_error(self, p: PerfProbe, e: PerfError, task: int) -> ProbewatchError:
        code = e.errno or 0
        if code == errno.ESRCH:
            return NotFound(f"{p.what}: task {task} is gone")
        if code in (errno.EACCES, errno.EPERM):
            return KernelRejected(
                f"{p.what}: perf_event_open: {os.strerror(code)} (run as root, or lower "
                f"/proc/sys/kernel/perf_event_paranoid)")
        if code == errno.ENOENT and p.type == PERF_TYPE_TRACEPOINT:
            return NotFound(f"{p.what}: the kernel has no such tracepoint (id {p.config})")
        if code == errno.EMFILE:
            return KernelRejected(
                f"{p.what}: out of file descriptors (probes x CPUs x threads; raise "
                f"'ulimit -n')")
        where = f"offset {p.config2:#x} of {p.config1[:-1].decode(errors='replace')}" \
            if p.config1 else f"config {p.config}"
        return KernelRejected(
            f"the kernel refused probe {p.what!r} on the perf backend "
            f"(perf_event_open, {where}): {os.strerror(code)}")

    def _set_filter(self, p: PerfProbe, fd: int, text: str) -> None:
        try:  # a bytes argument is passed as a pointer to a copy: the char * wanted
            fcntl.ioctl(fd, IOC_SET_FILTER, text.encode() + b"\0")
        except OSError as e:
            raise KernelRejected(
                f"the kernel refused the filter {text!r} for {p.what!r}: {e.strerror}")\
                from None

    # -- running
    def _ioctl_all(self, req: int) -> None:
        for p in self.probes:
            for fd in p.count_fds + p.fds:
                try:
                    fcntl.ioctl(fd, req, 0)
                except OSError:
                    pass

    def enable(self) -> None:
        self._ioctl_all(IOC_ENABLE)
        self.enabled = True

    def disable(self) -> None:
        """Stop every probe; what the rings hold can still be read."""
        if self.enabled:
            self._ioctl_all(IOC_DISABLE)
            self.enabled = False

    def poll(self, timeout_ms: float, also: int = -1) -> None:
        """Wait until a ring passed its wakeup watermark, ``also`` is readable, or timeout."""
        if also >= 0:
            self._poll.register(also, select.POLLIN)
        try:
            self._poll.poll(timeout_ms)
        except InterruptedError:
            pass
        finally:
            if also >= 0:
                self._poll.unregister(also)

    def read(self) -> Iterator[tuple[int, bytes]]:
        """(cpu, records) for every ring with data; the space is freed at once."""
        for cpu, ring in self.rings.items():
            chunk = ring.take()
            if chunk:
                yield cpu, chunk

    def counts(self) -> list[int]:
        """Per probe: how many times it fired for a wanted task (the kernel's counters,
        children included), read now or as they were at close()."""
        if self._final_counts is not None:
            return list(self._final_counts)
        out = []
        for p in self.probes:
            n = 0
            for fd in p.count_fds or p.fds:
                try:
                    n += struct.unpack("<Q", os.read(fd, 8))[0]
                except (OSError, struct.error):
                    pass
            out.append(n)
        return out

    def ring_lost(self) -> dict[int, int] | None:
        """Per CPU: samples the kernel could not write into the ring (PERF_FORMAT_LOST,
        inherited children included: they write through their parent), read now or as
        at close(). Unlike PERF_RECORD_LOST records it includes the losses of a ring
        still full when tracing ended. None: the kernel lacks it, or counters only."""
        if self._final_ring_lost is not None:
            return dict(self._final_ring_lost)
        if not (self.sampling and self.format_lost and self._opened):
            return None
        out: dict[int, int] = {}
        for p in self.probes:
            for fd, cpu in zip(p.fds, p.fd_cpus, strict=False):
                try:
                    _value, lost = struct.unpack("<QQ", os.read(fd, 16))
                except (OSError, struct.error):
                    continue
                out[cpu] = out.get(cpu, 0) + lost
        return out

    def close(self) -> None:
        """Close every event (the kernel removes PMU probes with them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.disable()
            self._final_ring_lost = self.ring_lost()
            self._final_counts = self.counts() if self._opened else [0] * len(self.probes)
        finally:
            for ring in self.rings.values():
                ring.close()
            self.rings.clear()
            for p in self.probes:
                for fd in p.fds + p.count_fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                p.fds.clear()
                p.count_fds.clear()
                p.fd_cpus.clear()


def _ioctl_u64(fd: int, req: int) -> int:
    buf = bytearray(8)
    fcntl.ioctl(fd, req, buf)
    return int.from_bytes(buf, "little")


__all__ = [
    "PerfCollector",
    "PerfProbe",
    "Ring",
    "pmu_type",
    "pmu_retprobe_bit",
    "online_cpus",
    "PERF_REGS",
    "DEFAULT_PAGES",
]
