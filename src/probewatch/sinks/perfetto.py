"""Chrome trace-event JSON: opens in ui.perfetto.dev (and chrome://tracing).

One track per thread, grouped by process (``process_name`` / ``thread_name`` metadata
events). A single event becomes an instant (``ph: "i"``, thread scope); a pair of
events that bracket a call on one thread becomes a complete slice (``ph: "X"`` with
``dur``):

- ``syscalls:sys_enter_NAME`` ... ``syscalls:sys_exit_NAME`` -> slice ``NAME``;
- ``raw_syscalls:sys_enter`` ... ``raw_syscalls:sys_exit`` with the same ``id`` ->
  slice ``syscall_ID``;
- a uprobe (kprobe) at a function's entry ... the uretprobe (kretprobe) of the same
  function in the same file -> slice named after the function;
- marks (``ftrace:print`` from ``probewatch.mark``/``begin``/``end``): ``B|NAME`` ...
  ``E|NAME`` on one thread -> slice ``NAME``; any other mark -> an instant named after
  the mark (its fields as args).

An event with a stack (``fields["stack"]``, from ``trace --stack``) carries it twice:
as the arg ``stack`` (one ``func+0x1c (file)`` string per frame, innermost first,
which every viewer shows) and as ``sf``, the id of its innermost frame in the
document's ``stackFrames`` (``{"name", "category": file, "parent"}``: the trace-event
format's own stacks, shared between events with a common caller).

Slices on a thread always nest: an exit closes the innermost open slice with the same
key, and entries left open above it (their exit was lost) become instants, as do
exits without an entry and entries still open at the end. Timestamps are
microseconds since ``t0`` (the first event unless given).

Example::

    with open("out.json", "w") as f:
        w = PerfettoWriter(f, PairRules.from_probes([("u:/bin/bash:readline", "uprobe"),
                                                     ("ur:/bin/bash:readline", "uretprobe")]))
        for ev in events:
            w.write(ev)
        stats = w.close()
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from ..analyze.stacks import frame_text
from ..decode.escape import has_surrogates, to_json_key
from ..event import Event, _jsonable

__all__ = ["PairRules", "PerfettoWriter", "ExportStats", "check_trace_events"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _readable(v: Any) -> Any:
    """Strings with undecodable bytes as text the viewer can show (\\xNN escapes)."""
    if isinstance(v, str):
        return to_json_key(v) if has_surrogates(v) else v
    if isinstance(v, dict):
        return {_readable(k): _readable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_readable(x) for x in v]
    return v


def _dumps(obj: Any) -> str:
    text = _encode(obj)
    return text if text.isascii() or not has_surrogates(text) else _encode(_readable(obj))
_SUFFIX = re.compile(r"_\d+$")

ENTER, EXIT, RAW_ENTER, RAW_EXIT = 1, 2, 3, 4
_ENTRY_KINDS = {"uprobe": ("uretprobe", "u"), "kprobe": ("kretprobe", "k")}
_RET_KINDS = {"uretprobe": "u", "kretprobe": "k"}

Rule = tuple[int, tuple[Any, ...], str] | None
#: open slices kept per thread; deeper, the oldest entry becomes an instant
MAX_DEPTH = 512


@dataclass
class ExportStats:
    events: int = 0
    instants: int = 0
    slices: int = 0
    unmatched: int = 0
    threads: int = 0
    processes: int = 0


def _fields(ev: Event) -> dict[str, Any]:
    out = {k: _jsonable(v) for k, v in ev.fields.items()}
    st = out.get("stack")
    if isinstance(st, list):  # frames as lines the viewer shows: "func+0x1c (file)"
        out["stack"] = [frame_text(f) if isinstance(f, dict) else str(f) for f in st]
    return out


ProbeWhere = tuple[str | None, str | None, str | None, int]


class PairRules:
    """Decides which events open and close slices.

    ``probes`` maps a probe spec, ``events`` an event name ("group:name", taking
    precedence), to ``(kind, target, symbol, offset)``: only entry probes at offset 0
    pair with the return probes of the same target and symbol. Without ``events`` the
    function is the event name less its ``_N`` suffix (how probewatch names them).
    """

    def __init__(self, probes: Mapping[str, ProbeWhere] | None = None,
                 events: Mapping[str, ProbeWhere] | None = None,
                 present: Iterable[tuple[str, str]] | None = None) -> None:
        self.probes = dict(probes or {})
        self.events = dict(events or {})
        self._cache: dict[tuple[str, str], Rule] = {}
        if present is not None:
            # (event, probe) pairs that occur: an entry whose exit never occurs stays an
            # instant (e.g. sys_enter_X recorded without sys_exit_X)
            present = list(present)
            rules = {k: self._classify(*k) for k in present}
            exits = {r[1] for r in rules.values() if r and r[0] in (EXIT, RAW_EXIT)}
            for k, r in rules.items():
                if r and r[0] in (ENTER, RAW_ENTER) and r[1] not in exits:
                    r = None
                self._cache[k] = r

    @classmethod
    def from_probes(cls, specs: Iterable[tuple[str, str | None]]) -> PairRules:
        """From (spec, kind) pairs; target/symbol/offset come from parsing the spec."""
        from ..errors import SpecError
        from ..sources.spec import parse_spec

        out: dict[str, tuple[str | None, str | None, str | None, int]] = {}
        for spec, kind in specs:
            try:
                ps = parse_spec(spec)
            except SpecError:
                out[spec] = (kind, None, None, 0)
                continue
            off = ps.offset if ps.address is None else -1
            out[spec] = (kind or ps.kind, ps.target, ps.symbol, off)
        return cls(out)

    def rule(self, ev: Event) -> Rule:
        key = (ev.event, ev.probe)
        try:
            return self._cache[key]
        except KeyError:
            r = self._cache[key] = self._classify(ev.event, ev.probe)
            return r

    def _classify(self, event: str, probe: str) -> Rule:
        system, _, name = event.partition(":")
        if system == "syscalls":
            if name.startswith("sys_enter_"):
                return ENTER, ("sys", name[10:]), name[10:]
            if name.startswith("sys_exit_"):
                return EXIT, ("sys", name[9:]), name[9:]
        if system == "raw_syscalls":
            if name == "sys_enter":
                return RAW_ENTER, ("raw",), "syscall"
            if name == "sys_exit":
                return RAW_EXIT, ("raw",), "syscall"
        exact = self.events.get(event)
        info = exact or self.probes.get(probe)
        if info is None:
            return None
        kind, target, symbol, offset = info
        # the function: exactly known per event, else from probewatch's event naming
        func = symbol if (exact and symbol) else _SUFFIX.sub("", name)
        label = symbol if (exact and symbol) else (func if symbol is None or
                                                   any(c in symbol for c in "*?[") else symbol)
        if kind in _ENTRY_KINDS and offset == 0:
            return ENTER, (_ENTRY_KINDS[kind][1], target, func), label
        if kind in _RET_KINDS:
            return EXIT, (_RET_KINDS[kind], target, func), label
        return None


class PerfettoWriter:
    """Streams Events into a trace-event JSON document on ``out``."""

    def __init__(
        self,
        out: IO[str],
        rules: PairRules | None = None,
        t0: int | None = None,
        process_names: Mapping[int, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.out = out
        self.rules = rules or PairRules()
        self.t0 = t0
        self.process_names = dict(process_names or {})
        self.metadata = dict(metadata or {})
        self.stats = ExportStats()
        self._stacks: dict[int, list[tuple[tuple[Any, ...], Event, str]]] = {}
        self._thread_comm: dict[int, str] = {}
        self._thread_pid: dict[int, int] = {}
        self._proc_comm: dict[int, str] = {}
        self._first = True
        self._closed = False
        #: stackFrames: (parent id, name, category) -> id, outermost frames first
        self._frame_ids: dict[tuple[str | None, str, str], str] = {}
        out.write('{"traceEvents":[\n')

    def _emit(self, obj: dict[str, Any]) -> None:
        if self._first:
            self._first = False
            self.out.write(_dumps(obj))
        else:
            self.out.write(",\n" + _dumps(obj))

    def _us(self, ts: int) -> float:
        if self.t0 is None:
            self.t0 = ts
        return round((ts - self.t0) / 1000.0, 3)

    def _sf(self, ev: Event, obj: dict[str, Any]) -> dict[str, Any]:
        """Add ``sf`` (the innermost frame's id in stackFrames) for an event's stack."""
        st = ev.fields.get("stack")
        if not isinstance(st, list) or not st:
            return obj
        ids = self._frame_ids
        parent: str | None = None
        for f in reversed(st):
            if isinstance(f, dict):
                name = (f"{f['symbol']}+0x{f.get('offset') or 0:x}" if f.get("symbol")
                        else f"0x{f.get('addr') or 0:x}")
                cat = str(f.get("module") or "unknown")
            else:
                name, cat = str(f), "unknown"
            key = (parent, name, cat)
            fid = ids.get(key)
            if fid is None:
                fid = ids[key] = str(len(ids) + 1)
            parent = fid
        obj["sf"] = parent
        return obj

    def _instant(self, ev: Event) -> None:
        self.stats.instants += 1
        name = ev.event
        if name == "ftrace:print" and ev.fields.get("mark"):
            name = str(ev.fields["mark"])
        self._emit(self._sf(ev, {
            "name": name, "cat": ev.event.partition(":")[0] or "event", "ph": "i",
            "s": "t", "ts": self._us(ev.ts), "pid": ev.pid, "tid": ev.tid,
            "args": {"probe": ev.probe, "cpu": ev.cpu, **_fields(ev)},
        }))

    def _slice(self, enter: Event, exit_: Event, name: str) -> None:
        self.stats.slices += 1
        ts = self._us(enter.ts)
        dur = max(0.0, round((exit_.ts - enter.ts) / 1000.0, 3))
        self._emit(self._sf(enter, {
            "name": name, "cat": enter.event.partition(":")[0] or "event", "ph": "X",
            "ts": ts, "dur": dur, "pid": enter.pid, "tid": enter.tid,
            "args": {"probe": enter.probe, "enter": _fields(enter), "exit": _fields(exit_)},
        }))

    def write(self, ev: Event) -> None:
        """Add one event (events must come in time order)."""
        self.stats.events += 1
        tid = ev.tid
        self._thread_comm[tid] = ev.comm
        self._thread_pid[tid] = ev.pid
        if ev.pid == tid or ev.pid not in self._proc_comm:
            self._proc_comm[ev.pid] = ev.comm
        if self.t0 is None:
            self.t0 = ev.ts
        r = self.rules.rule(ev)
        if ev.event == "ftrace:print":  # a mark: its phase says begin / end / instant
            ph, mname = ev.fields.get("phase"), ev.fields.get("mark")
            r = ((ENTER if ph == "B" else EXIT), ("mark", mname), str(mname)) if (
                mname and ph in ("B", "E")) else None
        if r is None:
            self._instant(ev)
            return
        role, key, name = r
        if role in (RAW_ENTER, RAW_EXIT):
            sid = ev.fields.get("id")
            key = ("raw", sid)
            name = f"syscall_{sid}"
            role = ENTER if role == RAW_ENTER else EXIT
        stack = self._stacks.setdefault(tid, [])
        if role == ENTER:
            if len(stack) >= MAX_DEPTH:  # exits that never come: don't hoard entries
                self.stats.unmatched += 1
                self._instant(stack.pop(0)[1])
            stack.append((key, ev, name))
            return
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == key:
                for _, open_ev, _ in stack[i + 1 :]:  # entries whose exit was lost
                    self.stats.unmatched += 1
                    self._instant(open_ev)
                _, enter, nm = stack[i]
                del stack[i:]
                self._slice(enter, ev, nm)
                return
        self.stats.unmatched += 1
        self._instant(ev)

    def close(self, extra_metadata: Mapping[str, Any] | None = None) -> ExportStats:
        """Flush open entries as instants, write the track names and end the document."""
        if self._closed:
            return self.stats
        self._closed = True
        for stack in self._stacks.values():
            for _, open_ev, _ in stack:
                self.stats.unmatched += 1
                self._instant(open_ev)
        self._stacks.clear()
        pids = sorted(set(self._thread_pid.values()))
        for pid in pids:
            name = self.process_names.get(pid) or self._proc_comm.get(pid) or str(pid)
            self._emit({"name": "process_name", "ph": "M", "ts": 0, "pid": pid, "tid": pid,
                        "args": {"name": name}})
        for tid, comm in sorted(self._thread_comm.items()):
            self._emit({"name": "thread_name", "ph": "M", "ts": 0,
                        "pid": self._thread_pid[tid], "tid": tid, "args": {"name": comm}})
        self.stats.threads = len(self._thread_comm)
        self.stats.processes = len(pids)
        meta = {**self.metadata, **(extra_metadata or {}), "t0_ns": self.t0}
        flat = {f"probewatch_{k}": v if isinstance(v, str) else _dumps(v)
                for k, v in meta.items()}
        frames = ""
        if self._frame_ids:
            sf = {}
            for (parent, name, cat), fid in self._frame_ids.items():
                node: dict[str, Any] = {"name": name, "category": cat}
                if parent is not None:
                    node["parent"] = parent
                sf[fid] = node
            frames = ',"stackFrames":' + _dumps(sf)
        self.out.write('\n]' + frames + ',"displayTimeUnit":"ns","otherData":' + _dumps(flat)
                       + "}\n")
        return self.stats


PHASES = frozenset({"X", "i", "I", "M", "B", "E"})


def check_trace_events(doc: Any) -> dict[int, list[dict[str, Any]]]:
    """Check a trace-event document the way an importer needs it; raise ValueError.

    Every event has ``ph``, ``ts``, ``pid``, ``tid`` and ``name`` of the right types,
    complete slices have a ``dur`` >= 0 and nest on every thread, every thread and
    process that has events is named by a metadata event. Returns the complete slices
    per tid.

    Example::

        slices = check_trace_events(json.load(open("out.json")))
    """

    def need(ok: bool, what: str, e: Any) -> None:
        if not ok:
            raise ValueError(f"{what}: {e!r}")

    need(isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list),
         "not a trace-event document", type(doc))
    evs = doc["traceEvents"]
    frames = doc.get("stackFrames", {})
    need(isinstance(frames, dict), "stackFrames is not an object", type(frames))
    for fid, node in frames.items():
        need(isinstance(node, dict) and isinstance(node.get("name"), str), "bad frame", node)
        need(node.get("parent") is None or node["parent"] in frames,
             f"frame {fid} has an unknown parent", node)
    slices: dict[int, list[dict[str, Any]]] = defaultdict(list)
    named_threads: set[int] = set()
    named_procs: set[int] = set()
    for e in evs:
        need(isinstance(e, dict), "event is not an object", e)
        for k in ("ph", "ts", "pid", "tid", "name"):
            need(k in e, f"event without {k}", e)
        need(e["ph"] in PHASES, "unknown phase", e)
        need(isinstance(e["pid"], int) and isinstance(e["tid"], int), "pid/tid not ints", e)
        need(isinstance(e["ts"], int | float) and e["ts"] >= 0, "bad ts", e)
        need(isinstance(e["name"], str) and bool(e["name"]), "bad name", e)
        need(isinstance(e.get("args", {}), dict), "args is not an object", e)
        need("sf" not in e or e["sf"] in frames, "sf names no stackFrames entry", e)
        if e["ph"] == "X":
            need(isinstance(e.get("dur"), int | float) and e["dur"] >= 0, "bad dur", e)
            slices[e["tid"]].append(e)
        elif e["ph"] in ("i", "I"):
            need(e.get("s", "t") in ("t", "p", "g"), "bad instant scope", e)
        elif e["ph"] == "M":
            need(e["name"] in ("process_name", "thread_name", "process_sort_index",
                               "thread_sort_index", "process_labels"), "unknown metadata", e)
            if e["name"] == "thread_name":
                named_threads.add(e["tid"])
            elif e["name"] == "process_name":
                named_procs.add(e["pid"])
            need(isinstance(e.get("args", {}).get("name", ""), str), "bad metadata name", e)
    for e in evs:
        if e["ph"] != "M":
            need(e["tid"] in named_threads, "thread without thread_name", e)
            need(e["pid"] in named_procs, "process without process_name", e)
    eps = 1e-6
    for tid, ss in slices.items():
        stack: list[tuple[float, float]] = []
        for sl in sorted(ss, key=lambda x: (x["ts"], -x["dur"])):
            start, end = sl["ts"], sl["ts"] + sl["dur"]
            while stack and start >= stack[-1][1] - eps:
                stack.pop()
            need(not stack or end <= stack[-1][1] + eps,
                 f"slice overlaps its parent on thread {tid}", sl)
            stack.append((start, end))
    return dict(slices)
