"""``trace --hist / --by / --latency`` computed in the kernel, on the bpf backend.

:class:`KernelAggregation` turns an :class:`~probewatch.analyze.aggregate.Aggregator`
(what to group by, which value, which histogram) and the session's slots (one per
attached probe) into the configuration of generic.bpf.c's aggregating programs
(:class:`~probewatch.collect.bpf.agg.AggSetup`), and the maps they fill back into the
Aggregator's own result (``stats``, ``events``, ``missing``, ``unmatched``): so text,
``--json`` and ``--top`` print byte for byte what the user-space aggregation prints.
Reading is by difference with the previous read, so ``-i SECS`` (which resets the
Aggregator after each print) shows each interval alone while the kernel's counters
only grow (no race between a read and a reset).

What the kernel does: keys comm, pid, tid, cpu, probe, event and up to two numeric
fields (a tracepoint's integer fields, read by offset, size and signedness from its
format; a uprobe's integer arguments, fetched as the record path fetches them);
values pid, tid, cpu or a numeric field (an event without the field, or with a
string/array there, counts as ``missing``, as in user space); count, sum, log2 or
linear buckets; ``--latency`` pairs per thread (a hash of enter times). Sums are kept
in 64 bits (a sum beyond the s64 / u64 range wraps, where Python's would not).

What stays in user space (:class:`Unsupported` says why, and the session emits
records as before): string fields (other than comm) or arrays as keys, a key field
that some traced event lacks, the ``__probe_*`` fields of uprobes, more than two
field keys, ``--filter`` (the bpf backend evaluates filters in user space), ``-n``
and ``--stack`` (they need the events).

Example::

    ka = KernelAggregation(agg, slots)      # raises Unsupported
    collector.agg = ka.setup
    ...
    ka.fill(agg, *collector.agg_snapshot(), collector.slot_counts())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .analyze.aggregate import LOG2_BUCKETS, Aggregator, pair_of
from .collect.bpf.agg import (
    AGG_KEY,
    AGGH_LINEAR,
    AGGH_LOG2,
    AGGH_NONE,
    AGGK_COMM,
    AGGK_CPU,
    AGGK_PID,
    AGGK_SLOT,
    AGGK_TID,
    AGGR_ENTER,
    AGGR_EXIT,
    AGGR_SKIP,
    AGGS_ABSENT,
    AGGS_CPU,
    AGGS_PID,
    AGGS_TID,
    AGGS_TP,
    AGGS_UARG,
    AGGST_FULL,
    AGGST_START_FULL,
    AGGST_UNMATCHED,
    DEFAULT_MAX_KEYS,
    AggSetup,
    AggSlot,
    AggSrc,
)
from .collect.bpf.generic import UARG_INT, UArg
from .decode.format import KIND_INT, KIND_POINTER, EventFormat
from .errors import ProbewatchError

_U64 = 1 << 64
_KEY_BITS = {"comm": AGGK_COMM, "pid": AGGK_PID, "tid": AGGK_TID, "cpu": AGGK_CPU,
             "probe": AGGK_SLOT, "event": AGGK_SLOT}
_TASK_SRC = {"pid": AggSrc(AGGS_PID), "tid": AggSrc(AGGS_TID), "cpu": AggSrc(AGGS_CPU)}


class Unsupported(ProbewatchError):
    """This aggregation cannot be computed in the kernel (the message says why)."""


@dataclass
class SlotInfo:
    """What the aggregation needs to know of one attached probe."""

    event: str
    probe: str
    fmt: EventFormat | None = None  # tracepoints
    uargs: list[UArg] | None = None  # uprobes / uretprobes


def _source(s: SlotInfo, name: str) -> AggSrc | None:
    """The number ``name`` of slot s: a source; ABSENT when it has none or it is no
    integer (user space counts that event missing); None for what the kernel cannot
    read as user space would (``__probe_*``)."""
    if name in _TASK_SRC:
        return _TASK_SRC[name]
    if name.startswith("__probe_"):
        return None
    if s.fmt is not None:
        for f in s.fmt.fields:
            if f.name == name:
                if f.kind in (KIND_INT, KIND_POINTER) and f.size in (1, 2, 4, 8):
                    return AggSrc(AGGS_TP, f.size, f.signed, f.offset)
                return AggSrc(AGGS_ABSENT)
        return AggSrc(AGGS_ABSENT)
    for i, a in enumerate(s.uargs or []):
        if a.name == name:
            if a.kind == UARG_INT and a.size in (1, 2, 4, 8):
                return AggSrc(AGGS_UARG, a.size, a.signed, i)
            return AggSrc(AGGS_ABSENT)
    return AggSrc(AGGS_ABSENT)


def _role(s: SlotInfo) -> tuple[str, bool] | None:
    """The latency pair end of a slot, as Aggregator._role finds it for its events."""
    head = s.probe.split(None, 1)[0].partition(":")[0]
    if head in ("u", "uprobe", "ur", "uretprobe"):
        return pair_of(s.probe, s.event)
    return pair_of("", s.event)


class KernelAggregation:
    """The in-kernel form of an Aggregator over the given slots (see the module)."""

    def __init__(self, agg: Aggregator, slots: list[SlotInfo],
                 max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.slots = slots
        self.latency = agg.latency
        keys = 0
        fields: list[str] = []
        self._parts: list[tuple[str, int]] = []  # (key name, field index or -1)
        for k in agg.keys:
            if k in _KEY_BITS:
                keys |= _KEY_BITS[k]
                self._parts.append((k, -1))
                continue
            if k not in fields:
                fields.append(k)
            self._parts.append((k, fields.index(k)))
        if len(fields) > 2:
            raise Unsupported(f"--by with {len(fields)} fields (the kernel keys on two)")
        hist = {None: AGGH_NONE, "log2": AGGH_LOG2, "linear": AGGH_LINEAR}[agg.hist]
        if agg.latency:
            hist = AGGH_LOG2
        # the slot is always in the kernel's key: each slot's signedness is known when
        # its rows are read, and probe/event keys come from it
        setup = AggSetup(keys=keys | AGGK_SLOT, hist=hist, step=agg.step or 1,
                         max_keys=max_keys, max_starts=max_keys)
        self.pairs: list[str] = []
        self._absent: set[int] = set()
        self._vsign: dict[int, bool] = {}
        self._ksign: dict[int, list[bool]] = {}
        for i, s in enumerate(slots):
            conf = AggSlot()
            srcs = []
            for f in fields:
                src = _source(s, f)
                if src is None or src.kind == AGGS_ABSENT:
                    raise Unsupported(f"--by {f}: not a number of every traced event "
                                      f"({s.event} has {'no such field' if src else 'it'}"
                                      " as the kernel cannot read it)")
                srcs.append(src)
            conf.key = tuple(srcs)
            self._ksign[i] = [x.sign for x in srcs]
            if agg.latency:
                r = _role(s)
                if r is None:
                    conf.role = AGGR_SKIP
                else:
                    name, is_exit = r
                    if name not in self.pairs:
                        self.pairs.append(name)
                    conf.role = AGGR_EXIT if is_exit else AGGR_ENTER
                    conf.pair = self.pairs.index(name)
                if len(self.pairs) > 0xFFFF:
                    raise Unsupported("too many --latency pairs")
            elif agg.value is not None:
                v = _source(s, agg.value)
                if v is None:
                    raise Unsupported(f"{agg.value}: the kernel does not read it")
                conf.value = v
                if v.kind == AGGS_ABSENT:
                    self._absent.add(i)
                self._vsign[i] = v.sign
            setup.slots[i] = conf
        self.setup = setup
        self._prev: dict[bytes, tuple[int, int]] = {}
        self._prev_counts: dict[int, int] = {}
        self._prev_stats: list[int] = [0, 0, 0, 0]
        self._comms: dict[bytes, str] = {}
        #: events whose key did not fit in the map, and latency enters that did not
        #: fit in the start map, so far (not per interval)
        self.overflow = 0
        self.start_overflow = 0

    def fill(self, agg: Aggregator, rows: dict[bytes, tuple[int, int]], stats: list[int],
             counts: dict[int, int]) -> None:
        """Add what the kernel aggregated since the last fill to agg (as agg.add would
        have for the same events)."""
        prev = self._prev
        hist = agg.hist
        latency = self.latency
        for kb, (count, total) in rows.items():
            pc, ps = prev.get(kb, (0, 0))
            dc = count - pc
            if dc <= 0:
                continue
            ds = (total - ps) % _U64
            (craw, pid, tid, cpu, slot, pair, _pad, *fs, bucket) = AGG_KEY.unpack(kb)
            try:
                s = self.slots[slot]
            except IndexError:
                continue
            if not latency and self._vsign.get(slot, False) and ds >= 1 << 63:
                ds -= _U64  # a sum of signed values
            parts: list[Any] = [self.pairs[pair]] if latency else []
            ks = self._ksign.get(slot, [])
            for name, j in self._parts:
                if j >= 0:
                    x = fs[j]
                    parts.append(x if ks[j] or x >= 0 else x + _U64)
                elif name == "comm":
                    c = self._comms.get(craw)
                    if c is None:
                        c = self._comms[craw] = craw.partition(b"\0")[0].decode(
                            "utf-8", "replace")
                    parts.append(c)
                elif name == "pid":
                    parts.append(pid)
                elif name == "tid":
                    parts.append(tid)
                elif name == "cpu":
                    parts.append(cpu)
                elif name == "probe":
                    parts.append(s.probe)
                else:
                    parts.append(s.event)
            k = tuple(parts) if len(parts) > 1 else parts[0] if parts else None
            st = agg.stats.get(k)
            if st is None:
                st = agg.stats[k] = [0, 0, agg._new_hist() if not latency
                                     else [0] * LOG2_BUCKETS]
            st[0] += dc
            st[1] += ds
            h = st[2]
            if latency or hist == "log2":
                h[min(max(bucket, 0), LOG2_BUCKETS - 1)] += dc
            elif hist == "linear":
                h[bucket] = h.get(bucket, 0) + dc
        self._prev = dict(rows)
        events = missing = 0
        for slot, n in counts.items():
            d = n - self._prev_counts.get(slot, 0)
            events += d
            if slot in self._absent:
                missing += d
        self._prev_counts = dict(counts)
        agg.events += events
        agg.missing += missing
        now = list(stats) + [0] * (4 - len(stats))
        was = self._prev_stats
        agg.unmatched += now[AGGST_UNMATCHED] - was[AGGST_UNMATCHED]
        self.overflow = now[AGGST_FULL]
        self.start_overflow = now[AGGST_START_FULL]
        agg.overflow += now[AGGST_FULL] - was[AGGST_FULL]
        self._prev_stats = now


__all__ = ["KernelAggregation", "SlotInfo", "Unsupported"]
