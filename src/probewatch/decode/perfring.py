"""perf ring records -> Events: samples, lost counts, comm and fork records.

The perf backend (:mod:`probewatch.collect.perf`) copies whole records out of each
CPU's ring; :class:`PerfDecoder` walks them. A sample (``PERF_RECORD_SAMPLE`` with
``IDENTIFIER | TID | TIME | CPU | RAW``, see :data:`SAMPLE`) is routed by its id to
the :class:`Handler` of its probe: tracepoints decode their RAW part (the ftrace
record) with the event's :class:`~probewatch.decode.format.EventFormat`; PMU uprobes
with a decoder made by :func:`pmu_uprobe_decoder` (addresses from RAW, arguments
from the sampled user registers). ``PERF_RECORD_LOST`` counts go per CPU;
``PERF_RECORD_COMM`` and ``PERF_RECORD_FORK`` keep the tid -> comm map right.

Damaged input (never from the kernel) is counted in ``unknown`` / ``decode_errors``,
never raised.

Example::

    dec = PerfDecoder({sample_id: Handler("sched:sched_switch", "t:sched:sched_switch",
                                          0, fmt=fmt)}, counts={"t:...": 0})
    out = []
    dec.decode(0, chunk, out)       # chunk: bytes copied from CPU 0's ring
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DecodeError
from ..event import Event
from .format import EventFormat

RECORD_LOST = 2
RECORD_COMM = 3
RECORD_THROTTLE = 5
RECORD_UNTHROTTLE = 6
RECORD_FORK = 7
RECORD_SAMPLE = 9
RECORD_MMAP2 = 10
MISC_COMM_EXEC = 1 << 13
#: callchain entries at or above this are context markers (PERF_CONTEXT_*)
CONTEXT_MAX = (1 << 64) - 4095
CONTEXT_KERNEL = (1 << 64) - 128
CONTEXT_USER = (1 << 64) - 512

REC_HDR = struct.Struct("<IHH")  # type, misc, size
#: a sample's fixed part: IDENTIFIER, TID (pid, tid), TIME, CPU (cpu, res), RAW size
SAMPLE = struct.Struct("<QIIQIII")
SAMPLE_RAW = REC_HDR.size + SAMPLE.size  # where the raw record starts
LOST = struct.Struct("<QQ")  # id, lost
COMM_HEAD = struct.Struct("<II")  # pid, tid, then the comm
FORK = struct.Struct("<IIII")  # pid, ppid, tid, ptid
MMAP2 = struct.Struct("<IIQQQ")  # pid, tid, addr, len, pgoff; the file name at +64
#: with PERF_SAMPLE_CALLCHAIN: the fixed part up to CPU, then nr and the addresses
SAMPLE_CC = struct.Struct("<QIIQIIQ")
#: (pid, user addresses, kernel addresses) -> frames (see probewatch.analyze.stacks)
StackFn = Callable[[int, list[int], list[int]], list[dict[str, Any]]]

#: a uprobe's decoder: (buf, raw start, raw end, record end) -> fields
UprobeDecode = Callable[[bytes, int, int, int], dict[str, Any]]


@dataclass
class Handler:
    """How the samples of one perf probe become Events (``index``: the probe's number)."""

    event: str
    probe: str
    index: int
    fmt: EventFormat | None = None  # tracepoints and tracefs-defined probes
    udec: UprobeDecode | None = None  # PMU uprobes


@dataclass(frozen=True)
class RegArg:
    """A uprobe argument read from the sampled user registers."""

    name: str
    slot: int  # index among the sampled registers
    size: int  # bytes kept of the register
    signed: bool


def pmu_uprobe_decoder(args: list[RegArg], retprobe: bool, nregs: int,
                       faults: list[int]) -> UprobeDecode:
    """decode(buf, raw_start, raw_end, record_end) for a PMU uprobe: the address(es)
    from the raw record (``__probe_ip``, or ``__probe_func`` and ``__probe_ret_ip``),
    the arguments from the ``nregs`` sampled user registers after it. A sample without
    user registers (ABI none) gives 0s and counts in ``faults[0]``."""
    heads = struct.Struct("<8xQQ" if retprobe else "<8xQ")
    regs = struct.Struct(f"<Q{nregs}Q")
    masks = [(a.name, a.slot + 1, (1 << a.size * 8) - 1, a.size * 8, a.signed) for a in args]

    def decode(buf: bytes, start: int, end: int, limit: int) -> dict[str, Any]:
        if start + heads.size > end:
            raise DecodeError("uprobe sample shorter than its addresses")
        h = heads.unpack_from(buf, start)
        out: dict[str, Any] = (
            {"__probe_func": h[0], "__probe_ret_ip": h[1]} if retprobe
            else {"__probe_ip": h[0]})
        if not masks:
            return out
        if end + regs.size <= limit and buf[end] | buf[end + 1]:
            vals = regs.unpack_from(buf, end)  # abi word, then the registers
        else:  # PERF_SAMPLE_REGS_ABI_NONE: no user registers (a kernel thread)
            faults[0] += 1
            vals = (0,) * (nregs + 1)
        for name, i, mask, bits, signed in masks:
            v = vals[i] & mask
            if signed and v >> (bits - 1):
                v -= 1 << bits
            out[name] = v
        return out

    return decode


def proc_comm(tid: int) -> str:
    """The comm of a live task from /proc ("<...>" when it is gone)."""
    try:
        with open(f"/proc/{tid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
    except OSError:
        return "<...>"


@dataclass
class PerfDecoder:
    """Walks ring records; keeps per-probe ``seen`` counts, losses and the comm map.

    ``by_id``: sample id -> Handler; ``counts``: probe spec -> delivered (count-only
    decoding adds to it directly); ``nprobes``: how many handlers (``seen`` size).
    """

    by_id: dict[int, Handler]
    counts: dict[str, int]
    nprobes: int = 0
    comm_of: Callable[[int], str] = proc_comm
    seen: list[int] = field(default_factory=list)
    comms: dict[int, str] = field(default_factory=dict)
    lost_per_cpu: dict[int, int] = field(default_factory=dict)
    lost_records: int = 0
    #: PERF_RECORD_THROTTLE records: a sampling event was stopped for a while
    throttles: int = 0
    unknown: int = 0
    decode_errors: int = 0
    #: samples carry PERF_SAMPLE_CALLCHAIN: ``stack_of`` turns them into
    #: ``fields["stack"]``; ``on_mmap(pid, addr, len, pgoff, path)`` /
    #: ``on_exec(pid)`` keep its mappings
    stack_of: StackFn | None = None
    on_mmap: Callable[[int, int, int, int, str], None] | None = None
    on_exec: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        n = max([self.nprobes] + [h.index + 1 for h in self.by_id.values()])
        self.seen = [0] * n

    def decode(self, cpu: int, chunk: bytes, out: list[Event] | None) -> None:
        """The records of one ring -> Events appended to ``out`` (None: count only)."""
        unpack_hdr = REC_HDR.unpack_from
        unpack_s = SAMPLE.unpack_from
        by_id = self.by_id
        seen = self.seen
        comms = self.comms
        counts = self.counts
        pos = 0
        n = len(chunk)
        while pos + 8 <= n:
            typ, _misc, size = unpack_hdr(chunk, pos)
            if size < 8 or pos + size > n:  # never from the kernel: a damaged ring
                self.unknown += 1
                break
            if typ == RECORD_SAMPLE and self.stack_of is not None:
                self._sample_cc(chunk, pos, size, out)
            elif typ == RECORD_SAMPLE:
                if size < SAMPLE_RAW:
                    self.unknown += 1
                    pos += size
                    continue
                sid, pid, tid, ts, scpu, _r, rsz = unpack_s(chunk, pos + 8)
                h = by_id.get(sid)
                if h is None or SAMPLE_RAW + rsz > size:
                    self.unknown += 1
                    pos += size
                    continue
                seen[h.index] += 1
                if out is None:
                    counts[h.probe] += 1
                    pos += size
                    continue
                start = pos + SAMPLE_RAW
                end = start + rsz
                comm = comms.get(tid)
                if comm is None:
                    comm = comms[tid] = self.comm_of(tid)
                try:
                    if h.udec is None:
                        assert h.fmt is not None
                        if rsz < h.fmt.min_size:
                            raise DecodeError(f"{h.event}: short record")
                        ev = h.fmt.maker(chunk, start, end, ts, scpu)
                        ev.pid = pid
                        ev.tid = tid
                        ev.comm = comm
                        ev.event = h.event
                        ev.probe = h.probe
                    else:
                        ev = Event(ts, scpu, pid, tid, comm, h.event, h.probe,
                                   h.udec(chunk, start, end, pos + size))
                except (DecodeError, struct.error):
                    self.decode_errors += 1
                    pos += size
                    continue
                out.append(ev)
            elif typ == RECORD_LOST and size >= 24:
                _id, lost = LOST.unpack_from(chunk, pos + 8)
                self.lost_records += lost
                self.lost_per_cpu[cpu] = self.lost_per_cpu.get(cpu, 0) + lost
            elif typ == RECORD_THROTTLE:
                self.throttles += 1
            elif typ == RECORD_COMM and size >= 16:
                _pid, tid = COMM_HEAD.unpack_from(chunk, pos + 8)
                if _misc & MISC_COMM_EXEC and self.on_exec is not None and _pid == tid:
                    self.on_exec(_pid)
                raw = chunk[pos + 16 : pos + size]
                comms[tid] = raw.partition(b"\0")[0].decode("utf-8", "surrogateescape")
            elif typ == RECORD_FORK and size >= 24:
                _pid, _ppid, tid, ptid = FORK.unpack_from(chunk, pos + 8)
                parent = comms.get(ptid)
                if parent is None:
                    parent = comms[ptid] = self.comm_of(ptid)
                comms[tid] = parent  # a new task starts with its parent's comm
            elif typ == RECORD_MMAP2 and size >= 72 and self.on_mmap is not None:
                mpid, _mtid, addr, ln, pgoff = MMAP2.unpack_from(chunk, pos + 8)
                name = chunk[pos + 72 : pos + size].partition(b"\0")[0]
                self.on_mmap(mpid, addr, ln, pgoff, name.decode("utf-8", "surrogateescape"))
            pos += size

    def _sample_cc(self, chunk: bytes, pos: int, size: int, out: list[Event] | None) -> None:
        """A sample with a callchain between CPU and RAW."""
        if size < 8 + SAMPLE_CC.size:
            self.unknown += 1
            return
        sid, pid, tid, ts, scpu, _r, nr = SAMPLE_CC.unpack_from(chunk, pos + 8)
        ips_at = pos + 8 + SAMPLE_CC.size
        raw_at = ips_at + 8 * nr
        h = self.by_id.get(sid)
        if h is None or raw_at + 4 > pos + size:
            self.unknown += 1
            return
        (rsz,) = struct.unpack_from("<I", chunk, raw_at)
        start = raw_at + 4
        end = start + rsz
        if end > pos + size:
            self.unknown += 1
            return
        self.seen[h.index] += 1
        if out is None:
            self.counts[h.probe] += 1
            return
        comm = self.comms.get(tid)
        if comm is None:
            comm = self.comms[tid] = self.comm_of(tid)
        try:
            if h.udec is None:
                assert h.fmt is not None
                if rsz < h.fmt.min_size:
                    raise DecodeError(f"{h.event}: short record")
                fields = h.fmt.decode(chunk, start, end)
            else:
                fields = h.udec(chunk, start, end, pos + size)
        except (DecodeError, struct.error):
            self.decode_errors += 1
            return
        user: list[int] = []
        kern: list[int] = []
        into = kern
        for ip in struct.unpack_from(f"<{nr}Q", chunk, ips_at):
            if ip >= CONTEXT_MAX:
                into = user if ip == CONTEXT_USER else kern
                continue
            into.append(ip)
        assert self.stack_of is not None
        fields["stack"] = self.stack_of(pid, user, kern)
        out.append(Event(ts, scpu, pid, tid, comm, h.event, h.probe, fields))


__all__ = [
    "PerfDecoder",
    "Handler",
    "RegArg",
    "pmu_uprobe_decoder",
    "proc_comm",
    "REC_HDR",
    "SAMPLE",
    "SAMPLE_RAW",
    "LOST",
    "COMM_HEAD",
    "FORK",
    "RECORD_SAMPLE",
    "RECORD_LOST",
    "RECORD_COMM",
    "RECORD_FORK",
    "RECORD_THROTTLE",
    "RECORD_UNTHROTTLE",
]
