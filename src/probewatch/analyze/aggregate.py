"""Aggregations over Events: histograms, count/sum/avg per key, enter/exit latency.

Pure: it consumes batches of :class:`probewatch.event.Event` (from any backend) and
renders text (bpftrace's ``hist()`` layout) or JSON-ready dicts; it does no I/O.
The hot loop does one dict lookup per event for the key (a tuple is built only for
a key of several parts) and updates integers in place.

- ``hist="log2"``: buckets ``(..., 0)``, ``[0]``, ``[1]``, ``[2, 4)``, ``[4, 8)``, ...
  (bucket of v >= 1 is ``[2**(b-1), 2**b)`` with ``b = v.bit_length()``).
- ``hist="linear"`` with ``step``: ``[k*step, (k+1)*step)``, ``k = v // step``
  (empty buckets between used ones are shown unless that spans > 500 buckets).
- ``keys``: group by Event attributes (comm, pid, tid, cpu, event, probe) or fields.
- ``latency=True``: the value is the time from an enter event to the exit event of
  the same thread (``syscalls:sys_enter_X`` / ``sys_exit_X``; ``u:T:F`` / ``ur:T:F``),
  in ns, grouped by the pair's name (then by ``keys``).

Example::

    agg = Aggregator(value="size", hist="log2")
    agg.add(batch)                     # Events with fields["size"]
    print(agg.render_text())           # @size:\\n[16, 32)   3 |@@@@...|
    agg.to_dict()["rows"][0]["buckets"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from ..errors import ProbewatchError
from ..event import Event

#: Event attributes a key (or, for the numeric ones, a value) may name
EVENT_ATTRS = ("comm", "pid", "tid", "cpu", "event", "probe")
NUMERIC_ATTRS = ("pid", "tid", "cpu")
#: log2 buckets: 0 = negative, 1 = [0], b + 1 = [2**(b-1), 2**b) for b = bit_length 1..64
LOG2_BUCKETS = 66
BAR_WIDTH = 52
#: a linear histogram spanning more buckets than this shows only the non-empty ones
MAX_LINEAR_SPAN = 500
_SUFFIXES = ("", "K", "M", "G", "T", "P", "E")


class AggregateError(ProbewatchError):
    """A bad aggregation option (an unknown field, a value that is not a number)."""


# ---------------------------------------------------------------- bucket math


def log2_index(v: int) -> int:
    """The log2 bucket of v: 0 for v < 0, 1 for 0, else v.bit_length() + 1 (max 65)."""
    if v < 0:
        return 0
    return min(v.bit_length() + 1, LOG2_BUCKETS - 1)


def log2_bounds(i: int) -> tuple[int | None, int]:
    """[lo, hi) of log2 bucket i (lo None: the negative bucket, hi 0)."""
    if i == 0:
        return None, 0
    if i == 1:
        return 0, 1
    return 1 << (i - 2), 1 << (i - 1)


def linear_index(v: int, step: int) -> int:
    """The linear bucket of v: floor(v / step)."""
    return v // step


def size_label(n: int) -> str:
    """n with bpftrace's suffix when it is a multiple of a power of 1024: 1024 -> 1K."""
    k = 0
    while n and n % 1024 == 0 and k < len(_SUFFIXES) - 1:
        n //= 1024
        k += 1
    return f"{n}{_SUFFIXES[k]}"


def log2_label(i: int) -> str:
    lo, hi = log2_bounds(i)
    if lo is None:
        return "(..., 0)"
    if hi == lo + 1:
        return f"[{lo}]"
    return f"[{size_label(lo)}, {size_label(hi)})"


def linear_label(k: int, step: int) -> str:
    lo = k * step
    return f"[{size_label(lo)}, {size_label(lo + step)})"


def hist_lines(buckets: list[tuple[str, int]]) -> list[str]:
    """bpftrace's hist() lines for (label, count) pairs (already trimmed to the range)."""
    top = max((c for _, c in buckets), default=0)
    out = []
    for label, c in buckets:
        bar = "@" * (c * BAR_WIDTH // top) if top else ""
        out.append(f"{label:<16}{c:>8} |{bar:<{BAR_WIDTH}}|")
    return out


# ---------------------------------------------------------------- enter/exit pairs


def pair_of(probe: str, event: str) -> tuple[str, bool] | None:
    """(pair name, is_exit) of an Event for --latency, or None if it is no pair's end.

    Syscall tracepoints pair ``sys_enter_X`` with ``sys_exit_X`` (name ``X``);
    ``u:T:F`` pairs with ``ur:T:F`` (name ``T:F``, arguments ignored).
    """
    head = probe.split(None, 1)[0] if probe else ""
    kind, _, rest = head.partition(":")
    if kind in ("u", "uprobe"):
        return rest, False
    if kind in ("ur", "uretprobe"):
        return rest, True
    name = event.rpartition(":")[2]
    if name.startswith("sys_enter_"):
        return name[len("sys_enter_"):], False
    if name.startswith("sys_exit_"):
        return name[len("sys_exit_"):], True
    return None


def pair_spec(spec: str) -> str | None:
    """The spec of the other end of an enter spec (None: not an enter spec).

    ``t:syscalls:sys_enter_read`` -> ``t:syscalls:sys_exit_read``;
    ``u:libc:malloc size=arg0:u64`` -> ``ur:libc:malloc``.
    """
    head = spec.split(None, 1)[0]
    kind, _, rest = head.partition(":")
    if kind in ("u", "uprobe"):
        return "ur:" + rest
    if kind in ("t", "tracepoint"):
        system, _, name = rest.partition(":")
        if system == "syscalls" and name.startswith("sys_enter_"):
            return f"{kind}:syscalls:sys_exit_{name[len('sys_enter_'):]}"
    return None


def pair_specs(specs: list[str]) -> list[str]:
    """specs plus the exit end of every enter spec that lacks one (for --latency)."""
    heads = {s.split(None, 1)[0] for s in specs}
    out = list(specs)
    for s in specs:
        other = pair_spec(s)
        if other is not None and other not in heads:
            out.append(other)
            heads.add(other)
    if not any(pair_spec(s) is not None for s in out):
        raise AggregateError(
            "--latency pairs enter and exit events: give t:syscalls:sys_enter_NAME "
            "(its sys_exit_NAME is added) or u:TARGET:FUNC (its ur:TARGET:FUNC is added)")
    return out


# ---------------------------------------------------------------- the aggregator


def _getter(name: str) -> Callable[[Event], Any]:
    if name in EVENT_ATTRS:
        return attrgetter(name)
    return lambda ev: ev.fields.get(name)


def _key_getter(keys: list[str]) -> Callable[[Event], Any]:
    if len(keys) == 1:
        return _getter(keys[0])
    if not keys:
        return lambda ev: None
    if all(k in EVENT_ATTRS for k in keys):
        return attrgetter(*keys)  # a tuple, built in C
    gs = [_getter(k) for k in keys]
    return lambda ev: tuple([g(ev) for g in gs])


def parse_hist(text: str) -> tuple[str, str, int]:
    """FIELD[:log2|:linear=STEP] -> (field, scale, step)."""
    field, _, scale = text.partition(":")
    if not field:
        raise AggregateError(f"--hist {text!r}: give a field name, e.g. --hist size:log2")
    if scale in ("", "log2"):
        return field, "log2", 0
    kind, _, step = scale.partition("=")
    if kind == "linear":
        try:
            n = int(step, 0)
        except ValueError:
            n = 0
        if n <= 0:
            raise AggregateError(f"--hist {text!r}: linear=STEP needs a step >= 1, "
                                 "e.g. --hist size:linear=16")
        return field, "linear", n
    raise AggregateError(f"--hist {text!r}: the scale is log2 or linear=STEP")


def parse_keys(text: str) -> list[str]:
    """KEY[,KEY...] -> names (event attributes or field names)."""
    keys = [k.strip() for k in text.split(",")]
    if not all(keys):
        raise AggregateError(f"--by {text!r}: give KEY[,KEY...], e.g. --by comm,pid")
    return keys


class Aggregator:
    """count/sum/avg (and a histogram) of a value per key.

    value: a field (or pid/tid/cpu) to sum or histogram; None counts events.
    hist: None, "log2" or "linear" (with step). keys: what to group by.
    latency: the value is each enter->exit duration (ns) of a thread (see pair_of).
    """

    def __init__(self, *, value: str | None = None, hist: str | None = None, step: int = 0,
                 keys: Iterable[str] = (), latency: bool = False) -> None:
        self.value = value
        self.hist = hist
        self.step = step
        self.keys = list(keys)
        self.latency = latency
        if hist == "linear" and step <= 0:
            raise AggregateError("a linear histogram needs a step >= 1")
        if latency and value is not None:
            raise AggregateError("--latency measures durations: it takes no --value/--hist "
                                 "field")
        if hist is not None and value is None and not latency:
            raise AggregateError("a histogram needs a value field")
        self._key_of = _key_getter(self.keys)
        self._pending: dict[tuple[int, str], int] = {}  # (tid, pair) -> enter ts
        self._roles: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Start a new interval (pending latency enters are kept)."""
        # key -> [count, sum, log2 list | linear dict | None]
        self.stats: dict[Any, list[Any]] = {}
        self.events = 0
        self.missing = 0  # events without the value (or not a number)
        self.unmatched = 0  # latency: exits without their enter, enters overwritten
        self.overflow = 0  # in the kernel (bpf): events whose key did not fit the map

    # -- feeding

    def add(self, batch: list[Event]) -> None:
        """Aggregate a batch of Events."""
        self.events += len(batch)
        if self.latency:
            self._add_latency(batch)
            return
        stats = self.stats
        key_of = self._key_of
        vname = self.value
        if vname is None:
            for ev in batch:
                k = key_of(ev)
                st = stats.get(k)
                if st is None:
                    stats[k] = [1, 0, None]
                else:
                    st[0] += 1
            return
        field = vname not in NUMERIC_ATTRS
        val_of = _getter(vname)
        hist = self.hist
        step = self.step
        one = None if self.keys else stats.get(None)  # no key: one row, no lookups
        if one is None and not self.keys:
            one = stats[None] = [0, 0, self._new_hist()]
        n = total = missing = 0
        h: Any = one[2] if one is not None else None
        for ev in batch:
            v = ev.fields.get(vname) if field else val_of(ev)
            if v.__class__ is not int:
                if v.__class__ is bool or not isinstance(v, int):
                    missing += 1
                    continue
                v = int(v)
            if one is None:
                k = key_of(ev)
                st = stats.get(k)
                if st is None:
                    st = stats[k] = [0, 0, self._new_hist()]
                st[0] += 1
                st[1] += v
                h = st[2]
            else:
                n += 1
                total += v
            if hist == "log2":
                if v < 0:
                    h[0] += 1
                else:
                    try:
                        h[v.bit_length() + 1] += 1
                    except IndexError:  # beyond 64 bits (not from a kernel field)
                        h[LOG2_BUCKETS - 1] += 1
            elif hist is not None:
                b = v // step
                h[b] = h.get(b, 0) + 1
        if one is not None:
            one[0] += n
            one[1] += total
            if not one[0]:  # nothing had the value: no row
                del stats[None]
        self.missing += missing

    def _new_hist(self) -> Any:
        if self.hist == "log2":
            return [0] * LOG2_BUCKETS
        if self.hist == "linear":
            return {}
        return None

    def _role(self, ev: Event) -> tuple[str, bool] | None:
        r = self._roles.get(ev.probe, 0)
        if r == 0:  # first sight of this probe
            head = ev.probe.split(None, 1)[0].partition(":")[0]
            r = pair_of(ev.probe, ev.event) if head in ("u", "uprobe", "ur", "uretprobe") \
                else {}
            self._roles[ev.probe] = r
        if isinstance(r, dict):  # tracepoints (a glob spec): by event name
            if ev.event not in r:
                r[ev.event] = pair_of("", ev.event)
            return r[ev.event]
        return r

    def _add_latency(self, batch: list[Event]) -> None:
        pending = self._pending
        stats = self.stats
        extra = [_getter(k) for k in self.keys]
        for ev in batch:
            role = self._role(ev)
            if role is None:
                continue
            name, is_exit = role
            pk = (ev.tid, name)
            if not is_exit:
                if pk in pending:
                    self.unmatched += 1
                pending[pk] = ev.ts
                continue
            t0 = pending.pop(pk, None)
            if t0 is None or ev.ts < t0:
                self.unmatched += 1
                continue
            d = ev.ts - t0
            k = (name, *(g(ev) for g in extra)) if extra else name
            st = stats.get(k)
            if st is None:
                st = stats[k] = [0, 0, [0] * LOG2_BUCKETS]
            st[0] += 1
            st[1] += d
            st[2][min(d.bit_length() + 1, 65)] += 1

    # -- output

    def _key_names(self) -> list[str]:
        return (["name"] if self.latency else []) + self.keys

    def _key_dict(self, k: Any) -> dict[str, Any] | None:
        names = self._key_names()
        if not names:
            return None
        parts = k if isinstance(k, tuple) else (k,)
        return dict(zip(names, parts, strict=True))

    def _sorted(self) -> list[tuple[Any, list[Any]]]:
        """Rows by count (descending), then key, for the same output on every backend."""
        return sorted(self.stats.items(), key=lambda kv: (-kv[1][0], _sort_key(kv[0])))

    def buckets(self, h: Any) -> list[tuple[int | None, int, int]]:
        """(lo, hi, count) from the lowest to the highest non-empty bucket."""
        if self.hist == "linear":
            return [(k * self.step, (k + 1) * self.step, h.get(k, 0))
                    for k in _linear_range(h)]
        used = [i for i, c in enumerate(h) if c]
        if not used:
            return []
        return [(*log2_bounds(i), h[i]) for i in range(used[0], used[-1] + 1)]

    def _labels(self, h: Any) -> list[tuple[str, int]]:
        if self.hist == "linear":
            return [(linear_label(k, self.step), h.get(k, 0)) for k in _linear_range(h)]
        used = [i for i, c in enumerate(h) if c]
        if not used:
            return []
        return [(log2_label(i), h[i]) for i in range(used[0], used[-1] + 1)]

    @property
    def is_hist(self) -> bool:
        return self.hist is not None or self.latency

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready object: the options, then one row per key."""
        rows = []
        for k, (count, total, h) in self._sorted():
            row: dict[str, Any] = {"key": self._key_dict(k), "count": count}
            if self.value is not None or self.latency:
                row["sum"] = total
                row["avg"] = total / count if count else 0
            if self.is_hist:
                row["buckets"] = [{"lo": lo, "hi": hi, "count": c}
                                  for lo, hi, c in self.buckets(h)]
            rows.append(row)
        d: dict[str, Any] = {"by": self._key_names(), "value": self.value,
                             "hist": "log2" if self.latency else self.hist}
        if self.hist == "linear":
            d["step"] = self.step
        if self.latency:
            d["latency"] = True
            d["unit"] = "ns"
            d["unmatched"] = self.unmatched
        d["events"] = self.events
        d["missing"] = self.missing
        if self.overflow:
            d["overflow"] = self.overflow
        d["rows"] = rows
        return d

    def _title(self, k: Any) -> str:
        name = "@latency_ns" if self.latency else f"@{self.value}" if self.value else "@"
        if not self._key_names():
            return f"{name}:"
        parts = k if isinstance(k, tuple) else (k,)
        return f"{name}[{', '.join(str(p) for p in parts)}]:"

    def render_text(self, top: int | None = None) -> str:
        """bpftrace-like text: hist blocks, or a table of count (sum avg) per key."""
        if self.is_hist:
            blocks = []
            for k, (_c, _t, h) in sorted(self.stats.items(), key=lambda kv: _sort_key(kv[0])):
                blocks.append("\n".join([self._title(k), *hist_lines(self._labels(h))]))
            return "\n\n".join(blocks) + "\n" if blocks else ""
        return "\n".join(self.table(top)) + "\n"

    def table_rows(self, top: int | None = None) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of the per-key table, rows by count, at most top."""
        header = [n.upper() for n in self._key_names()] + ["COUNT"]
        withv = self.value is not None or self.latency
        if withv:
            header += ["SUM", "AVG"]
        rows = []
        for k, (count, total, _h) in self._sorted()[:top]:
            parts = k if isinstance(k, tuple) else (k,) if self._key_names() else ()
            r = [str(p) for p in parts] + [str(count)]
            if withv:
                r += [str(total), f"{total / count:.1f}"]
            rows.append(r)
        return header, rows

    def table(self, top: int | None = None) -> list[str]:
        header, rows = self.table_rows(top)
        nk = len(self._key_names())
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        out = []
        for r in [header, *rows]:
            cells = [c.ljust(w) if i < nk else c.rjust(w)
                     for i, (c, w) in enumerate(zip(r, widths, strict=True))]
            out.append("  ".join(cells).rstrip())
        return out


def _linear_range(h: dict[int, int]) -> list[int]:
    """The linear buckets shown: all from the lowest to the highest used one (as
    bpftrace's lhist), or only the used ones when that would be more than
    :data:`MAX_LINEAR_SPAN` lines."""
    if not h:
        return []
    lo, hi = min(h), max(h)
    if hi - lo + 1 > MAX_LINEAR_SPAN:
        return sorted(h)
    return list(range(lo, hi + 1))


def _sort_key(k: Any) -> tuple[Any, ...]:
    parts = k if isinstance(k, tuple) else (k,)
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in parts)
