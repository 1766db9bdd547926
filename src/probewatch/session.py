"""Session: the context-managed public API over a collection backend.

Example::

    import probewatch
    with probewatch.Session() as s:
        s.add("tracepoint:sched:sched_process_exec")
        for ev in s.events(duration=2):
            print(ev.pid, ev.comm, ev.fields["filename"])

The ftrace backend reads binary ring-buffer pages from every CPU's ``trace_pipe_raw``.
It reads the instance's text ``trace_pipe`` instead (and says why in
``Session.warnings``) only when it must: a CPU's ``trace_pipe_raw`` is missing or
cannot be opened, ``events/header_page`` / ``header_event`` cannot be parsed, or
``PROBEWATCH_FTRACE_TEXT=1`` is set. Events are the same either way, except that text
timestamps have microsecond precision and ``char *`` pointer fields are None (see
:mod:`probewatch.decode.tracetext`).
"""

from __future__ import annotations

import atexit
import os
import signal
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Self, overload

from .collect.base import Losses
from .collect.command import GatedCommand, SignalGuard
from .collect.ftrace import PAGE, TEXT, TEXT_ENV, FtraceCollector
from .decode.format import PageLayout, load_format, parse_header_layout
from .decode.ringbuf import PageDecoder
from .decode.tracetext import TextDecoder
from .errors import (
    DecodeError,
    FeatureUnavailable,
    KernelRejected,
    NotFound,
    ProbewatchError,
    SpecError,
)
from .event import Event, EventRun, expand
from .kernel.features import check
from .kernel.tasks import TaskCache
from .kernel.tracefs import remove_dynamic_event, sweep_stale, tracefs_root, write_file
from .sources.spec import ProbeSpec, parse_spec

if TYPE_CHECKING:
    from .bpf_session import BpfSession
    from .sources.probes import ResolvedProbe
    from .sources.uprobe import DynamicProbe

_live: weakref.WeakSet[FtraceSession] = weakref.WeakSet()

# events enabled behind the user's back to keep tid -> comm right
_HIDDEN = (("sched", "sched_process_exec"), ("task", "task_rename"))
#: the events trace_marker / trace_marker_raw writes become (spec ``marker``)
MARK_EVENTS = (("ftrace", "print"), ("ftrace", "raw_data"))

#: decoded events held back for the watermark above which the oldest half is handed
#: on regardless (only when a CPU's pages cannot be read: the spool is full)
MAX_PENDING = 131072


@dataclass
class Summary:
    """What a run delivered and lost. ``lost`` is the kernel's count (per-CPU stats).

    ``page_missed`` / ``missed_per_cpu``: what the stream itself said was lost (the
    missed-events counts of pages, or the ``[LOST N EVENTS]`` lines of the text
    reader), a cross-check of ``lost``. ``reader`` (ftrace): ``"pages"`` or ``"text"``.
    ``spool_*`` (ftrace): the bounded spool between the drainer and the decoder; JSON
    ``"spool": {"limit", "peak", "full_s"}``.
    """

    events: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    lost_per_cpu: dict[int, int] = field(default_factory=dict)
    page_missed: int = 0
    unknown: int = 0
    duration: float = 0.0
    missed_per_cpu: dict[int, int] = field(default_factory=dict)
    reader: str = ""
    #: ftrace: the spool's bound and the most it held (bytes), and for how long it was
    #: full (seconds: the kernel dropped events meanwhile, counted in ``lost``)
    spool_limit: int = 0
    spool_peak: int = 0
    spool_full: float = 0.0
    #: ftrace: the part of ``lost`` put down to a probe (the events on both sides of
    #: the gap in a CPU's stream were that probe's), and per CPU what could not be
    #: (the ring buffer counts losses per CPU only); JSON ``lost_per_probe`` and
    #: ``lost_per_cpu_only``
    lost_per_probe: dict[str, int] = field(default_factory=dict)
    lost_cpu_only: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "events": dict(self.events),
            "total": sum(self.events.values()),
            "lost": self.lost,
            "lost_per_cpu": {str(k): v for k, v in sorted(self.lost_per_cpu.items())},
            "page_missed": self.page_missed,
            "duration": round(self.duration, 6),
        }
        if self.reader:
            d["reader"] = self.reader
            d["missed_per_cpu"] = {str(k): v for k, v in sorted(self.missed_per_cpu.items())}
            d["lost_per_probe"] = dict(self.lost_per_probe)
            d["lost_per_cpu_only"] = {str(k): v for k, v in sorted(self.lost_cpu_only.items())
                                      if v}
        if self.spool_limit:
            d["spool"] = {"limit": self.spool_limit, "peak": self.spool_peak,
                          "full_s": round(self.spool_full, 6)}
        return d


class EventStream:
    """The streaming half of the session API, shared by every backend's
    :class:`Session`: :meth:`events`, :meth:`batches`, :meth:`drain` and
    :meth:`count`, all over the backend's ``_raw()`` generator of
    time-ordered batches (which counts what it delivers in ``counts``).

    Example::

        with Session() as s:  # any EventStream
            s.add("t:sched:sched_process_exec")
            for batch in s.batches(duration=1):
                print(len(batch))
    """

    counts: dict[str, int]
    _started: bool
    _done: bool
    _t1: float
    _formats: dict[int, Any]
    @property
    def clock(self) -> str:
        """The clock of Event.ts: "mono" = CLOCK_MONOTONIC (bpf_ktime_get_ns is the same)."""
        return "mono"

    @property
    def formats(self) -> list[Any]:
        """The EventFormat of every event this session decodes (hidden helpers too)."""
        return list(self._formats.values())

    @property
    def dynamic_probes(self) -> list[Any]:
        """The uprobe/kprobe/USDT definitions this session created (DynamicProbe)."""
        return list(getattr(self, "_dynamic", []))

    def _raw(self, duration: float | None, count_only: bool) -> Iterator[list[Event]]:
        """Batches of time-ordered Events (count_only: empty batches while counting)."""
        raise NotImplementedError

    def stop(self) -> None:
        """End the trace; what is buffered can still be read (drain(), count())."""
        raise NotImplementedError

    def events(
        self, duration: float | None = None, max_events: int | None = None
    ) -> Iterator[Event]:
        """Yield Events in time order until duration passes, max_events, or the command exits.

        The counts (:meth:`summary`) are of the events handed out: those of the last
        batch after ``max_events``, or after the consumer leaves the loop, are not."""
        n = 0
        batch: list[Event] = []
        i = 0
        try:
            for batch in self._raw(duration, count_only=False):
                for i, ev in enumerate(batch):
                    yield ev
                    n += 1
                    if max_events is not None and n >= max_events:
                        self.stop()
                        self.uncount(batch[i + 1 :])  # counted, but never delivered
                        return
        except GeneratorExit:  # the consumer left at batch[i]
            self.uncount(batch[i + 1 :])
            raise
        finally:
            if self._t1 == 0.0:
                self._t1 = time.monotonic()

    def uncount(self, items: Sequence[Event | EventRun]) -> None:
        """Take events that were delivered but not used (filtered out, not shown) out of
        the counts of :meth:`summary`."""
        counts = self.counts
        for ev in items:
            counts[ev.probe] -= len(ev.tss) if type(ev) is EventRun else 1

    def batches(self, duration: float | None = None) -> Iterator[list[Event]]:
        """Like :meth:`events`, a time-ordered list at a time (cheaper per event)."""
        try:
            for batch in self._raw(duration, count_only=False):
                if batch:
                    yield batch
        finally:
            if self._t1 == 0.0:
                self._t1 = time.monotonic()

    def drain(self) -> Iterator[Event]:
        """After stop() (e.g. on ^C): the events still buffered, in time order."""
        if not self._started or self._done:
            return
        self.stop()
        for batch in self._raw(None, count_only=False):
            yield from batch

    def count(self, duration: float | None = None) -> dict[str, int]:
        """Count events per probe without building Event records (fast path; the bpf
        backend counts in the kernel when no filter needs the fields).

        Interrupted (^C), call it again after stop() to count what is still buffered.
        """
        if self._done:
            return dict(self.counts)
        for _ in self._raw(duration, count_only=True):
            pass
        return dict(self.counts)


class Session(EventStream):
    """The one public session: ``Session(backend="auto" | "ftrace" | "perf" | "bpf")``
    for probe specs, ``Session(tool=...)`` for the BPF tool engines.

    Every session has the same methods (:meth:`add`, :meth:`trace_command`,
    :meth:`start`, :meth:`events` / :meth:`batches` / :meth:`drain` / :meth:`count` /
    :meth:`run`, :meth:`stop`, :meth:`losses`, :meth:`summary`, :meth:`close`, the
    :attr:`command` / :attr:`child_pid` / :attr:`returncode` of a traced command, and
    ``with``) and yields the same :class:`Event` records; :meth:`summary` returns a
    :class:`Summary` (backends add their own counts in a subclass of it).

    ``Session(backend=...)`` returns the backend's subclass (:class:`FtraceSession`,
    :class:`probewatch.perf_trace.PerfTraceSession`,
    :class:`probewatch.bpf_trace.BpfTraceSession`); ``auto`` is ftrace (a private
    tracefs instance); :func:`probewatch.backends.open_session` chooses by the job.

    ``Session(tool=NAME, **options)`` returns the engine of the BPF tools, whose
    programs choose their events themselves (no :meth:`add`): ``"syscalls"``
    (syscalls with decoded arguments and the user memory they point to, process
    lifecycle, in-kernel counts: the engine of ``syscalls``, ``execsnoop``,
    ``opensnoop``, ``syscount`` and ``watch``), ``"tcpconnect"``, ``"bashreadline"``
    (:class:`probewatch.bpf_session.BpfSession`), ``"sslsniff"``
    (:class:`probewatch.ssl_session.SslSession`) and ``"mallocs"``
    (:class:`probewatch.analyze.allocs.MallocSession`); the options are those
    classes' keyword arguments (:data:`TOOLS` lists the names).

    Example::

        import probewatch
        with probewatch.Session(backend="perf") as s:
            s.add("t:sched:sched_process_exec")
            s.trace_command(["sh", "-c", "/bin/true"])
            for ev in s.events():
                print(ev.pid, ev.comm, ev.fields["filename"])

        with probewatch.Session(tool="syscalls", syscalls=["openat"]) as s:
            s.trace_command(["cat", "/etc/hostname"])
            for ev in s.events():
                print(ev.event, ev.fields["filename"], ev.fields["ret"])
            print(s.summary().to_dict()["events"])   # {'syscalls:openat': ...}
    """

    backend: str
    warnings: list[str]
    #: the tracefs mount (every backend reads event formats from it)
    root: str
    _command: GatedCommand
    _signals: SignalGuard
    _pids: list[int]
    _follow: bool

    @overload
    def __new__(cls, backend: str = "auto", *args: Any, tool: None = None,
                **kw: Any) -> Self: ...

    @overload
    def __new__(cls, backend: str = "auto", *args: Any, tool: str, **kw: Any) -> BpfSession:
        ...

    def __new__(cls, *args: Any, tool: str | None = None, **kw: Any) -> Session:
        if cls is Session:
            if tool is None:
                cls = backend_class(args[0] if args else kw.get("backend", "auto"))
            elif args:  # Session("bpf", tool=...): the tools' first argument is the tool
                raise ProbewatchError("Session(tool=...) takes its options by keyword "
                                      "(backend=\"bpf\", syscalls=[...], ...)")
            else:
                backend = kw.get("backend", "auto")
                if backend not in ("auto", "bpf"):
                    raise ProbewatchError(f"the {tool} tool runs on the bpf backend, not "
                                          f"{backend!r}")
                cls = tool_class(tool)
        return object.__new__(cls)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, spec: str, filter: str | None = None) -> list[str]:
        """Arm a probe spec; returns the "system:name" events it produced."""
        raise NotImplementedError

    def trace_command(self, argv: Sequence[str]) -> int:
        """Start ``argv`` gated (it waits until tracing is on) and trace it and its
        children; returns its pid."""
        if not argv:
            raise ProbewatchError("no command given")
        if self._started:
            raise ProbewatchError("trace_command() must come before start()")
        with self._signals.deferred():  # forked and recorded (close() kills it), or neither
            pid = self._command.start(argv)
        self._pids = [pid]
        self._follow = True
        return pid

    def start(self, count_only: bool = False) -> None:
        """Arm everything and release a traced command (``count_only``: the backend may
        count without delivering records)."""
        raise NotImplementedError

    def run(self, duration: float | None = None) -> None:
        """Trace until ``duration`` passes, :meth:`stop`, or the traced command exits,
        handing out no events: what was traced is counted (:meth:`summary`)."""
        for _ in self._raw(duration, count_only=False):
            pass

    @property
    def probes(self) -> dict[str, list[str]]:
        """spec -> the events it produced."""
        raise NotImplementedError

    @property
    def command(self) -> GatedCommand:
        """The traced command (see :meth:`trace_command`): wait for it or stop it."""
        return self._command

    @property
    def child_pid(self) -> int:
        """The traced command's pid until it has been reaped (then 0; 0 without one)."""
        return self.command.pid

    @property
    def returncode(self) -> int | None:
        """The traced command's exit status once it has ended (128+N: killed by signal N)."""
        return self.command.returncode

    def wait_command(self) -> int | None:
        """Wait for a traced command (after tracing ended) and return its exit status."""
        return self.command.wait()

    def losses(self) -> Losses:
        """What the kernel did not deliver so far: ``lost`` in total and per CPU (the
        BPF sessions also count failed user-memory reads and truncated records)."""
        s = self.summary()
        return Losses(lost=s.lost, lost_per_cpu=dict(s.lost_per_cpu))

    def summary(self) -> Summary:
        """What the run delivered and lost, per probe and per CPU."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove everything the session created in the kernel. Idempotent."""
        raise NotImplementedError


#: the tool engines of ``Session(tool=NAME)``: name -> "module:class"
TOOLS = {
    "syscalls": "bpf_session:BpfSession",
    "tcpconnect": "bpf_session:BpfSession",
    "bashreadline": "bpf_session:BpfSession",
    "sslsniff": "ssl_session:SslSession",
    "mallocs": "analyze.allocs:MallocSession",
}


def tool_class(tool: str) -> type[BpfSession]:
    """The session class of a BPF tool engine (see :class:`Session`).

    Example::

        tool_class("sslsniff").__name__   # 'SslSession'
    """
    import importlib

    where = TOOLS.get(tool)
    if where is None:
        raise ProbewatchError(f"unknown tool {tool!r} (have: {', '.join(TOOLS)})")
    mod, name = where.split(":")
    from .bpf_session import BpfSession, require_bpf

    require_bpf()
    cls = getattr(importlib.import_module(f".{mod}", __package__), name)
    if not (isinstance(cls, type) and issubclass(cls, BpfSession)):
        raise TypeError(f"{where} is not a BpfSession")
    return cls


def backend_class(backend: str) -> type[Session]:
    """The Session subclass of a backend name (``auto`` = ftrace).

    Example::

        backend_class("perf").__name__   # 'PerfTraceSession'
    """
    if backend in ("auto", "ftrace"):
        return FtraceSession
    if backend == "perf":
        from .perf_trace import PerfTraceSession

        return PerfTraceSession
    if backend == "bpf":
        from .bpf_session import require_bpf
        from .bpf_trace import BpfTraceSession

        require_bpf()
        return BpfTraceSession
    raise ProbewatchError(f"unknown backend {backend!r} (have: auto, ftrace, perf, bpf)")


class FtraceSession(Session):
    """The ftrace backend of :class:`Session`: a private tracefs instance, its probes
    and its lifecycle.

    Everything the session creates in the kernel is removed by :meth:`close`, which
    runs on ``with``-exit, on exceptions, on SIGINT and SIGTERM (while events() runs in
    the main thread) and at interpreter exit.

    Memory stays bounded however far the consumer falls behind: raw pages wait in a
    spool of at most ``spool_mb`` MiB (default: 256 MiB or 1/16 of RAM, whichever is
    smaller), in memory, or in an unnamed file in ``spool_dir`` (default bound there:
    a quarter of the free space); when it is full the kernel's ring buffer overruns and the
    losses are counted per CPU (:meth:`summary`). Events are decoded a slice of the
    spool at a time.
    """

    def __init__(
        self,
        backend: str = "auto",
        buffer_kb: int | None = None,
        pids: Sequence[int] | None = None,
        comm: str | None = None,
        follow_children: bool = True,
        spool_mb: int | None = None,
        spool_dir: str | None = None,
        stack: str | None = None,
    ) -> None:
        if backend not in ("auto", "ftrace"):
            raise ProbewatchError(f"backend {backend!r} is not available (have: auto, ftrace)")
        # stack="kernel": every event gets fields["stack"], the kernel stack the instance's
        # stacktrace option records after it (ftrace:kernel_stack), symbolized
        if stack not in (None, "user", "kernel", "both"):
            raise ProbewatchError(f"stack must be user, kernel or both (got {stack!r})")
        if stack in ("user", "both"):
            raise FeatureUnavailable(
                f"the ftrace backend records kernel stacks only (--stack kernel, through the "
                f"instance's stacktrace option), not {stack} stacks: use --backend perf (or "
                f"bpf) for user stacks")
        self._stack = stack
        self._symbolizer: Any = None
        self._last_on_cpu: dict[int, Event] = {}
        self.backend = "ftrace"
        self.root = ""
        self._collector: FtraceCollector  # set below; close() copes with its absence
        if spool_mb is not None and spool_mb < 1:
            raise ProbewatchError(f"--spool-mb must be at least 1 (got {spool_mb})")
        self._closed = False
        self.warnings: list[str] = []
        self.comm = comm
        self._pids = list(pids or [])
        self._follow = follow_children
        self._probes: dict[str, list[str]] = {}
        self._event_probe: dict[str, str] = {}
        self._formats: dict[int, Any] = {}
        self._hidden_ids: set[int] = set()
        self._started = False
        self._command = GatedCommand()
        self.counts: dict[str, int] = {}
        self._page_missed = 0
        self._missed_per_cpu: dict[int, int] = {}
        # per CPU: the gaps in its stream (pages flagged with lost events), by the probe
        # whose events surround them (None: not one probe's): counts where the page
        # stored one, and the probes of gaps whose count it did not (see _lost_split)
        self._gap_counts: dict[int, dict[str | None, int]] = {}
        self._gap_uncounted: dict[int, set[str | None]] = {}
        self._prev_page: dict[int, bytes] = {}  # per CPU: the page read last
        self._t0 = 0.0
        self._t1 = 0.0
        self._decoder: PageDecoder | None = None
        self._text: TextDecoder | None = None
        self._pending: list[Event] = []
        self._dynamic: list[DynamicProbe] = []
        self._done = False
        self._marks = False
        self._mark_dir = ""
        self._tracer = ""
        self._ksyms: Any = None
        #: batches may hold :class:`~probewatch.event.EventRun` items (pages of one
        #: event type decoded as columns) besides Events: for a consumer that takes them,
        #: such as the JSON-lines sink (``JsonLinesSink.write_many``)
        self.deliver_runs = False
        # before the first kernel object: from here on SIGTERM/SIGHUP (SystemExit) and
        # SIGINT (KeyboardInterrupt) run close(); each object is created and recorded
        # with signals held back (deferred), so none can fall in between
        self._signals = SignalGuard(chain=(signal.SIGINT,))
        self._signals.install()
        _live.add(self)
        try:
            self.root = tracefs_root()
            sweep_stale(self.root)
            with self._signals.deferred():
                self._collector = FtraceCollector(
                    buffer_kb=buffer_kb, root=self.root,
                    spool_bytes=None if spool_mb is None else spool_mb << 20,
                    spool_dir=spool_dir,
                )
            self.tasks = TaskCache(self.root)
            self._layout, self._text_reason = choose_reader(
                self.root, os.environ, self._collector.raw_unavailable
            )
        except BaseException:
            self.close()
            raise
        if self._text_reason is not None:
            self.warnings.append(text_warning(self._text_reason))

    # -- probes
    def add(self, spec: str, filter: str | None = None) -> list[str]:
        """Arm a probe spec; returns the "system:name" events it produced.

        Kinds: ``t:`` tracepoints (globs expand), ``u:``/``ur:`` uprobes and uretprobes
        on ELF symbols, ``U:`` USDT probes, ``k:``/``kr:`` kprobes (when the kernel has
        them). See :mod:`probewatch.sources.spec` for the grammar.
        """
        if self._started:
            raise ProbewatchError("cannot add probes after the session has started")
        if spec.strip() == "marker":
            return self._add_marks(spec, list(MARK_EVENTS), filter)
        ps = parse_spec(spec)
        if ps.kind == "tracepoint" and (ps.system, ps.name) in MARK_EVENTS:
            return self._add_marks(spec, [(str(ps.system), str(ps.name))], filter)
        kfilter = self._kernel_filter(filter)
        if ps.kind == "tracepoint":
            from .sources.probes import resolve  # (ELF reading: imported when used)

            rps = resolve(ps, self.root)  # once, as for every backend
        else:
            rps = self._create_dynamic(ps)
        names = []
        for rp in rps:
            ev = rp.event
            if ev in self._event_probe:
                continue
            self._collector.arm(rp, kfilter)
            fmt = rp.fmt or load_format(self.root, rp.system, rp.name)
            self._formats[fmt.id] = fmt
            self._event_probe[ev] = spec
            names.append(ev)
        self._probes[spec] = names
        self.counts.setdefault(spec, 0)
        return names

    def add_functions(self, pattern: str, graph: bool = False) -> list[str]:
        """Trace the kernel functions matching ``pattern`` (a name or glob, as
        ``set_ftrace_filter`` takes it) with the function tracer of this session's
        private instance: events ``ftrace:function`` (``ip``, ``parent_ip``; ``func``
        added, the name from /proc/kallsyms) or, with ``graph``, the function_graph
        tracer's ``ftrace:funcgraph_entry`` / ``ftrace:funcgraph_exit`` (``calltime``,
        ``rettime``: a duration per call). The probe is named ``function:PATTERN``.
        FeatureUnavailable where the kernel has no usable function tracer."""
        if self._started:
            raise ProbewatchError("cannot add probes after the session has started")
        if self._tracer:
            raise ProbewatchError("one function pattern per session")
        tracer = "function_graph" if graph else "function"
        feat = check("function tracer", self.root)
        if not feat.available:
            raise FeatureUnavailable(f"cannot trace kernel functions {pattern!r}: "
                                     f"{feat.reason}")
        inst = self._collector.instance
        try:
            offered = inst.read("available_tracers").split()
        except ProbewatchError:
            offered = []
        if tracer not in offered:  # tracers that do not allow instances are not listed
            raise FeatureUnavailable(f"cannot trace kernel functions {pattern!r}: the "
                                     f"{tracer} tracer is not offered in a private tracefs "
                                     f"instance on this kernel (its available_tracers: "
                                     f"{' '.join(offered) or 'none'})")
        try:
            inst.write("set_ftrace_filter", pattern)
        except ProbewatchError as e:
            raise NotFound(f"no kernel function matches {pattern!r} in "
                           f"available_filter_functions ({e})") from None
        spec = f"function:{pattern}"
        events = ([("ftrace", "funcgraph_entry"), ("ftrace", "funcgraph_exit")] if graph
                  else [("ftrace", "function")])
        names = []
        for sy, n in events:
            fmt = load_format(self.root, sy, n)
            self._formats[fmt.id] = fmt
            self._event_probe[f"{sy}:{n}"] = spec
            names.append(f"{sy}:{n}")
        self._tracer = tracer
        self._probes[spec] = names
        self.counts.setdefault(spec, 0)
        return names

    def _self_pid_filter(self) -> bool:
        """Whether the instance has set_ftrace_notrace_pid (this process is not traced)."""
        return os.path.exists(os.path.join(self._collector.instance.path,
                                           "set_ftrace_notrace_pid")) and not self._pids

    def _func_fields(self, ev: Event) -> None:
        """``func`` (and ``parent`` for the function tracer): names from kallsyms."""
        if self._ksyms is None:
            from .kernel.kallsyms import Kallsyms

            self._ksyms = Kallsyms()
        f = ev.fields
        addr = f.get("ip", f.get("func"))
        if isinstance(addr, int):
            f["func"] = self._ksyms.name(addr) or hex(addr)
        if isinstance(f.get("parent_ip"), int):
            f["parent"] = self._ksyms.name(f["parent_ip"]) or hex(f["parent_ip"])

    def _add_marks(self, spec: str, events: list[tuple[str, str]],
                   filter: str | None) -> list[str]:
        """Marks (``marker``, ``t:ftrace:print``, ``t:ftrace:raw_data``): writes to
        trace_marker are not events that are enabled: the instance records every write
        to its own trace_marker, and with ``copy_trace_marker`` (Linux 6.17+) a copy of
        each write to the top level's, from any process (see probewatch.mark)."""
        if filter:
            raise ProbewatchError(f"--filter does not apply to {spec!r}: the kernel does "
                                  "not filter trace_marker writes")
        names = []
        for s, n in events:
            ev = f"{s}:{n}"
            if ev in self._event_probe:
                continue
            fmt = load_format(self.root, s, n)
            self._formats[fmt.id] = fmt
            self._event_probe[ev] = spec
            names.append(ev)
        self._marks = True
        self._probes[spec] = names
        self.counts.setdefault(spec, 0)
        return names

    def _create_dynamic(self, ps: ProbeSpec) -> list[ResolvedProbe]:
        """Write uprobe/kprobe definitions to tracefs; they are removed by close()."""
        from .sources.probes import ResolvedProbe, resolve_dynamic

        pid = self._pids[0] if self._pids else None
        if ps.kind in ("kprobe", "kretprobe"):
            feat = check("kprobe_events", self.root)
            if not feat.available:
                raise FeatureUnavailable(f"cannot arm {ps.text!r}: {feat.reason}")
        probes = resolve_dynamic(ps, self.root, pid)  # once, as for every backend
        if ps.kind in ("uprobe", "uretprobe", "usdt"):
            feat = check("uprobe_events", self.root)
            if not feat.available:
                raise FeatureUnavailable(f"cannot arm {ps.text!r}: {feat.reason}")
        out = []
        for dp in probes:
            for w in dp.warnings:
                self.warnings.append(f"{ps.text}: {w}")
            ctrl = os.path.join(self.root, dp.control_file)
            with self._signals.deferred():  # defined and recorded, or neither
                try:
                    write_file(ctrl, dp.definition + "\n", append=True, root=self.root)
                except KernelRejected as e:
                    raise KernelRejected(
                        f"the kernel refused probe {ps.text!r} (definition: {dp.definition})\n"
                        + str(e).split("\n", 1)[-1]
                    ) from None
                self._dynamic.append(dp)
            out.append(ResolvedProbe(ps, dp.group, dp.name, dynamic=dp))
        return out

    def _kernel_filter(self, user: str | None) -> str | None:
        parts = []
        if user and user.strip():
            parts.append(f"({user})")
        if self.comm:
            if '"' in self.comm or "\\" in self.comm:
                raise SpecError("comm may not contain quotes or backslashes", self.comm)
            parts.append(f'comm == "{self.comm}"')
        return " && ".join(parts) or None

    @property
    def probes(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._probes.items()}

    # -- running
    def start(self, count_only: bool = False) -> None:
        """Enable the events, fork the drainer, release a traced command
        (``count_only`` changes nothing here: pages are counted without Events)."""
        if self._started:
            return
        if not self._probes:
            raise ProbewatchError("no probes added")
        with self._signals.deferred():  # the drainer is forked and recorded, or not at all
            self._start()

    def _start(self) -> None:
        self._started = True
        col = self._collector
        for s, n in _HIDDEN:
            if f"{s}:{n}" in self._event_probe:
                continue
            try:
                col.enable(s, n)
                fmt = load_format(self.root, s, n)
            except ProbewatchError:
                continue
            self._formats[fmt.id] = fmt
            self._hidden_ids.add(fmt.id)
        if self._pids:
            pids = []
            for p in self._pids:
                pids.append(p)
                try:
                    pids.extend(int(t) for t in os.listdir(f"/proc/{p}/task") if int(t) != p)
                except OSError:
                    if p != self._command.pid:
                        raise NotFound(f"no process with pid {p}") from None
            col.set_pids(pids, follow_fork=self._follow)
        if self._tracer:
            # the function tracer: its own pid filter, then switched on, before the
            # drainer opens trace_pipe_raw (an instance being read refuses a new tracer)
            inst = col.instance
            if self._pids:
                inst.set_option("function-fork", self._follow)
                inst.write("set_ftrace_pid", " ".join(str(p) for p in self._pids))
            elif self._self_pid_filter():
                # not this process, nor the drainer it forks next (function-fork)
                inst.set_option("function-fork", True)
                inst.write("set_ftrace_notrace_pid", str(os.getpid()))
            inst.write("current_tracer", self._tracer)
        if self._marks:
            from . import marks as mark

            if not col.instance.set_option("copy_trace_marker", True):
                self.warnings.append(
                    "this kernel has no copy_trace_marker option (Linux 6.17+): only "
                    "marks of this process (probewatch.mark) are shown, not those other "
                    "processes write to the top-level trace_marker")
            mark.set_active(col.instance.path)
            self._mark_dir = col.instance.path
        if self._stack is not None:
            self._arm_stacks()
        if self._text_reason is None:
            assert self._layout is not None
            self._decoder = PageDecoder(self._layout, self._formats)
            if self._stack is not None:
                self._decoder._makers[self._stack_id] = _kernel_stack_maker(self._stack_id)
        col.start(text_reason=self._text_reason)
        self.warnings.extend(col.warnings)
        if col.text_reason is not None:
            if self._text_reason is None:  # a trace_pipe_raw failed only now
                self._text_reason = col.text_reason
                self.warnings.append(text_warning(col.text_reason))
            self._decoder = None
            self._text = TextDecoder(self._formats)
            for same in self._text.duplicate_names():
                self.warnings.append(
                    f"events {', '.join(same)} share a name: the text trace_pipe does not "
                    f"show the system, so their lines are told apart by their fields only"
                )
        if self._stack is not None and col.text_reason is not None:
            raise FeatureUnavailable(
                "--stack needs the binary trace_pipe_raw reader, and this run reads the text "
                f"trace_pipe ({col.text_reason}): use --backend perf")
        self._t0 = time.monotonic()
        self._command.release()

    def _arm_stacks(self) -> None:
        """The instance's stacktrace option on: the kernel writes an ftrace:kernel_stack
        record after each event of the instance, on the same CPU."""
        if self._text_reason is not None:
            raise FeatureUnavailable(
                "--stack needs the binary trace_pipe_raw reader, and this run reads the text "
                f"trace_pipe ({self._text_reason}): use --backend perf")
        try:
            fmt = load_format(self.root, "ftrace", "kernel_stack")
        except ProbewatchError as e:
            raise FeatureUnavailable(f"this kernel has no ftrace:kernel_stack event ({e}): "
                                     "use --backend perf for stacks") from None
        if not self._collector.instance.set_option("stacktrace", True):
            raise FeatureUnavailable("this kernel's tracefs instances have no stacktrace "
                                     "option: use --backend perf for kernel stacks")
        self._stack_id = fmt.id
        self._formats[fmt.id] = fmt
        self._hidden_ids.add(fmt.id)
        from .analyze.stacks import Symbolizer

        self._symbolizer = Symbolizer()

    def _attach_stacks(self, cpu: int, evs: list[Event], start: int) -> None:
        """Give ``evs[start:]`` (one page of ``cpu``, in order) their kernel stacks: each
        ftrace:kernel_stack record belongs to the event before it on that CPU, and is
        taken out of the list."""
        last = self._last_on_cpu.get(cpu)
        out = []
        sym = self._symbolizer
        for ev in evs[start:]:
            if ev.event == "ftrace:kernel_stack":
                if last is not None and "stack" not in last.fields:
                    last.fields["stack"] = sym.frames(0, ev.fields["caller"], kernel=True)
                continue
            last = ev
            out.append(ev)
        if last is not None:
            self._last_on_cpu[cpu] = last
        evs[start:] = out

    @property
    def reader(self) -> str:
        """How events are read: ``"pages"`` (binary trace_pipe_raw) or ``"text"``
        (trace_pipe fallback; ``text_reason`` says why)."""
        return "text" if self._text_reason is not None else "pages"

    @property
    def text_reason(self) -> str | None:
        """Why the text trace_pipe is read instead of binary pages (None: it is not)."""
        return self._text_reason

    def _raw(
        self, duration: float | None, count_only: bool
    ) -> Iterator[list[Event]]:
        """Batches of time-ordered Events (or, count_only, empty batches while counting)."""
        self.start()
        col = self._collector
        dec = self._decoder
        text = self._text
        assert dec is not None or text is not None
        deadline = None if duration is None else self._t0 + duration
        cmd = self._command
        tracking_child = cmd.pid != 0
        pending = self._pending  # kept on self: a generator closed by ^C can be resumed
        by_ts = attrgetter("ts")
        backlog = 0
        runs = self.deliver_runs and dec is not None and self._stack is None
        stacks = self._stack is not None
        run_ids = frozenset(i for i, f in self._formats.items() if i not in self._hidden_ids
                            and f.event_name in self._event_probe)
        max_pending = MAX_PENDING // 64 if runs else MAX_PENDING
        while True:
            if backlog:
                # more is spooled than one slice: decode on without waiting
                if not col.stopped and (
                    (deadline is not None and time.monotonic() >= deadline)
                    or (tracking_child and cmd.exited())
                ):
                    col.stop()
            elif not col.stopped:
                now = time.monotonic()
                if (deadline is not None and now >= deadline) or (
                    tracking_child and cmd.exited()
                ):
                    col.stop()
                elif not col.drainer_alive():
                    col.stop()
                else:
                    wait = 0.2 if deadline is None else min(0.2, max(0.0, deadline - now))
                    col.wait_data(wait, cmd.pidfd if tracking_child else -1)
            else:
                col.wait_data(0.05)
            # decided before reading the spool, so the read below sees all it wrote
            drainer_gone = col.stopped and not col.drainer_alive()
            for kind, cpu, payload in col.read_spool():
                if kind == PAGE:
                    assert isinstance(payload, bytes) and dec is not None
                    if count_only:
                        self._count(dec.count_page(payload))
                        missed = dec.last_missed
                    elif runs:
                        missed = dec.decode_page_runs(payload, cpu, pending, run_ids)
                    elif stacks:
                        n0 = len(pending)
                        missed = dec.decode_page(payload, cpu, pending)
                        self._attach_stacks(cpu, pending, n0)
                    else:
                        missed = dec.decode_page(payload, cpu, pending)
                    if missed:
                        if missed > 0:
                            self._page_missed += missed
                            mpc = self._missed_per_cpu
                            mpc[cpu] = mpc.get(cpu, 0) + missed
                        self._note_gap(cpu, missed, payload)
                    self._prev_page[cpu] = payload
                elif kind == TEXT:
                    assert isinstance(payload, bytes) and text is not None
                    if count_only:
                        self._count(text.count(payload))
                    else:
                        text.feed(payload, pending)
            backlog = col.backlog()
            drainer_gone = drainer_gone and not backlog
            emit_upto = (1 << 63) if col.ended and not backlog else col.watermark
            if len(pending) > max_pending:
                # the watermark lags (a CPU the drainer could not reach): hand on the
                # oldest half rather than hold the backlog in memory
                pending.sort(key=by_ts)
                emit_upto = max(emit_upto, pending[len(pending) // 2].ts)
            if pending and emit_upto > 0:
                pending.sort(key=by_ts)
                if emit_upto >= pending[-1].ts:
                    ready = pending[:]
                    pending.clear()
                else:
                    i = bisect_right(pending, emit_upto, key=by_ts)
                    ready = pending[:i]
                    del pending[:i]
                if runs:
                    ready = _cut_runs(ready, emit_upto, pending)
                if ready:
                    yield self._finish(ready)
            if (col.ended and not backlog) or drainer_gone:
                if text is not None:  # an unterminated last line (never from the kernel)
                    if count_only:
                        self._count(text.count(b"\n"))
                    else:
                        text.flush(pending)
                if pending:
                    pending.sort(key=by_ts)
                    rest = pending[:]
                    pending.clear()
                    if runs:
                        rest = _cut_runs(rest, 1 << 63, pending)
                    yield self._finish(rest)
                self._done = True
                self.warnings.extend(self.text_problems())
                self.warnings.extend(self.spool_problems())
                break
            if count_only:
                yield []
        self._t1 = time.monotonic()

    def _probe_of_id(self, type_id: int | None) -> str | None:
        fmt = self._formats.get(type_id) if type_id is not None else None
        if fmt is None or type_id in self._hidden_ids:
            return None
        return self._event_probe.get(fmt.event_name)

    def _note_gap(self, cpu: int, missed: int, page: bytes) -> None:
        """Record a gap before ``page`` in ``cpu``'s stream (``missed`` events, -1: the
        page had no room to say how many) and whose events surround it: the last event
        read on that CPU before it and the first one after it, when they are of the same
        probe (or only one of them exists)."""
        dec = self._decoder
        if dec is None:
            return
        after = before = None
        try:
            for _ts, tid, _s, _e in dec.iter_records(page):
                after = tid
                break
            prev = self._prev_page.get(cpu)
            if prev is not None:
                for _ts, tid, _s, _e in dec.iter_records(prev):
                    before = tid
        except DecodeError:
            pass
        probes = {self._probe_of_id(i) for i in (before, after) if i is not None}
        probe = probes.pop() if len(probes) == 1 else None
        if missed > 0:
            counts = self._gap_counts.setdefault(cpu, {})
            counts[probe] = counts.get(probe, 0) + missed
        else:
            self._gap_uncounted.setdefault(cpu, set()).add(probe)

    def _lost_split(self, lost_per_cpu: dict[int, int]) -> tuple[dict[str, int],
                                                                   dict[int, int]]:
        """The kernel's per-CPU losses split into (per probe, per CPU only).

        A gap whose count the page stored goes to the probe around it; what the kernel
        counted on a CPU beyond the stored counts goes to a probe only when every gap
        without a count on that CPU lay between that one probe's events (e.g. one probe
        traced there), and otherwise stays a loss of that CPU only.
        """
        per_probe: dict[str, int] = {}
        cpu_only: dict[int, int] = {}
        for cpu, lost in lost_per_cpu.items():
            counts = self._gap_counts.get(cpu, {})
            placed = 0
            for probe, n in counts.items():
                if probe is not None and placed + n <= lost:
                    per_probe[probe] = per_probe.get(probe, 0) + n
                    placed += n
            rest = lost - sum(counts.values())
            unc = self._gap_uncounted.get(cpu, set())
            if rest > 0 and len(unc) == 1 and None not in unc:
                probe = next(iter(unc))
                assert probe is not None
                per_probe[probe] = per_probe.get(probe, 0) + rest
                placed += rest
            cpu_only[cpu] = max(0, lost - placed)
        return per_probe, cpu_only

    def _count(self, per_id: dict[int, int]) -> None:
        fmts = self._formats
        for fid, n in per_id.items():
            fmt = fmts.get(fid)
            if fmt is None or fid in self._hidden_ids:
                continue
            probe = self._event_probe.get(f"{fmt.system}:{fmt.name}")
            if probe is not None:
                self.counts[probe] = self.counts.get(probe, 0) + n

    def _finish(self, batch: list[Event]) -> list[Event]:
        """Fill pid/comm/probe, apply exec/rename to the comm cache, drop hidden events."""
        tasks = self.tasks
        probe_of = self._event_probe
        counts = self.counts
        text = self._text is not None
        out = []
        for ev in batch:
            if type(ev) is EventRun:
                probe = probe_of.get(ev.event)
                if probe is not None:
                    ev.pid, ev.comm = tasks[ev.tid]
                    ev.probe = probe
                    counts[probe] += len(ev.tss)
                    out.append(ev)
                continue
            if text and ev.tid not in tasks and ev.pid > 0 and ev.comm not in ("", "<...>"):
                tasks[ev.tid] = (ev.pid, ev.comm)  # what the kernel printed on the line
            ev.pid, ev.comm = tasks[ev.tid]
            probe = probe_of.get(ev.event)
            if ev.event == "sched:sched_process_exec":
                fn = ev.fields.get("filename", "")
                if isinstance(fn, str) and fn:
                    tasks.update_comm(ev.tid, os.path.basename(fn)[:15])
                    ev.comm = tasks[ev.tid][1]
            elif ev.event == "task:task_rename":
                nc = ev.fields.get("newcomm")
                if isinstance(nc, str):
                    tasks.update_comm(ev.tid, nc)
            if probe is None:
                continue
            if ev.event == "ftrace:print":
                _mark_fields(ev)
            elif self._tracer and ev.event.startswith("ftrace:f"):
                self._func_fields(ev)
            ev.probe = probe
            counts[probe] += 1
            out.append(ev)
        return out

    @property
    def clock(self) -> str:
        """The trace clock of the private instance (Event.ts)."""
        return str(self._collector.clock)

    def stop(self) -> None:
        """Turn tracing off; what is buffered can still be read (drain(), count())."""
        col = getattr(self, "_collector", None)
        if col is not None:
            col.stop()

    def summary(self) -> Summary:
        stats = self._collector.stats()
        text = self._text
        s = Summary(
            events=dict(self.counts),
            lost_per_cpu={c: st.lost for c, st in stats.items()},
            page_missed=self._page_missed,
            unknown=getattr(self._decoder, "unknown", 0),
            duration=(self._t1 or time.monotonic()) - (self._t0 or time.monotonic()),
            missed_per_cpu=dict(self._missed_per_cpu),
            reader=self.reader,
            spool_limit=self._collector.spool_bytes,
            spool_peak=self._collector.spool_peak,
            spool_full=self._collector.spool_full_ns / 1e9,
        )
        if text is not None:
            s.page_missed = text.lost
            s.missed_per_cpu = dict(text.lost_per_cpu)
            s.unknown = text.unknown + text.bad
        s.lost = sum(s.lost_per_cpu.values())
        if text is None:
            s.lost_per_probe, s.lost_cpu_only = self._lost_split(s.lost_per_cpu)
        else:
            s.lost_cpu_only = dict(s.lost_per_cpu)
        return s

    def spool_problems(self) -> list[str]:
        """Why events were dropped on our side: the spool was full for a while."""
        col = getattr(self, "_collector", None)
        if col is None or not col.spool_full_ns:
            return []
        where = "in memory" if col.spool_dir is None else f"in {col.spool_dir}"
        return [
            f"the consumer fell behind: the spool ({col.spool_bytes >> 20} MiB {where}) "
            f"was full for {col.spool_full_ns / 1e9:.2f}s and the kernel dropped events "
            f"meanwhile (counted in 'lost'; --spool-mb sets the bound)"
        ]

    def text_problems(self) -> list[str]:
        """What the text reader could not take in (empty for the binary reader)."""
        t = self._text
        if t is None:
            return []
        out = []
        if t.bad:
            out.append(f"{t.bad} trace_pipe line(s) could not be parsed, e.g. "
                       f"{t.bad_samples[0][:160]!r}")
        if t.lost_unknown:
            out.append(f"{t.lost_unknown} '[LOST EVENTS]' line(s) without a count")
        if t.ambiguous:
            out.append(f"{t.ambiguous} line(s) fit two events of the same name; "
                       f"the first was taken")
        return out

    def _remove_dynamic(self) -> None:
        if self._dynamic:
            for err in _remove_dynamic_probes(self.root, self._dynamic):
                self.warnings.append(err)

    def close(self) -> None:
        """Remove everything this session created in the kernel. Idempotent.

        Signals are held back while it runs (a second SIGTERM cannot cut the clean-up
        short) and acted on when it is done.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with self._signals.deferred():
                try:
                    self._command.close()  # a command never released is killed
                    if self._tracer and getattr(self, "_collector", None) is not None:
                        try:  # the tracer off before the instance goes
                            self._collector.instance.write("current_tracer", "nop")
                        except ProbewatchError:
                            pass
                    if self._mark_dir:  # its open trace_marker would keep the instance
                        from . import marks as mark

                        mark.clear_active(self._mark_dir)
                        self._mark_dir = ""
                    col = getattr(self, "_collector", None)
                    if col is not None:  # None: __init__ was cut short before it
                        col.close()
                finally:
                    self._remove_dynamic()
        finally:
            self._signals.restore()
            _live.discard(self)


def _kernel_stack_maker(type_id: int) -> Callable[[Any, int, int, int, int], Event]:
    """The decoder of ftrace:kernel_stack records (``int size; unsigned long
    caller[size]``: the format shows 8 callers, a record holds ``size``)."""
    import struct

    head = struct.Struct("<4xii")

    def make(buf: Any, start: int, end: int, ts: int, cpu: int) -> Event:
        tid, n = head.unpack_from(buf, start)
        n = max(0, min(n, (end - start - 16) // 8))
        callers = list(struct.unpack_from(f"<{n}Q", buf, start + 16)) if n else []
        while callers and not callers[-1]:
            callers.pop()
        return Event(ts, cpu, tid, tid, "", "ftrace:kernel_stack", "", {"caller": callers})

    return make


def _mark_fields(ev: Event) -> None:
    """A mark's text (``buf``) parsed into ``mark``, ``phase`` and its JSON fields
    (probewatch.mark.parse_mark); the kernel's ``ip`` (tracing_mark_write) is dropped."""
    from .marks import parse_mark

    buf = ev.fields.get("buf")
    if isinstance(buf, str):
        if buf.endswith("\n"):
            buf = buf[:-1]
        ev.fields = {**parse_mark(buf), "buf": buf}


def _cut_runs(ready: list[Any], upto: int, pending: list[Any]) -> list[Any]:
    """``ready`` (sorted by ts) with the events of its runs stamped after ``upto`` put
    back into ``pending``; and where runs overlap other items in time (events of two
    CPUs interleaved), those as single Events in time order."""
    last = -1
    overlap = False
    for i, x in enumerate(ready):
        if x.ts < last:
            overlap = True
        if type(x) is EventRun:
            if x.last > upto:
                k = bisect_right(x.tss, upto)
                if k == 0:
                    pending.append(x)
                    ready[i] = None
                    continue
                ready[i], rest = x.split(k)
                pending.append(rest)
                x = ready[i]
            if x.last > last:
                last = x.last
        elif x.ts > last:
            last = x.ts
    if len(pending) > 1:
        pending.sort(key=attrgetter("ts"))
    ready = [x for x in ready if x is not None]
    if overlap:
        ready = expand(ready)
        ready.sort(key=attrgetter("ts"))
    return ready


def _remove_dynamic_probes(root: str, probes: list[DynamicProbe]) -> list[str]:
    errors = []
    for dp in reversed(probes):
        try:
            remove_dynamic_event(root, dp.kind[:1], dp.group, dp.name)
        except ProbewatchError as e:
            errors.append(str(e))
    probes.clear()
    return errors


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def choose_reader(
    root: str, env: Mapping[str, str], raw_unavailable: Callable[[], str | None]
) -> tuple[PageLayout | None, str | None]:
    """-> (page layout or None, why the text trace_pipe must be read or None).

    The binary reader needs the ring-buffer layout from ``events/header_page`` and
    ``header_event`` and every CPU's ``trace_pipe_raw``; ``PROBEWATCH_FTRACE_TEXT=1``
    asks for text regardless.

    Example::

        layout, why = choose_reader("/sys/kernel/tracing", os.environ, lambda: None)
        why   # None: binary pages
    """
    layout: PageLayout | None = None
    why: str | None = None
    try:
        layout = parse_header_layout(
            _read(os.path.join(root, "events/header_page")),
            _read(os.path.join(root, "events/header_event")),
        )
    except DecodeError as e:
        why = f"the ring-buffer page layout cannot be parsed ({e})"
    except OSError as e:
        why = f"{e.filename or 'events/header_page'} cannot be read ({e.strerror})"
    forced = env.get(TEXT_ENV, "").strip()
    if forced and forced != "0":
        return layout, f"{TEXT_ENV}={forced} is set"
    if why is None:
        why = raw_unavailable()
    return layout, why


def text_warning(reason: str) -> str:
    """The one warning a session gives when it reads the text trace_pipe."""
    return (
        f"ftrace: reading the text trace_pipe instead of binary trace_pipe_raw pages "
        f"because {reason}; timestamps are rounded to microseconds, and char * pointer "
        f"fields and fields the kernel does not print (arrays over 8 bytes, cpumasks) "
        f"are null"
    )


@atexit.register
def _close_all() -> None:
    for s in list(_live):
        try:
            s.close()
        except BaseException:  # a signal held back during close(): exiting anyway
            pass
