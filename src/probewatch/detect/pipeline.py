"""The watch pipeline: raw Events -> process table -> mapper -> engine -> alerts.

One :class:`Detector` runs the chain of docs/detection.md over a stream of
probewatch Events, live or from a capture::

    Event -> ProcessTable.on_event -> Mapper.map -> Engine.process -> Alert -> Collapser

The Detector hands the engine to the mapper (``Mapper.use_engine``): a syscall no loaded
rule names makes no ``syscall`` event, and the others are made with only the fields
their candidate rules read (an engine ``Partial``), the full event being built only on a
match — the same alerts, at a fraction of the per-event cost.

The engine never stops on a rule error (it counts them per rule); an error in the
mapper is counted too and the event skipped. :func:`live_events` opens the event
source: the BPF ``syscalls`` program with lifecycle events for the syscalls the
mapper needs, or, where BPF is missing, the tracefs ``sched`` and ``syscalls``
tracepoints turned into the same Events (then syscall string arguments, the exec's
argv/cwd/environment and uid/gid are unavailable, and :func:`fallback_message` says
so once). :func:`replay_events` reads a capture written by ``watch -o`` or ``record
--watch`` and seeds the process table from its snapshot, so a replay gives the same
alerts as the live run.

Example::

    rules = RuleSet.load([Path("my-rules/")], default=True)
    with live_events(command=["sh", "-c", "cat /etc/shadow"], rules=rules) as src:
        table = new_table()
        seed_table(table)                # every live process, from /proc
        det = Detector(Engine(rules), table=table, emit=lambda a: print(alert_line(a)))
        for ev in src.events():
            det.feed(ev)
        print(det.finish().line())       # events, alerts, lost, rule errors
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProbewatchError
from ..event import Event
from .alerts import Alert, Collapser, alert_from_match, alert_json, ancestry_text, jsonable

__all__ = [
    "Detector",
    "WatchStats",
    "LiveSource",
    "live_events",
    "replay_events",
    "alert_row",
    "needed_syscalls",
    "fallback_message",
    "FALLBACK_FIELDS",
    "FORCE_ENV",
    "Replay",
    "TracefsAdapter",
    "new_table",
    "new_mapper",
    "seed_table",
    "table_snapshot",
    "restore_table",
]

#: collapse windows open at most (see Detector)
COLLAPSE_MAX_OPEN = 2048
#: groups per correlation rule at most (each keeps up to 16 events): watch's bound
CORRELATION_MAX_GROUPS = 2048

#: set to ``ftrace`` to make watch run on tracefs events even where BPF works
FORCE_ENV = "PROBEWATCH_WATCH_BACKEND"

#: what the tracefs fallback cannot give (the syscall tracepoints carry pointers,
#: not the strings they point to; there is no exec info program)
FALLBACK_FIELDS = (
    "TargetFilename", "SourceFilename", "CommandLine", "Argv0", "OriginalArgv0",
    "CurrentDirectory", "User", "Uid", "Euid", "Gid", "Egid", "LogonId", "ContainerId",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "BASH_ENV", "HISTFILE",
    "HISTSIZE", "HISTFILESIZE", "PROMPT_COMMAND", "SSH_CONNECTION", "DestinationIp",
    "DestinationPort", "name", "a0", "a1", "a2", "exe", "uid", "euid", "auid",
)


# ------------------------------------------------------------------ the chain


@dataclass
class WatchStats:
    """What a watch run saw (the summary)."""

    backend: str = "bpf"
    events: int = 0           # raw Events consumed
    sigma_events: int = 0     # Sigma events the mapper made of them
    matches: int = 0          # engine matches
    alerts: int = 0           # alerts reported (first sight)
    collapsed: int = 0        # repeats folded into an alert
    lost: int = 0             # events the kernel dropped
    dropped_processes: int = 0  # exited records dropped early by the table's bounds
    evicted_groups: int = 0   # correlation groups evicted by the bound on their number
    mapper_errors: int = 0
    rule_errors: dict[str, int] = field(default_factory=dict)
    rules: int = 0
    duration: float = 0.0
    per_rule: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["duration"] = round(self.duration, 6)
        return d

    def line(self) -> str:
        s = (f"watch: {self.events} events, {self.alerts} alerts"
             f" ({self.collapsed} repeats collapsed), lost {self.lost}")
        if self.rule_errors:
            s += ", rule errors: " + ", ".join(
                f"{k}={v}" for k, v in sorted(self.rule_errors.items()))
        if self.mapper_errors:
            s += f", mapper errors {self.mapper_errors}"
        if self.dropped_processes:
            s += f", {self.dropped_processes} exited processes forgotten early (table bound)"
        if self.evicted_groups:
            s += f", {self.evicted_groups} correlation groups evicted (bound)"
        return s + f", {self.rules} rules, {self.duration:.2f}s ({self.backend})"


#: where a replay's process table "reads /proc": nowhere (everything it may know is in
#: the capture's snapshot)
_NO_PROC = "/nonexistent/probewatch-replay-proc"


def new_table(*, replay: bool = False,
              on_lookup: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """A ProcessTable. ``replay``: one that never reads this machine's /proc.
    ``on_lookup``: called with the record of every process the table reads from /proc
    after the seed (a pid seen before its fork), so that a capture can store it too
    and its replay knows the same processes."""
    from ..analyze.proctable import ProcessTable

    if replay:
        return ProcessTable(proc_root=_NO_PROC)
    if on_lookup is None:
        return ProcessTable()
    hook = on_lookup

    class RecordingTable(ProcessTable):
        def get(self, pid: int, start: int = 0) -> Any:
            n = self.lookups
            p = super().get(pid, start)
            if p is not None and self.lookups != n:
                hook(p.to_dict())
            return p

    return RecordingTable()


def new_mapper(table: Any, rules: Any = None) -> Any:
    """The mapper for ``rules`` (a RuleSet): it produces only the kinds those rules
    look at (the table is kept current either way); None: every kind."""
    from .mapping import Mapper, rule_kinds

    return Mapper(table, kinds=rule_kinds(rules))


def seed_table(table: Any) -> None:
    """Fill the process table from /proc (every live process)."""
    for name in ("seed", "seed_from_proc", "load_proc"):
        f = getattr(table, name, None)
        if callable(f):
            f()
            return


def table_snapshot(table: Any) -> list[dict[str, Any]]:
    """The table's records as JSON-ready dicts (``pid`` and ``ppid`` in each)."""
    f = getattr(table, "snapshot", None)
    recs = f() if callable(f) else []
    out = []
    for r in recs:
        if dataclasses.is_dataclass(r) and not isinstance(r, type):
            r = dataclasses.asdict(r)
        elif not isinstance(r, dict):
            r = dict(getattr(r, "__dict__", {}))
        out.append(r)
    return out


def restore_table(table: Any, snap: Sequence[dict[str, Any]]) -> None:
    """Seed the table from a snapshot instead of /proc (replay)."""
    for name in ("restore", "load_snapshot", "from_snapshot_into"):
        f = getattr(table, name, None)
        if callable(f):
            f(list(snap))
            return
    raise ProbewatchError("this process table cannot be restored from a snapshot")


class Detector:
    """Feed raw Events; matches become Alerts, collapsed, handed to ``emit``.

    ``engine``: a detect.engine.Engine (None: no rules, only the table and capture);
    ``table``/``mapper``: default a fresh ProcessTable and a Mapper over it;
    ``wall_offset_ns``: wall clock minus event clock (default: now, live);
    ``writer``: a CaptureWriter that stores every raw Event and every alert;
    ``exporter``: a fleet Exporter that ships them too (probewatch watch --export).
    """

    def __init__(
        self,
        engine: Any,
        *,
        table: Any = None,
        mapper: Any = None,
        emit: Callable[[Alert], None] | None = None,
        window_s: float = 60.0,
        wall_offset_ns: int | None = None,
        writer: Any = None,
        exporter: Any = None,
    ) -> None:
        self.engine = engine
        self.table = table if table is not None else new_table()
        self.mapper = mapper if mapper is not None else (
            new_mapper(self.table, getattr(engine, "ruleset", None))
            if engine is not None else None)
        if engine is not None and self.mapper is not None:
            use = getattr(self.mapper, "use_engine", None)
            if use is not None:
                use(engine)  # make only what the rules can match
        self.emit = emit
        # each open window holds its whole first alert (process, events, raw events:
        # ~27 KB with 8 KiB command lines): 2048 of them, the oldest closed first (its
        # repeat count said early) when a storm of distinct alerts opens more
        self.collapser = Collapser(window_s, max_open=COLLAPSE_MAX_OPEN)
        self.wall_offset_ns = (time.time_ns() - time.monotonic_ns()
                               if wall_offset_ns is None else wall_offset_ns)
        self.writer = writer
        self.stats = WatchStats()
        self._last_ts = 0
        self._next_tick = 0
        self._on_event = self.table.on_event
        self._map = self.mapper.map if self.mapper is not None else None
        self._process = engine.process if engine is not None else None
        self._store = writer.add if writer is not None else None
        self.exporter = exporter
        if exporter is not None:
            self._store = _both(self._store, exporter.add)
        self._clock: threading.Thread | None = None
        self._clock_stop = threading.Event()
        self._lock = threading.Lock()

    def drop_writer(self) -> None:
        """Stop storing in the capture (it failed: a full disk) and go on detecting."""
        with self._lock:  # the clock thread stores alerts too
            self.writer = None
            self._store = self.exporter.add if self.exporter is not None else None

    def feed(self, ev: Event) -> None:
        st = self.stats
        st.events += 1
        if self._store is not None:
            self._store(ev)
        self._on_event(ev)
        ts = ev.ts
        if ts > self._last_ts:
            self._last_ts = ts
        if self._map is None:
            return
        try:
            sevs = self._map(ev)
        except Exception:  # noqa: BLE001 - one bad event must not stop watch
            st.mapper_errors += 1
            return
        if sevs:
            st.sigma_events += len(sevs)
            proc = self._process
            assert proc is not None
            for sev in sevs:
                for m in proc(sev):
                    self._match(m)
        if ts >= self._next_tick:
            self._next_tick = ts + 1_000_000_000
            self.tick(ts)

    def start_clock(self, margin_s: float = 2.0, every_s: float = 0.5) -> None:
        """Live runs: close collapse windows by the clock too, so that a repeat count
        is reported when its window ends even if no event follows. A window is closed
        ``margin_s`` after its end, when every event inside it has arrived from the
        ring buffer, so the alerts stay those a replay gives. From here on
        :meth:`feed` and the clock take turns (a lock)."""
        lock = self._lock
        unlocked = self.feed
        stop = threading.Event()
        margin = int(margin_s * 1e9)

        def feed(ev: Event) -> None:
            with lock:
                unlocked(ev)

        def run() -> None:
            while not stop.wait(every_s):
                with lock:
                    for a in self.collapser.expire(time.monotonic_ns() - margin):
                        self._out(a)

        self.feed = feed  # type: ignore[method-assign]
        self._clock_stop = stop
        self._clock = threading.Thread(target=run, name="probewatch-watch-clock",
                                       daemon=True)
        self._clock.start()

    def feed_sigma(self, sevs: list[Any]) -> None:
        """Sigma events made outside the mapper (``watch --audit``'s findings), from
        any thread: matched and alerted like the mapper's (under the clock's lock)."""
        if self.engine is None:
            return
        with self._lock:
            self.stats.sigma_events += len(sevs)
            for sev in sevs:
                for m in self.engine.process(sev):
                    self._match(m)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock_stop.set()
            self._clock.join()
            self._clock = None

    def _match(self, m: Any) -> None:
        self.stats.matches += 1
        a = alert_from_match(m, self.table, self.wall_offset_ns)
        for out in self.collapser.add(a):
            self._out(out)

    def _out(self, a: Alert) -> None:
        st = self.stats
        if a.kind == "alert":
            st.alerts += 1
            st.per_rule[a.rule_id] = st.per_rule.get(a.rule_id, 0) + 1
        if self.writer is not None:
            self.writer.add_alert(alert_row(a))
        if self.exporter is not None:
            self.exporter.add_alert(alert_row(a))
        if self.emit is not None:
            self.emit(a)

    def tick(self, now_ts: int | None = None) -> None:
        """Close correlation windows and collapse windows that ended by ``now_ts``
        (default: the last event's time; event time, so a replay does the same)."""
        now = self._last_ts if now_ts is None else now_ts
        flush = getattr(self.engine, "flush", None)
        if flush is not None:
            for m in flush(now):
                self._match(m)
        for a in self.collapser.expire(now):
            self._out(a)

    def finish(self) -> WatchStats:
        """Decide the open correlations, report the open collapse windows; the counts."""
        self._stop_clock()
        flush = getattr(self.engine, "flush", None)
        if flush is not None:
            for m in flush(None):
                self._match(m)
        for a in self.collapser.flush():
            self._out(a)
        st = self.stats
        st.collapsed = self.collapser.collapsed
        st.dropped_processes = int(getattr(self.table, "dropped", 0) or 0)
        if self.engine is not None:
            st.rule_errors = dict(getattr(self.engine, "errors", {}) or {})
            st.evicted_groups = int(getattr(self.engine, "evicted", 0) or 0)
        return st


def _both(first: Callable[[Event], None] | None,
          second: Callable[[Event], None]) -> Callable[[Event], None]:
    if first is None:
        return second

    def store(ev: Event) -> None:
        first(ev)
        second(ev)

    return store


def alert_row(a: Alert) -> dict[str, Any]:
    """The ``alerts`` capture row of an alert (a repeat report: its final count)."""
    first = dataclasses.replace(a, kind="alert") if a.kind != "alert" else a
    return {
        "id": a.id,
        "ts": a.ts,
        "last_ts": a.last_ts,
        "time": a.time,
        "count": a.count,
        "level": a.level,
        "rule_id": a.rule_id,
        "title": a.title,
        "techniques": json.dumps(list(a.techniques)),
        "pid": a.pid,
        "image": jsonable(a.process.get("image")),
        "command_line": jsonable(a.process.get("command_line")),
        "lineage": ancestry_text(a.ancestry),
        "matched": json.dumps(jsonable(a.matched), ensure_ascii=False),
        "alert": alert_json(first),
    }


# ------------------------------------------------------------------ sources


def needed_syscalls(rules: Any = None, table: Any = None) -> list[str]:
    """The syscalls to trace for ``rules`` (None: everything watch can use), as the
    mapper says (detect.mapping.needed_syscalls), only those this kernel can trace."""
    from .mapping import needed_syscalls as mapper_needs

    if table is None:
        from ..collect.bpf.loader import syscall_table

        table = syscall_table()
    names = mapper_needs(rules, table)
    known = table.by_name
    # a syscall the kernel has no tracepoint of that name for (compiled out, or named
    # otherwise, as umount2's sys_enter_umount) cannot be attached by name
    return sorted({n for n in names if n in known and known[n].known and _has_tp(n)})


def _has_tp(name: str) -> bool:
    from ..kernel.tracefs import tracefs_root

    try:
        root = tracefs_root()
    except ProbewatchError:
        return True  # cannot tell: let the attach say
    return os.path.isdir(os.path.join(root, "events", "syscalls", f"sys_enter_{name}"))


@dataclass
class LiveSource:
    """An open live event source: ``events()``, ``summary`` numbers, the command."""

    backend: str
    session: Any
    reason: str = ""      # why the fallback (empty on BPF)
    probes: list[str] = field(default_factory=list)
    syscalls: list[str] = field(default_factory=list)
    _adapter: Any = None
    user: Any = None      # the user-space layer (typed lines, TLS) beside the BPF session

    def events(self, duration: float | None = None) -> Iterator[Event]:
        if self._adapter is None:
            if self.user is None:
                yield from self.session.events(duration=duration)
                return
            user = self.user
            every = user.rescan_interval
            last = time.monotonic()
            for ev in self.session.events(duration=duration):
                yield ev
                if every and time.monotonic() - last >= every:
                    user.rescan()  # TLS libraries mapped since (dlopen, new processes)
                    last = time.monotonic()
            return
        adapt = self._adapter
        for ev in self.session.events(duration=duration):
            out = adapt(ev)
            if out is not None:
                yield out

    def losses(self) -> tuple[int, dict[int, int]]:
        """(events the kernel dropped, per CPU)."""
        ls = self.session.losses()  # every Session has it
        return int(ls.lost), dict(ls.lost_per_cpu)

    @property
    def command_pid(self) -> int:
        """The traced command's pid while it runs (0: none, or reaped)."""
        return int(self.session.child_pid or 0)  # every Session has it

    def start(self) -> None:
        """Arm the probes (then a gated command runs); errors come out here."""
        self.session.start()

    def stop(self) -> None:
        self.session.stop()


def _bpf_problem() -> str:
    forced = os.environ.get(FORCE_ENV, "")
    if forced == "ftrace":
        return f"{FORCE_ENV}=ftrace"
    from ..bpf_session import bpf_available

    ok, why = bpf_available()
    return "" if ok else why


@contextlib.contextmanager
def live_events(
    *,
    backend: str = "auto",
    pids: Sequence[int] = (),
    command: Sequence[str] | None = None,
    ringbuf_kb: int = 16384,
    buffer_kb: int | None = None,
    rules: Any = None,
    shell: bool | None = None,
    tls: bool | None = None,
    bash_path: str = "/bin/bash",
    tls_bytes: int = 4096,
) -> Iterator[LiveSource]:
    """Open the live source: BPF (``backend`` auto/bpf) or tracefs (ftrace, or auto
    where BPF is missing). With ``command`` it starts gated and runs once events flow.
    ``rules``: trace only the syscalls these rules can use (None: all watch uses).
    ``shell`` / ``tls``: the user-space layer on BPF — lines typed into bash
    (readline) and TLS plaintext (``tls_bytes`` per call) as ``bash:readline`` and
    ``tls:*`` events; None: when the rules have ``shell_command`` / ``tls`` rules."""
    from ..bpf_session import BpfSession

    why = "" if backend in ("ftrace", "perf") else _bpf_problem()
    if backend in ("ftrace", "perf"):
        why = f"--backend {backend}"
    if backend == "bpf" and why:
        from ..errors import FeatureUnavailable

        raise FeatureUnavailable(f"the BPF backend is not usable here: {why}")
    if not why:
        names = needed_syscalls(rules)
        # raw_syscalls: the two raw_syscalls links, the syscalls picked in the kernel's
        # nrconf map (an untraced syscall costs an array look-up), not a tracepoint
        # pair per syscall (detaching ~150 of those took 6-12 s at exit here)
        s = BpfSession("syscalls", syscalls=names, lifecycle=True, exec_info=True,
                       raw_syscalls=True, pids=list(pids) or None, follow_children=True,
                       ringbuf_kb=ringbuf_kb)
        with s:
            if command:
                s.trace_command(list(command))
            probes = ["bpf:syscalls"]
            user = _user_layer(s, rules, shell, tls, bash_path, tls_bytes, pids)
            try:
                if user is not None:
                    probes.append("bpf:sslsniff")
                yield LiveSource("bpf", s, syscalls=names, probes=probes, user=user)
            finally:
                if user is not None:
                    user.close()  # its links before the primary's maps go
        return
    from ..session import Session

    names = needed_syscalls(rules)
    # the tracepoint path: ftrace, or perf when asked for (same Events either way)
    tp_backend = "perf" if backend == "perf" else "ftrace"
    sess = Session(backend=tp_backend, buffer_kb=buffer_kb, pids=list(pids) or None)
    with sess:
        probes = ["t:sched:sched_process_fork", "t:sched:sched_process_exec",
                  "t:sched:sched_process_exit"]
        have = []
        for n in names:
            if os.path.isdir(os.path.join(sess.root, "events", "syscalls", f"sys_enter_{n}")):
                have.append(n)
                probes.append(f"t:syscalls:sys_enter_{n}")
                if n not in ("exit", "exit_group"):
                    probes.append(f"t:syscalls:sys_exit_{n}")
        for p in probes:
            sess.add(p)
        if command:
            sess.trace_command(list(command))
        yield LiveSource(tp_backend, sess, reason=why, probes=probes, syscalls=have,
                         _adapter=TracefsAdapter())


def _user_layer(primary: Any, rules: Any, shell: bool | None, tls: bool | None,
                bash_path: str, tls_bytes: int, pids: Sequence[int]) -> Any:
    """The sslsniff object beside the syscalls one (see live_events), or None."""
    from .mapping import rule_kinds

    kinds = rule_kinds(rules) if rules is not None else None
    if shell is None:
        shell = kinds is None or "shell_command" in kinds
    if tls is None:
        tls = kinds is None or "tls" in kinds
    if shell and not os.path.exists(bash_path):
        shell = False
    if not (shell or tls):
        return None
    from ..ssl_session import SslSession

    u = SslSession(data_max=tls_bytes, tls=tls, system_libs=tls, rescan_s=None if tls else 0,
                   pids=list(pids) or None, follow_children=True)
    u.share_with(primary, bash_path if shell else None)
    return u


#: Event.probe of the fallback's events (not "bpf...": their header ids are not known)
PROBE_FALLBACK = "tracefs:watch"


class TracefsAdapter:
    """tracefs sched/syscalls events -> the Events the BPF program sends (same names
    and fields), minus what tracefs cannot give: string/argv arguments (only their
    pointers exist), uid/gid, the exec's argv/cwd/environment."""

    def __init__(self) -> None:
        from ..collect.bpf.loader import syscall_table
        from ..decode.syscalls import arg_kinds

        self.table = syscall_table()
        self._kinds: dict[str, tuple[list[str], list[int]]] = {}
        for name, info in self.table.by_name.items():
            self._kinds[name] = (list(info.arg_names), list(arg_kinds(info)))
        self._pending: dict[int, tuple[str, dict[str, Any], int]] = {}
        self._ppid: dict[int, int] = {}

    def __call__(self, ev: Event) -> Event | None:
        name = ev.event
        f = ev.fields
        if name == "sched:sched_process_fork":
            child = int(f.get("child_pid", 0))
            self._ppid[child] = ev.pid
            return Event(ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, name, PROBE_FALLBACK,
                         {"ppid": self._ppid.get(ev.pid, 0), "cgroup": 0,
                          "child_pid": child, "child_tid": child})
        if name == "sched:sched_process_exec":
            return Event(ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, name, PROBE_FALLBACK,
                         {"ppid": self._ppid.get(ev.pid, 0), "cgroup": 0,
                          "old_pid": f.get("old_pid", ev.pid),
                          "filename": f.get("filename", "")})
        if name == "sched:sched_process_exit":
            if int(f.get("pid", ev.tid)) != ev.pid:
                return None  # a thread, not the process
            self._ppid.pop(ev.pid, None)
            return Event(ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, name, PROBE_FALLBACK,
                         {"ppid": 0, "cgroup": 0, "exit_code": 0,
                          "start_ns": 0})
        if not name.startswith("syscalls:sys_"):
            return None
        if name.startswith("syscalls:sys_enter_"):
            sc = name[len("syscalls:sys_enter_"):]
            names, kinds = self._kinds.get(sc, ([], []))
            fields: dict[str, Any] = {"ppid": self._ppid.get(ev.pid, 0), "cgroup": 0,
                                      "nr": f.get("__syscall_nr", -1)}
            for i, an in enumerate(names[:6]):
                if an in f and not (i < len(kinds) and kinds[i] in (1, 6)):
                    fields[an] = f[an]
            if sc in ("exit", "exit_group"):
                fields["ret"] = None
                return Event(ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, f"syscalls:{sc}",
                              PROBE_FALLBACK, fields)
            self._pending[ev.tid] = (sc, fields, ev.ts)
            return None
        sc = name[len("syscalls:sys_exit_"):]
        pend = self._pending.pop(ev.tid, None)
        if pend is None or pend[0] != sc:
            return None
        _, fields, t0 = pend
        fields["ret"] = f.get("ret")
        fields["duration_ns"] = ev.ts - t0
        return Event(ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, f"syscalls:{sc}",
                     PROBE_FALLBACK, fields)


def fallback_message(reason: str, rules: Any = None) -> str:
    """The one message watch prints when it runs on tracefs events."""
    msg = (f"BPF is not usable here ({reason}): watching tracefs events (sched and "
           "syscalls tracepoints) instead. Unavailable then: syscall string arguments "
           "(TargetFilename, SourceFilename, the auditd PATH name, a connect's "
           "DestinationIp/DestinationPort) and the credentials in each event (User, Uid, "
           "Euid, Gid, Egid); the exec's argv, cwd, environment and login uid "
           "(CommandLine, Argv0, CurrentDirectory, LogonId, ContainerId, LD_PRELOAD and "
           "the other environment fields) are read from /proc after the exec, so they "
           "are missing for processes that exit at once")
    blind = rules_needing(rules, FALLBACK_FIELDS)
    if blind is not None:
        if blind:
            shown = ", ".join(blind[:20]) + (f" and {len(blind) - 20} more"
                                             if len(blind) > 20 else "")
            msg += f"; {len(blind)} loaded rules use these fields and may not fire: {shown}"
        else:
            msg += "; no loaded rule uses these fields"
    return msg


def rules_needing(rules: Any, fields: Iterable[str]) -> list[str] | None:
    """Ids of the loaded rules that test any of ``fields`` (None: cannot tell)."""
    if rules is None:
        return None
    want = set(fields)
    compiled = getattr(rules, "rules", None)
    if compiled is None:
        try:
            compiled = list(rules)
        except TypeError:
            return None
    out = []
    for r in compiled:
        rf = getattr(r, "fields", None)
        if rf is None:
            return None
        if want & set(rf):
            out.append(str(getattr(r, "id", "") or getattr(r, "title", "?")))
    return sorted(out)


# ------------------------------------------------------------------ replay


@dataclass
class Replay:
    """A capture opened for replay: its events, seed snapshot and clock offset."""

    events: Iterator[Event]
    snapshot: list[dict[str, Any]]
    wall_offset_ns: int
    lost: int
    backend: str


@contextlib.contextmanager
def replay_events(path: str) -> Iterator[Replay]:
    """Open a capture written by ``watch -o`` / ``record --watch`` for replay."""
    from ..capture import Capture

    with Capture(path) as cap:
        runs = cap.runs()
        snap = cap.process_snapshot()
        if not snap:
            raise ProbewatchError(
                f"{path}: no process-table snapshot in this capture: record it with "
                "probewatch watch -o or probewatch record --watch")
        off = 0
        if runs and runs[0].start_ts is not None:
            off = int(runs[0].start_time * 1e9) - int(runs[0].start_ts)
        lost = sum(r.lost or 0 for r in runs)
        backend = (runs[0].backend or "bpf") if runs else "bpf"
        yield Replay(cap.events(), snap, off, lost, backend)
