"""State for Sigma correlation rules, bounded and driven by event time.

One :class:`Correlator` per correlation rule keeps, per group-by key, what the
correlation type needs inside its ``timespan``:

* ``event_count``: timestamps of the referenced rules' matches;
* ``value_count``: the distinct values of the condition's field (with last-seen time);
* ``value_sum`` / ``value_avg`` / ``value_median`` / ``value_percentile``: the values;
* ``temporal``: which referenced rules fired (last time each), optionally judged by an
  extended boolean condition (``a and not b``);
* ``temporal_ordered``: how far the ordered chain got, and when its first step was seen.

Windows slide with event time (``SigmaEvent.ts``, ns). Conditions that only growing
state can satisfy (``gt``, ``gte``, ``eq``) are tested on every event and the group
starts over once it fired; ``event_count``/``value_count`` with ``lt``, ``lte`` or
``neq``, and ``temporal`` with an extended condition containing ``not``, are judged
when a group's window closes (a later event past its end, or :meth:`Correlator.flush`),
since "fewer than N" and "B did not follow" are only known then. Such a window starts
at the group's first event and lasts the timespan.

Memory is bounded: groups idle longer than the timespan are dropped as time advances,
at most ``max_groups`` groups are kept (the least recently updated is evicted and
counted in ``evicted``), and each group keeps at most ``MAX_EVENTS`` events for the
alert, all groups together at most ``MAX_TOTAL_EVENTS`` (the oldest trimmed first,
counted in ``trimmed``).

Example::

    >>> c = Correlator("event_count", refs=["r1"], timespan_ns=10, group_by=["User"],
    ...                op="gte", count=2)
    >>> c.feed(0, 1, {"User": "bob"}, "e1")
    []
    >>> [(m.count, m.group, m.events) for m in c.feed(0, 5, {"User": "bob"}, "e2")]
    [(2, {'User': 'bob'}, ['e1', 'e2'])]
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_EVENTS = 16
#: events kept for the alerts over all the groups of one correlation: beyond it the
#: least recently updated groups lose their oldest events (their counts and sequences
#: stay whole; only the evidence an alert shows is shorter), counted in ``trimmed``.
#: An exec storm with 8 KiB command lines makes events of ~30 KB each: 2048 groups of
#: 16 would be a gigabyte.
MAX_TOTAL_EVENTS = 1024

_OPS: dict[str, Callable[[float, float], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}

TYPES = ("event_count", "value_count", "temporal", "temporal_ordered", "value_sum",
         "value_avg", "value_median", "value_percentile")
_CLOSED = ("lt", "lte", "neq")


@dataclass
class Fired:
    """A correlation that fired: the group's values, the count (or metric) and events."""

    group: dict[str, Any] | None
    count: float
    events: list[Any]


@dataclass
class _Group:
    key: tuple[Any, ...]
    start: int  # window start (closed-window conditions) / first event
    last: int
    times: deque[int] = field(default_factory=deque)
    values: OrderedDict[Any, int] = field(default_factory=OrderedDict)
    nums: deque[tuple[int, float]] = field(default_factory=deque)
    seen: dict[int, int] = field(default_factory=dict)  # ref index -> last ts
    chain: list[int | None] = field(default_factory=list)  # step -> start ts of the chain
    events: deque[Any] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


class Correlator:
    """The state of one correlation rule (see the module docstring).

    ``refs`` are the referenced rules (index = position, as passed to :meth:`feed`);
    ``aliases`` maps a group-by alias to {ref index: field name};
    ``extended`` (temporal only) judges the set of ref indexes seen.
    """

    def __init__(
        self,
        type: str,
        refs: list[str],
        timespan_ns: int,
        group_by: list[str] | None = None,
        op: str = "gte",
        count: float = 1,
        fieldref: str | None = None,
        percentile: int | None = None,
        aliases: dict[str, dict[int, str]] | None = None,
        extended: Callable[[set[int]], bool] | None = None,
        max_groups: int = 10000,
        extended_negates: bool = False,
    ) -> None:
        if type not in TYPES:
            raise ValueError(f"unknown correlation type {type!r}")
        if op not in _OPS:
            raise ValueError(f"unknown correlation condition {op!r}")
        self.type = type
        self.refs = refs
        self.span = int(timespan_ns)
        self.group_by = list(group_by or [])
        self.op = op
        self.cmp = _OPS[op]
        self.count = count
        self.fieldref = fieldref
        self.percentile = percentile
        self.aliases = aliases or {}
        self.extended = extended
        self.max_groups = max(1, int(max_groups))
        self.groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self.evicted = 0
        self.expired = 0
        self.trimmed = 0
        self._appends = 0
        # "fewer than" and "B did not happen" are only known when the window ends
        self.closed = (type in ("event_count", "value_count") and op in _CLOSED) or (
            type == "temporal" and extended is not None and extended_negates)
        self.now = -(2**63)

    # --- helpers ------------------------------------------------------------------

    def _key(self, ref: int, fields: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for g in self.group_by:
            name = self.aliases.get(g, {}).get(ref, g)
            out.append(_hashable(fields.get(name)))
        return tuple(out)

    def _group_dict(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        if not self.group_by:
            return None
        return dict(zip(self.group_by, key, strict=True))

    def _sweep(self, now: int, out: list[Fired]) -> None:
        """Drop groups idle for longer than the timespan (closing their windows)."""
        limit = now - self.span
        groups = self.groups
        while groups:
            key, g = next(iter(groups.items()))
            if g.last >= limit:
                break
            del groups[key]
            self.expired += 1
            if self.closed:
                self._close(g, out)

    def _trim(self) -> None:
        """Over MAX_TOTAL_EVENTS kept events: the least recently updated groups lose
        their oldest ones, down to 7/8 of the bound."""
        total = sum(len(g.events) for g in self.groups.values())
        if total <= MAX_TOTAL_EVENTS:
            return
        low = MAX_TOTAL_EVENTS * 7 // 8
        for g in self.groups.values():  # least recently updated first
            ev = g.events
            while ev and total > low:
                ev.popleft()
                total -= 1
                self.trimmed += 1
            if total <= low:
                return

    def _close(self, g: _Group, out: list[Fired]) -> None:
        if self.type == "temporal":
            seen = set(g.seen)
            if seen and self.extended is not None and self.extended(seen):
                out.append(Fired(self._group_dict(g.key), len(seen), list(g.events)))
            return
        n = len(g.times) if self.type == "event_count" else len(g.values)
        if n and self.cmp(n, self.count):
            out.append(Fired(self._group_dict(g.key), n, list(g.events)))

    def _metric(self, g: _Group) -> float | None:
        vals = [v for _, v in g.nums]
        if not vals:
            return None
        if self.type == "value_sum":
            return math.fsum(vals)
        if self.type == "value_avg":
            return math.fsum(vals) / len(vals)
        vals.sort()
        if self.type == "value_median":
            mid = len(vals) // 2
            return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
        p = self.percentile if self.percentile is not None else 50
        rank = max(1, math.ceil(p / 100 * len(vals)))  # nearest rank
        return vals[min(rank, len(vals)) - 1]

    # --- the one entry point ---------------------------------------------------------

    def feed(self, ref: int, ts: int, fields: dict[str, Any], event: Any) -> list[Fired]:
        """A match of referenced rule number ``ref`` at ``ts``; returns what fired."""
        out: list[Fired] = []
        if ts > self.now:
            self.now = ts
            self._sweep(ts, out)
        key = self._key(ref, fields)
        g = self.groups.get(key)
        if g is None:
            g = _Group(key, ts, ts)
            if self.type == "temporal_ordered":
                g.chain = [None] * len(self.refs)
            self.groups[key] = g
            if len(self.groups) > self.max_groups:
                self.groups.popitem(last=False)
                self.evicted += 1
        else:
            self.groups.move_to_end(key)
        if ts > g.last:
            g.last = ts
        lo = ts - self.span
        t = self.type

        if self.closed:
            if ts > g.start + self.span:  # this event opens a new window
                self._close(g, out)
                g.times.clear()
                g.values.clear()
                g.seen.clear()
                g.events.clear()
                g.start = ts
            if t == "event_count":
                g.times.append(ts)
            elif t == "temporal":
                g.seen[ref] = ts
            else:
                self._add_value(g, fields, ref, ts)
            g.events.append(event)
            self._appends += 1
            if self._appends & 255 == 0:
                self._trim()
            return out

        g.events.append(event)
        self._appends += 1
        if self._appends & 255 == 0:
            self._trim()
        if t == "event_count":
            times = g.times
            times.append(ts)
            while times and times[0] < lo:
                times.popleft()
            if self.cmp(len(times), self.count):
                out.append(Fired(self._group_dict(key), len(times), list(g.events)))
                self._reset(key)
        elif t == "value_count":
            self._add_value(g, fields, ref, ts)
            vals = g.values
            while vals:
                v0, t0 = next(iter(vals.items()))
                if t0 >= lo:
                    break
                del vals[v0]
            if vals and self.cmp(len(vals), self.count):
                out.append(Fired(self._group_dict(key), len(vals), list(g.events)))
                self._reset(key)
        elif t == "temporal":
            g.seen[ref] = ts
            for r, t0 in list(g.seen.items()):
                if t0 < lo:
                    del g.seen[r]
            seen = set(g.seen)
            ok = (self.extended(seen) if self.extended is not None
                  else self.cmp(len(seen), self.count))
            if ok:
                out.append(Fired(self._group_dict(key), len(seen), list(g.events)))
                self._reset(key)
        elif t == "temporal_ordered":
            chain = g.chain
            # a rule may appear at several steps: advance the later steps first so one
            # event never serves two steps
            for i in range(len(self.refs) - 1, -1, -1):
                if self.refs[i] != self.refs[ref]:
                    continue
                if i == 0:
                    chain[0] = ts
                else:
                    prev = chain[i - 1]
                    if prev is not None and prev >= lo:
                        cur = chain[i]
                        chain[i] = prev if cur is None or prev > cur else cur
            need = int(self.count) if self.count and self.count <= len(self.refs) else len(
                self.refs)
            done = chain[need - 1] if need >= 1 else None
            if done is not None and done >= lo:
                out.append(Fired(self._group_dict(key), need, list(g.events)))
                self._reset(key)
        else:  # value_sum / value_avg / value_median / value_percentile
            x = _number(fields.get(self._value_field(ref)))
            if x is not None:
                g.nums.append((ts, x))
            while g.nums and g.nums[0][0] < lo:
                g.nums.popleft()
            m = self._metric(g)
            if m is not None and self.cmp(m, self.count):
                out.append(Fired(self._group_dict(key), m, list(g.events)))
                self._reset(key)
        return out

    def _value_field(self, ref: int) -> str:
        name = self.fieldref or ""
        return self.aliases.get(name, {}).get(ref, name)

    def _add_value(self, g: _Group, fields: dict[str, Any], ref: int, ts: int) -> None:
        names = self.fieldref if isinstance(self.fieldref, list) else [self.fieldref or ""]
        vals = tuple(_hashable(fields.get(self.aliases.get(n, {}).get(ref, n))) for n in names)
        if all(v is None for v in vals):
            return
        v = vals[0] if len(vals) == 1 else vals
        g.values.pop(v, None)
        g.values[v] = ts

    def _reset(self, key: tuple[Any, ...]) -> None:
        self.groups.pop(key, None)

    def flush(self, now: int | None = None) -> list[Fired]:
        """Close windows that ended before ``now`` (all of them when None)."""
        out: list[Fired] = []
        if now is None:
            for g in list(self.groups.values()):
                if self.closed:
                    self._close(g, out)
            self.groups.clear()
            return out
        if now > self.now:
            self.now = now
        if self.closed:  # windows end `timespan` after their first event
            for key, g in list(self.groups.items()):
                if g.start + self.span < now:
                    del self.groups[key]
                    self.expired += 1
                    self._close(g, out)
        else:
            self._sweep(now, out)
        return out

    def __len__(self) -> int:
        return len(self.groups)
