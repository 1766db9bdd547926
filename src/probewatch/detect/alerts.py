"""Alerts: a rule match with its process context and ancestry, rendered safely.

An :class:`Alert` is what ``probewatch watch`` reports: the rule (id, title, level,
ATT&CK techniques, description), the acting process (pid, ppid, image, command line,
user, cwd, container), its ancestry up to pid 1, the value(s) that matched, the
Sigma event(s) behind it and the raw probewatch Events behind those.

Repeats of the same rule on the same process within a window (default 60 s of event
time) collapse into one: :class:`Collapser` lets the first through at once and
reports the count when the window closes (or at the end of the run) as a second
record of kind ``"repeat"`` carrying the same alert ``id``.

Rendering:

* text (:func:`alert_line`): one line per alert, every attacker-controlled string
  escaped by :func:`esc`, which is the one text escape of every probewatch command
  (:func:`probewatch.decode.escape.escape_text`: newlines and other control characters,
  terminal escape sequences and undecodable bytes as ``\\n`` / ``\\xNN``,
  bidirectional overrides and other non-printable characters as ``\\uXXXX``, a
  backslash doubled), so a command line can neither forge a second alert line nor
  drive the terminal. The ``"lineage"`` member of the JSON is this text too.
* JSON (:func:`alert_json`): one object per line in probewatch's one JSON scheme
  (:mod:`probewatch.decode.escape`, the same encoder as ``trace --json``): always
  valid UTF-8 JSON; a string that is valid UTF-8 stays a JSON string, one that holds
  undecodable bytes (probewatch keeps them as surrogate escapes, PEP 383) becomes the
  object ``{"b64": "<base64 of its raw bytes>"}`` wherever it stands (process image,
  command line, argv entries, cwd, environment values, matched values, event fields,
  ancestry names). :func:`probewatch.decode.escape.from_json` gives back the exact
  strings, :func:`probewatch.decode.escape.json_bytes` the raw bytes of one value;
  :func:`alert_from_dict` an :class:`Alert`.

Example::

    c = Collapser(window_s=60)
    for alert in alerts:
        for out in c.add(alert):
            print(alert_line(out))
    for out in c.flush():
        print(alert_line(out))
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..decode.escape import escape_text, from_json, obj_json, to_json

__all__ = [
    "Alert",
    "Collapser",
    "alert_from_match",
    "alert_line",
    "alert_json",
    "alert_dict",
    "ancestry_text",
    "esc",
    "jsonable",
    "alert_from_dict",
    "matched_values",
    "PROCESS_KEYS",
]

#: the process context of an alert, from the Sigma fields of the matching event
PROCESS_KEYS = {
    "pid": "ProcessId",
    "ppid": "ParentProcessId",
    "image": "Image",
    "command_line": "CommandLine",
    "comm": "Comm",
    "user": "User",
    "uid": "Uid",
    "euid": "Euid",
    "gid": "Gid",
    "egid": "Egid",
    "login_uid": "LogonId",
    "cwd": "CurrentDirectory",
    "container": "ContainerId",
    "parent_image": "ParentImage",
    "parent_command_line": "ParentCommandLine",
}

#: per logsource kind, the fields shown as "the matching value" when the rule does not
#: say which fields it tests
_SALIENT = {
    "process_creation": ("CommandLine", "Image"),
    "file_event": ("TargetFilename", "Operation"),
    "network_connection": ("DestinationIp", "DestinationPort"),
    "syscall": ("Syscall", "TargetFilename"),
    "auditd": ("type", "SYSCALL", "name"),
}

_ids = itertools.count(1)


@dataclass
class Alert:
    """One alert. ``ts``/``last_ts``: event clock (ns, CLOCK_MONOTONIC);
    ``time``: wall clock (seconds since the epoch) of ``ts``.

    ``ancestry``: ``[(pid, name), ...]`` from the oldest known ancestor (pid 1 when
    the lineage is complete) down to the process itself. ``events``: the Sigma events
    that matched (``{"kind", "ts", "pid", "fields"}``); ``raw``: the probewatch
    Events behind them (not rendered in text; in JSON under ``"raw_events"``).
    """

    ts: int
    time: float
    level: str
    rule_id: str
    title: str
    techniques: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str = ""
    rule_path: str | None = None
    process: dict[str, Any] = field(default_factory=dict)
    ancestry: list[tuple[int, str]] = field(default_factory=list)
    matched: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)
    group: Any = None
    count: int = 1
    last_ts: int = 0
    kind: str = "alert"  # "alert" (first sight) or "repeat" (a collapsed window closed)
    id: int = 0

    def __post_init__(self) -> None:
        if not self.last_ts:
            self.last_ts = self.ts
        if not self.id:
            self.id = next(_ids)

    @property
    def pid(self) -> int:
        v = self.process.get("pid")
        return v if isinstance(v, int) else 0

    @property
    def key(self) -> tuple[str, int]:
        """What makes two alerts repeats of each other: the rule and the process."""
        return self.rule_id, self.pid


# ------------------------------------------------------------------ building


def _techniques(rule: Any) -> list[str]:
    t = getattr(rule, "techniques", None)
    if t:
        return [str(x) for x in t]
    out = []
    for tag in getattr(rule, "tags", None) or ():
        s = str(tag)
        if s.lower().startswith("attack.t") and s[8:9].isdigit():
            out.append(s[7:].upper())
    return out


def matched_values(rule: Any, events: Sequence[Any]) -> dict[str, Any]:
    """The values behind a match: the fields the rule tests (``rule.fields`` when the
    compiled rule lists them), else the salient fields of the event's kind."""
    if not events:
        return {}
    ev = events[-1]
    fields: Mapping[str, Any] = getattr(ev, "fields", None) or {}
    names = list(getattr(rule, "fields", None) or ())
    out: dict[str, Any] = {}
    for n in names:
        if n in fields and fields[n] is not None:
            out[n] = fields[n]
    if not out:
        for n in _SALIENT.get(getattr(ev, "kind", ""), ("CommandLine", "Image")):
            if fields.get(n) is not None:
                out[n] = fields[n]
    return out


def _sigma_event_dict(ev: Any) -> dict[str, Any]:
    return {"kind": getattr(ev, "kind", None), "ts": getattr(ev, "ts", None),
            "pid": getattr(ev, "pid", None), "fields": dict(getattr(ev, "fields", {}) or {})}


def _raw_events(events: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set[int] = set()
    for ev in events:
        src = getattr(ev, "source", None)
        if src is None:
            continue
        for r in (src if isinstance(src, list | tuple) else [src]):
            if id(r) not in seen:
                seen.add(id(r))
                out.append(r)
    return out


def _name_of(image: Any, comm: Any) -> str:
    if isinstance(image, str) and image:
        return image.rsplit("/", 1)[-1] or image
    return str(comm or "?")


def lineage(table: Any, pid: int, limit: int = 64) -> list[tuple[int, str]]:
    """``[(pid, name), ...]`` from the oldest known ancestor down to ``pid``.

    ``table``: a process table with ``ancestry(pid)`` (records, self first) or
    ``get(pid)`` (a record with ``ppid`` and ``exe``/``comm``), or None."""
    if table is None or not pid:
        return []
    recs: list[Any] = []
    anc = getattr(table, "ancestry", None)
    if anc is not None:
        try:
            recs = list(anc(pid))
        except Exception:
            recs = []
    else:
        get = getattr(table, "get", None)
        cur, seen = pid, set()
        while get is not None and cur and cur not in seen and len(recs) < limit:
            seen.add(cur)
            rec = get(cur)
            if rec is None:
                break
            recs.append(rec)
            cur = getattr(rec, "ppid", 0) or 0
    out = []
    for r in recs[:limit]:
        if isinstance(r, tuple):
            out.append((int(r[0]), str(r[1])))
            continue
        image = getattr(r, "exe", None) or getattr(r, "image", None)
        out.append((int(getattr(r, "pid", 0)), _name_of(image, getattr(r, "comm", None))))
    out.reverse()
    return out


def alert_from_match(match: Any, table: Any = None, wall_offset_ns: int | None = None) -> Alert:
    """An Alert from an engine Match (docs/detection.md): process context from the
    Sigma fields of its last event, ancestry from the process table.

    ``wall_offset_ns``: wall clock minus the event clock (``time.time_ns() -
    time.monotonic_ns()`` live; from the capture's run for a replay)."""
    rule = match.rule
    events = list(getattr(match, "events", None) or [])
    last = events[-1] if events else None
    fields: Mapping[str, Any] = getattr(last, "fields", None) or {}
    ts = int(getattr(events[0], "ts", 0)) if events else 0
    last_ts = int(getattr(last, "ts", 0)) if last is not None else 0
    pid = int(getattr(last, "pid", 0) or fields.get("ProcessId") or 0)
    proc: dict[str, Any] = {}
    for k, f in PROCESS_KEYS.items():
        v = fields.get(f)
        if v is not None:
            proc[k] = v
    proc["pid"] = pid
    if wall_offset_ns is None:
        wall_offset_ns = time.time_ns() - time.monotonic_ns()
    anc = lineage(table, pid)
    if not anc and pid:
        anc = [(pid, _name_of(proc.get("image"), proc.get("comm")))]
    return Alert(
        ts=ts,
        last_ts=last_ts or ts,
        time=(ts + wall_offset_ns) / 1e9,
        level=str(getattr(rule, "level", None) or "informational"),
        rule_id=str(getattr(rule, "id", "") or getattr(rule, "title", "")),
        title=str(getattr(rule, "title", "") or ""),
        techniques=_techniques(rule),
        tags=[str(t) for t in getattr(rule, "tags", None) or ()],
        description=str(getattr(rule, "description", "") or ""),
        rule_path=str(p) if (p := getattr(rule, "path", None)) else None,
        process=proc,
        ancestry=anc,
        matched=matched_values(rule, events),
        events=[_sigma_event_dict(e) for e in events],
        raw=_raw_events(events),
        group=getattr(match, "group", None),
        count=int(getattr(match, "count", 1) or 1),
    )


# ------------------------------------------------------------------ collapsing


class Collapser:
    """Collapse repeats: same rule, same process, within ``window_s`` of the first.

    :meth:`add` returns what to emit now: the alert itself when it opens a window
    (plus the repeat reports of windows its timestamp closed), nothing when it is a
    repeat. :meth:`expire` closes windows older than a time, :meth:`flush` all of
    them. A closed window that repeats were folded into is reported as a copy of its first
    alert with ``kind="repeat"``, the total ``count`` and the ``last_ts`` of the last
    repeat. At most ``max_open`` windows are kept (the oldest is closed first).
    """

    def __init__(self, window_s: float = 60.0, max_open: int = 10_000) -> None:
        self.window_ns = int(window_s * 1e9)
        self.max_open = max_open
        self._open: dict[tuple[str, int], Alert] = {}
        self._folded: dict[tuple[str, int], int] = {}  # repeats folded into each window
        self.collapsed = 0  # alerts folded into a window

    def __len__(self) -> int:
        return len(self._open)

    def add(self, alert: Alert) -> list[Alert]:
        out = self.expire(alert.ts) if self.window_ns > 0 else []
        if self.window_ns <= 0:
            out.append(alert)
            return out
        key = alert.key
        cur = self._open.get(key)
        if cur is not None:
            cur.count += alert.count
            cur.last_ts = max(cur.last_ts, alert.last_ts)
            self._folded[key] = self._folded.get(key, 0) + 1
            self.collapsed += 1
            return out
        if len(self._open) >= self.max_open:
            oldest = next(iter(self._open))
            out.extend(self._close(oldest))
        self._open[key] = alert
        out.append(alert)
        return out

    def _close(self, key: tuple[str, int]) -> list[Alert]:
        a = self._open.pop(key)
        if not self._folded.pop(key, 0):
            # nothing was folded into it (a correlation's count is its own events,
            # already in the alert as printed): no repeat report
            return []
        rep = copy.copy(a)
        rep.kind = "repeat"
        return [rep]

    def expire(self, now_ts: int) -> list[Alert]:
        """Close the windows that began ``window_s`` or more before ``now_ts`` (ns)."""
        out: list[Alert] = []
        limit = now_ts - self.window_ns
        opened = self._open
        # windows are opened in time order (dict keeps insertion order): look at the
        # oldest ones only
        while opened:
            key = next(iter(opened))
            if opened[key].ts > limit:
                break
            out.extend(self._close(key))
        return out

    def flush(self) -> list[Alert]:
        """Close every window (end of the run)."""
        out: list[Alert] = []
        for key in list(self._open):
            out.extend(self._close(key))
        return out


# ------------------------------------------------------------------ text


def esc(s: Any) -> str:
    """A string safe to print on one terminal line: the project's one text escape,
    :func:`probewatch.decode.escape.escape_text` (``\\n``, ``\\xNN`` for control
    characters and undecodable bytes, ``\\uNNNN`` for other non-printable characters,
    a backslash doubled), on ``str(s)`` when ``s`` is not a string.

    >>> esc("a\\nb\\x1b[31m")
    'a\\\\nb\\\\x1b[31m'
    """
    return escape_text(s if isinstance(s, str) else str(s))


def _val(v: Any) -> str:
    if isinstance(v, list | tuple):
        s = " ".join(str(x) for x in v)
    elif isinstance(v, bool):
        s = "true" if v else "false"
    else:
        s = str(v)
    e = esc(s)
    if not e or " " in e or '"' in e:
        e = '"' + e.replace('"', '\\"') + '"'
    return e


def ancestry_text(ancestry: Sequence[tuple[int, str]]) -> str:
    """``sshd(812) > bash(4410) > python3(4502)`` (names escaped)."""
    return " > ".join(f"{esc(name)}({pid})" for pid, name in ancestry) or "?"


def _clock(t: float) -> str:
    lt = time.localtime(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + f".{int((t % 1) * 1000):03d}"


def alert_line(a: Alert) -> str:
    """One line (no newline): time, level, title, techniques, ancestry, matched values.

    A repeat report ends ``(repeated N times in S s)``.
    """
    # everything but the clock and the numbers comes from a rule file or the traced
    # processes: escaped
    techs = esc(",".join(a.techniques)) or "-"
    anc = ancestry_text(a.ancestry)
    vals = " ".join(f"{esc(k)}={_val(v)}" for k, v in a.matched.items())
    line = f"{_clock(a.time)} {esc(a.level.upper()):8} {esc(a.title)} [{techs}] {anc}"
    if vals:
        line += ": " + vals
    if a.kind == "repeat":
        span = max(0.0, (a.last_ts - a.ts) / 1e9)
        line += f" (repeated {a.count} times in {span:.1f} s)"
    elif a.count > 1:
        line += f" (x{a.count})"
    return line


# ------------------------------------------------------------------ JSON


_PRIMITIVE = (str, int, float, bool, type(None), bytes, bytearray)


def _plain(v: Any) -> Any:
    """``v`` made of dicts, lists and primitives only (sets become lists, objects their
    ``to_dict()`` or ``str``), for :func:`probewatch.decode.escape.to_json`."""
    if isinstance(v, _PRIMITIVE):
        return v
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, set | frozenset):
        try:
            return [_plain(x) for x in sorted(v)]
        except TypeError:
            return [_plain(x) for x in v]
    if isinstance(v, memoryview):
        return bytes(v)
    to_dict = getattr(v, "to_dict", None)
    if callable(to_dict):
        return _plain(to_dict())
    return str(v)


def jsonable(v: Any) -> Any:
    """A JSON-ready copy of ``v`` in probewatch's JSON scheme: strings holding
    undecodable bytes become ``{"b64": ...}`` (:func:`probewatch.decode.escape.to_json`),
    bytes lists of ints, tuples and sets lists, other objects their ``to_dict()`` or
    ``str``.

    >>> jsonable({"Image": "/tmp/\\udcff", "Argv": ("a", "b")})
    {'Image': {'b64': 'L3RtcC//'}, 'Argv': ['a', 'b']}
    """
    return to_json(_plain(v))


def _raw_dict(ev: Any) -> Any:
    """A raw Event as ``trace --json`` writes it (bytes as lists of ints)."""
    to_dict = getattr(ev, "to_dict", None)
    return to_dict() if callable(to_dict) else ev


def alert_dict(a: Alert, raw: bool = True) -> dict[str, Any]:
    """The JSON object of an alert, strings as they are (:func:`alert_json` encodes it)."""
    d: dict[str, Any] = {
        "type": a.kind,
        "id": a.id,
        "time": _iso(a.time),
        "ts": a.ts,
        "last_ts": a.last_ts,
        "count": a.count,
        "level": a.level,
        "rule": {"id": a.rule_id, "title": a.title, "techniques": list(a.techniques),
                 "tags": list(a.tags), "description": a.description, "path": a.rule_path},
        "process": dict(a.process),
        "ancestry": [{"pid": p, "name": n} for p, n in a.ancestry],
        "lineage": ancestry_text(a.ancestry),
        "matched": dict(a.matched),
        "events": list(a.events),
    }
    if a.group is not None:
        d["group"] = a.group
    if raw:
        d["raw_events"] = [_raw_dict(e) for e in a.raw]
    return d


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def alert_json(a: Alert, raw: bool = True) -> str:
    """One line of JSON (no newline), always valid UTF-8, lossless (see the module
    docs): the encoder of every ``--json`` (:func:`probewatch.decode.escape.obj_json`).

    >>> alert_json(a)                                       # doctest: +SKIP
    '{"type":"alert",...,"matched":{"TargetFilename":{"b64":"L3RtcC//"}},...}'
    """
    return obj_json(_plain(alert_dict(a, raw)))


def iter_lines(alerts: Iterable[Alert], as_json: bool) -> Iterator[str]:
    for a in alerts:
        yield alert_json(a) if as_json else alert_line(a)


def alert_from_dict(obj: Mapping[str, Any]) -> Alert:
    """An Alert back from its parsed JSON object (as :func:`alert_json` wrote it, or
    already decoded by :func:`probewatch.decode.escape.from_json`): the exact strings
    again. Raw events stay dicts.

    >>> alert_from_dict(json.loads(alert_json(a))).matched == a.matched  # doctest: +SKIP
    True
    """
    import datetime

    obj = from_json(obj)
    rule = obj.get("rule") or {}
    t = obj.get("time")
    wall = 0.0
    if isinstance(t, str):
        try:
            wall = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.UTC).timestamp()
        except ValueError:
            wall = 0.0
    elif isinstance(t, int | float):
        wall = float(t)
    return Alert(
        ts=int(obj.get("ts") or 0),
        last_ts=int(obj.get("last_ts") or obj.get("ts") or 0),
        time=wall,
        level=str(obj.get("level") or "informational"),
        rule_id=str(rule.get("id") or ""),
        title=str(rule.get("title") or ""),
        techniques=list(rule.get("techniques") or []),
        tags=list(rule.get("tags") or []),
        description=str(rule.get("description") or ""),
        rule_path=rule.get("path"),
        process=dict(obj.get("process") or {}),
        ancestry=[(int(x.get("pid", 0)), str(x.get("name", "?")))
                  for x in obj.get("ancestry") or []],
        matched=dict(obj.get("matched") or {}),
        events=list(obj.get("events") or []),
        raw=list(obj.get("raw_events") or []),
        group=obj.get("group"),
        count=int(obj.get("count") or 1),
        kind=str(obj.get("type") or "alert"),
        id=int(obj.get("id") or 0) or next(_ids),
    )
