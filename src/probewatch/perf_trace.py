"""PerfTraceSession: ``probewatch trace`` on the perf_event backend, same API and Events
as the ftrace Session.

Tracepoints (``t:``, globs) are perf tracepoint events; ``u:``/``ur:`` uprobes and
uretprobes go through the kernel's ``uprobe`` PMU (fd-based: the kernel removes them
when the fds close, even after SIGKILL), ``k:``/``kr:`` kprobes through the ``kprobe``
PMU where the kernel has one. Records are decoded by the same format-driven
decoder as ftrace's pages (:mod:`probewatch.decode.format`), and uprobe events are
named ``probewatch_<pid>:<symbol>_<n>`` with the fields the other backends give
(``__probe_ip`` or ``__probe_func``/``__probe_ret_ip``, then the arguments). So
``--json`` output is interchangeable between the backends.

Uprobe arguments: a PMU probe cannot fetch arguments itself; arguments that are
registers (``argN`` up to the register arguments, ``retval``, ``%REG``) come from
the user registers sampled with the event (PERF_SAMPLE_REGS_USER), exactly. A probe
whose arguments read memory (``string``, ``+OFF(...)``, stack arguments) or whose
``--filter`` names its arguments is defined in tracefs instead (``uprobe_events``,
group ``probewatch_<pid>``, removed on close and swept after a SIGKILL, as the
ftrace backend does) and opened as a tracepoint; the session warns when it does so.
USDT probes (``U:``) are always defined that way.

Losses: ``generated`` per probe is the kernel's count (counting twins of the sampling
events), ``lost_per_probe`` = generated - delivered. One thing no perf counter sees: a
BPF program attached to the same tracepoint by anyone (libbpf/bcc ``tracepoint``
programs, the bpf backend) gates the tracepoint's whole perf path: the kernel hands a
hit to the perf events only when every attached program returns non-zero, and most
return 0, so those hits reach neither the rings nor the counters (this was the 0-100%
shortfall of perf runs on the shared test machine). So every tracepoint probe (up to
:data:`MAX_REFEREES`) also has a referee count on the ftrace path, which BPF does not
gate (:mod:`probewatch.collect.tpreferee`, a private tracefs instance, same filter and
tasks, its window inside perf's): ``generated`` = max(perf's counter, referee), and
what the referee counted beyond perf is lost per probe (``bpf_hidden``), with a
warning naming the programs. They are looked for (:mod:`probewatch.kernel.bpfgate`)
before enabling, every :data:`GATE_CHECK_S` while running and at the end
(``bpf_gated``); without a referee (``referee=False``) a gated probe's counts are
lower bounds and the warning says so. The referee costs an ftrace write per hit
(~0.1-1 us, the ftrace backend's floor).

``--filter`` is the tracefs filter syntax, evaluated in the kernel
(PERF_EVENT_IOC_SET_FILTER). ``comm`` comes from the kernel's COMM records (exec,
rename) and /proc for tasks seen first.

Example::

    from probewatch.perf_trace import PerfTraceSession
    with PerfTraceSession() as s:
        s.add("t:sched:sched_process_exec")
        s.trace_command(["sh", "-c", "/bin/true"])
        for ev in s.events():
            print(ev.pid, ev.comm, ev.fields["filename"])
"""

from __future__ import annotations

import atexit
import os
import signal
import time
import weakref
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from .collect.command import GatedCommand, SignalGuard
from .collect.perf import (
    PAGE,
    PERF_REGS,
    PerfCollector,
)
from .decode.format import EventFormat, load_format
from .decode.perfring import Handler, PerfDecoder, RegArg, UprobeDecode, pmu_uprobe_decoder
from .errors import (
    FeatureUnavailable,
    KernelRejected,
    NotFound,
    ProbewatchError,
    SpecError,
)
from .event import Event
from .session import Session, Summary
from .sources.probes import ResolvedProbe, resolve
from .sources.spec import ProbeSpec, parse_spec

_live: weakref.WeakSet[PerfTraceSession] = weakref.WeakSet()

#: events younger than this (ns) wait for records of other CPUs still in flight
ORDER_LAG_NS = 2_000_000
#: the default ring per CPU, KiB, as the bpf backend's: the reader decodes in this
#: process, slower than a syscall firehose produces (4 MiB rings lost 63% of 1M getppid
#: events), so the rings absorb bursts of about a million events (64-byte samples)
DEFAULT_BUFFER_KB = 32768
#: seconds between looks for BPF programs gating our tracepoints through BPF links
#: (~0.2 ms each) and through every process's perf event fds (~20 ms each)
GATE_CHECK_S = 0.25
GATE_SCAN_S = 2.0
#: tracepoints per session that get a referee count (one tracefs instance each)
MAX_REFEREES = 8
#: why a session that follows processes through fork defines its uprobes in tracefs:
#: a uprobe PMU event is re-created for the child at fork, and the kernel then reads the
#: probe's path from the forking process's memory at the address the tracer gave, which
#: fails (the traced program's fork() fails: "Cannot fork")
_INHERIT_WHY = ("a traced process's children inherit its probes, which a uprobe PMU "
                "event cannot do (the kernel fails the child's fork)")
#: the same for the kprobe PMU: the child's copy of the event reads the function's name
#: from the forking process's memory at the tracer's address (checked in a stock Debian
#: 6.1 kernel: "sh: Cannot fork"); the address form would work but registers a kprobe
#: per child and CPU, while a tracefs kprobe is one kprobe that every copy shares
_KINHERIT_WHY = ("a traced process's children inherit its probes, which a kprobe PMU "
                 "event cannot do (the kernel fails the child's fork)")
#: stacks (pid, user ips, kernel ips) kept named, for call sites that repeat
STACK_CACHE = 4096


@dataclass
class PerfSummary(Summary):
    """Summary plus what the perf backend knows per probe: how often each fired for a
    wanted task (the kernel's counters: ``generated``) and how many of those the rings
    dropped (``lost_per_probe``; delivered + lost = generated, per probe)."""

    generated: dict[str, int] = field(default_factory=dict)
    lost_per_probe: dict[str, int] = field(default_factory=dict)
    lost_records: int = 0
    startup: float = 0.0
    #: probes whose tracepoint had BPF programs attached during the run (descriptions)
    #: that hid hits from perf (``bpf_hidden``), or, for a probe without a referee,
    #: might have: then its ``events``/``generated`` are lower bounds
    bpf_gated: dict[str, list[str]] = field(default_factory=dict)
    #: per probe: hits a BPF program hid from perf, counted by the ftrace-path referee
    #: (part of ``generated`` and ``lost_per_probe``)
    bpf_hidden: dict[str, int] = field(default_factory=dict)
    #: PERF_RECORD_THROTTLE records (the kernel stopped a sampling event for a while;
    #: what it missed meanwhile is in ``lost_per_probe`` through the counting twins)
    throttles: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(backend="perf", generated=dict(self.generated),
                 lost_per_probe=dict(self.lost_per_probe), lost_records=self.lost_records,
                 startup=round(self.startup, 6), throttles=self.throttles,
                 bpf_gated={k: list(v) for k, v in self.bpf_gated.items()},
                 bpf_hidden=dict(self.bpf_hidden),
                 lost_per_cpu_only={})  # every loss is a probe's (the kernel's counters)
        return d


class PerfTraceSession(Session):
    """The perf_event backend of :class:`probewatch.session.Session`
    (``Session(backend="perf")``).

    Everything it creates in the kernel is a perf event fd (plus, for probes that read
    user memory, a tracefs probe definition); close() (``with``-exit, exceptions,
    SIGINT, SIGTERM, interpreter exit) removes it all.
    """

    backend = "perf"

    def __init__(
        self,
        backend: str = "perf",
        buffer_kb: int | None = None,
        pids: Sequence[int] | None = None,
        comm: str | None = None,
        follow_children: bool = True,
        spool_mb: int | None = None,
        spool_dir: str | None = None,
        stack: str | None = None,
        referee: bool = True,
    ) -> None:
        # referee: count each tracepoint probe's hits on the ftrace path too (a private
        # tracefs instance, an ftrace write per hit), which BPF programs do not gate: the hits
        # they hid from perf become exact per-probe losses (up to MAX_REFEREES probes)
        # spool_mb / spool_dir: ftrace's; the perf rings are bounded by themselves
        # stack: "user", "kernel" or "both": every Event gets fields["stack"], a list
        # of frames {addr, symbol, offset, module}, innermost first (kernel then user)
        if stack not in (None, "user", "kernel", "both"):
            raise ProbewatchError(f"stack must be user, kernel or both (got {stack!r})")
        self._stack = stack
        if backend not in ("auto", "perf"):
            raise ProbewatchError(f"PerfTraceSession is the perf backend, not {backend!r}")
        self._t_init = time.monotonic()
        self._closed = False
        self._command = GatedCommand()
        self._dynamic: list[Any] = []
        self._col: PerfCollector | None = None
        self._signals = SignalGuard(chain=(signal.SIGINT,))
        self._signals.install()
        _live.add(self)
        try:
            from .kernel.tracefs import sweep_stale, tracefs_root

            self.root = tracefs_root()
            sweep_stale(self.root)
        except BaseException:
            self.close()
            raise
        kb = buffer_kb or DEFAULT_BUFFER_KB
        pages = 1
        while pages * PAGE < kb * 1024:
            pages <<= 1
        self._pages = pages
        self.comm = comm
        if comm is not None and ('"' in comm or "\\" in comm):
            raise SpecError("comm may not contain quotes or backslashes", comm)
        self._pids = list(pids or [])
        self._follow = follow_children
        self._handlers: list[Handler] = []
        #: what start() arms: (resolved probe, kernel filter, regs mask)
        self._pending_probes: list[tuple[ResolvedProbe, str | None, int]] = []
        #: (handler index, spec, text, probe, kernel filter) of uprobes on the PMU
        self._pmu_uprobes: list[tuple[int, ProbeSpec, str, Any, str | None]] = []
        self._probes: dict[str, list[str]] = {}
        self._events_seen: set[str] = set()
        self._formats: dict[int, Any] = {}
        self._started = False
        self._sampling = True
        self.counts: dict[str, int] = {}
        self.warnings: list[str] = []
        self._pending: list[Event] = []
        self._stopped = False
        self._done = False
        self._t0 = 0.0
        self._t1 = 0.0
        self._faults = [0]
        self._dec = PerfDecoder({}, self.counts)
        #: tracepoint name (no system) -> the probe specs armed on it (static ones only:
        #: PMU and tracefs-defined probes are private to this session)
        self._gate_events: dict[str, list[str]] = {}
        #: probe spec -> {BPF program id: description} seen gating it
        self._gates: dict[str, dict[int, str]] = {}
        self._gate_next = 0.0
        self._gate_scan_next = 0.0
        self._gate_warned = False
        #: handler indexes of static tracepoints (the ones BPF can gate)
        self._tp_handlers: set[int] = set()
        self._use_referee = referee
        #: handler index -> its tracepoint's referee (see probewatch.collect.tpreferee)
        self._referees: dict[int, Any] = {}

    # -- context management
    # -- probes
    def _kernel_filter(self, user: str | None) -> str | None:
        parts = []
        if user and user.strip():
            parts.append(f"({user})")
        if self.comm:
            parts.append(f'comm == "{self.comm}"')
        return " && ".join(parts) or None

    def add(self, spec: str, filter: str | None = None) -> list[str]:
        """Arm a probe spec; returns the "system:name" events it produced.

        Kinds: ``t:`` tracepoints (globs expand), ``u:``/``ur:`` uprobes and uretprobes,
        ``U:`` USDT, ``k:``/``kr:`` kprobes (kprobe PMU). ``filter``: tracefs syntax,
        run in the kernel.
        """
        if self._started:
            raise ProbewatchError("cannot add probes after the session has started")
        ps = parse_spec(spec)
        if filter is not None and not filter.strip():
            filter = None
        kf = self._kernel_filter(filter)
        names: list[str] = []
        if ps.kind == "tracepoint":
            for rp in resolve(ps, self.root):
                if rp.event in self._events_seen:
                    continue
                self._add_handler(rp, spec, kf, fmt=rp.fmt)
                names.append(rp.event)
        elif ps.kind in ("uprobe", "uretprobe"):
            names = self._add_uprobe(ps, spec, filter, kf)
        elif ps.kind == "usdt":
            pid = self._pids[0] if self._pids else None
            for rp in resolve(ps, self.root, pid):
                assert rp.dynamic is not None
                names.append(self._add_defined(ps, spec, rp.dynamic, kf))
        elif ps.kind in ("kprobe", "kretprobe"):
            names = self._add_kprobe(ps, spec, kf)
        else:  # pragma: no cover - parse_spec knows no other kinds
            raise ps.error(f"the perf backend does not support {ps.kind} probes", part="kind")
        self._probes[spec] = names
        self.counts.setdefault(spec, 0)
        return names

    def _add_handler(self, rp: ResolvedProbe, spec: str, kf: str | None,
                     fmt: EventFormat | None = None, udec: UprobeDecode | None = None,
                     regs_mask: int = 0) -> None:
        ev = rp.event
        h = Handler(ev, spec, len(self._handlers), fmt=fmt, udec=udec)
        self._handlers.append(h)
        self._pending_probes.append((rp, kf, regs_mask))
        self._events_seen.add(ev)
        if fmt is not None and rp.fmt is not None:  # a kernel format (PMU ones: by index)
            self._formats[fmt.id] = fmt

    def _add_uprobe(self, ps: ProbeSpec, spec: str, user_filter: str | None,
                    kf: str | None) -> list[str]:
        pid = self._pids[0] if self._pids else None
        names = []
        for rp in resolve(ps, self.root, pid):
            dp = rp.dynamic
            assert dp is not None
            for w in dp.warnings:
                self.warnings.append(f"{ps.text}: {w}")
            why = None if not (user_filter and ps.args) else "its --filter names arguments"
            if why is None and self._pids and self._follow:
                why = _INHERIT_WHY
            regargs: list[RegArg] = []
            mask = 0
            if why is None and ps.args:
                why, regargs, mask = _register_args(ps, dp.target_path)
            if why is not None:
                self.warnings.append(
                    f"{ps.text}: defined in tracefs (uprobe_events) rather than through "
                    f"the uprobe PMU because {why}; it is removed when the run ends")
                names.append(self._add_defined(ps, spec, dp, kf))
                continue
            retprobe = ps.kind == "uretprobe"
            ev = f"{dp.group}:{dp.name}"
            nregs = bin(mask).count("1")
            fmt = _uprobe_format(dp.group, dp.name, retprobe, ps, dp.target_path)
            self._formats[-1 - len(self._handlers)] = fmt
            self._add_handler(rp, spec, kf, regs_mask=mask,
                              udec=pmu_uprobe_decoder(regargs, retprobe, nregs, self._faults))
            self._dynamic_info.append(dp)
            self._pmu_uprobes.append((len(self._handlers) - 1, ps, spec, dp, kf))
            names.append(ev)
        return names

    def _pmu_uprobes_to_tracefs(self) -> None:
        """Define the PMU uprobes and kprobes added so far in tracefs instead (see
        _INHERIT_WHY, _KINHERIT_WHY): the session now follows processes through fork."""
        todo, self._pmu_uprobes = self._pmu_uprobes, []
        for i, ps, spec, dp, kf in todo:
            n = len(self._handlers)
            self._add_defined(ps, spec, dp, kf)  # appended: move it into place i
            h = self._handlers.pop()
            pend = self._pending_probes.pop()
            assert len(self._handlers) == n
            h.index = i
            self._handlers[i] = h
            self._pending_probes[i] = pend
            if dp in self._dynamic_info:
                self._dynamic_info.remove(dp)
            self.warnings.append(_defined_note(
                ps, _KINHERIT_WHY if ps.kind in ("kprobe", "kretprobe") else _INHERIT_WHY))

    @property
    def _dynamic_info(self) -> list[Any]:
        """Probes resolved for the PMU (reported by dynamic_probes, never in tracefs)."""
        if not hasattr(self, "_pmu_probes"):
            self._pmu_probes: list[Any] = []
        return self._pmu_probes

    @property
    def dynamic_probes(self) -> list[Any]:
        """The uprobe/kprobe/USDT probes this session resolved (DynamicProbe)."""
        return list(self._dynamic) + list(self._dynamic_info)

    def _add_kprobe(self, ps: ProbeSpec, spec: str, kf: str | None) -> list[str]:
        from .kernel.features import check

        if ps.args:  # the PMU fetches no arguments: a tracefs kprobe does
            feat = check("kprobe_events", self.root)
            if not feat.available:
                raise FeatureUnavailable(f"cannot arm {ps.text!r}: {feat.reason}")
            return [self._add_defined(ps, spec, rp.dynamic, kf)
                    for rp in resolve(ps, self.root)]
        PerfCollector(pages=1).add_kprobe(ps.symbol or "", 0, False, ps.text)  # the PMU?
        names = []
        for rp in resolve(ps, self.root):
            if self._pids and self._follow:  # see _KINHERIT_WHY
                self.warnings.append(_defined_note(ps, _KINHERIT_WHY))
                names.append(self._add_defined(ps, spec, rp.dynamic, kf))
                continue
            self._pmu_uprobes.append((len(self._handlers), ps, spec, rp.dynamic, kf))
            retprobe = ps.kind == "kretprobe"
            fmt = _kprobe_format(rp.system, rp.name, retprobe)
            self._formats[-1 - len(self._handlers)] = fmt
            # decoded by the format (kprobe records carry the addresses only); armed
            # through the PMU by the ResolvedProbe (no fmt: not a tracefs event)
            self._add_handler(rp, spec, kf, fmt=fmt)
            names.append(rp.event)
        return names

    def _add_defined(self, ps: ProbeSpec, spec: str, dp: Any, kf: str | None) -> str:
        """A probe written to tracefs (removed by close()) and opened as a tracepoint."""
        from .kernel.features import check
        from .kernel.tracefs import write_file

        feat = check("kprobe_events" if dp.kind in ("kprobe", "kretprobe")
                     else "uprobe_events", self.root)
        if not feat.available:
            raise FeatureUnavailable(f"cannot arm {ps.text!r}: {feat.reason}")
        with self._signals.deferred():  # defined and recorded, or neither
            try:
                write_file(os.path.join(self.root, dp.control_file), dp.definition + "\n",
                           append=True, root=self.root)
            except KernelRejected as e:
                raise KernelRejected(
                    f"the kernel refused probe {ps.text!r} (definition: {dp.definition})\n"
                    + str(e).split("\n", 1)[-1]) from None
            self._dynamic.append(dp)
        fmt = load_format(self.root, dp.group, dp.name)
        rp = ResolvedProbe(ps, dp.group, dp.name, fmt=fmt, dynamic=dp)
        self._add_handler(rp, spec, kf, fmt=fmt)
        return rp.event

    @property
    def probes(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._probes.items()}

    # -- commands
    def trace_command(self, argv: Sequence[str]) -> int:
        """Start ``argv`` gated (it waits until tracing is on) and trace it and its children."""
        pid = super().trace_command(argv)
        self._pmu_uprobes_to_tracefs()
        return pid

    # -- running
    def start(self, count_only: bool = False) -> None:
        """Open the perf events (counters only when ``count_only``), enable them, then
        release a gated command."""
        if self._started:
            return
        if not self._probes:
            raise ProbewatchError("no probes added")
        self._started = True
        self._sampling = not count_only
        with self._signals.deferred():  # the collector is recorded before it opens fds
            col = PerfCollector(pages=self._pages, pids=self._pids,
                                inherit=self._follow, sampling=self._sampling,
                                callchain=self._stack)
            self._col = col
            for rp, kf, mask in self._pending_probes:  # the Collector interface
                col.arm(rp, kf, regs_mask=mask)
            for p in self._pids:
                if p != self._command.pid and not os.path.exists(f"/proc/{p}"):
                    raise NotFound(f"no process with pid {p}")
            col.open()
            for (rp, _kf, _m), h in zip(self._pending_probes, self._handlers, strict=True):
                if rp.fmt is None or rp.dynamic is not None:
                    continue
                self._tp_handlers.add(h.index)
                specs = self._gate_events.setdefault(rp.name, [])
                if h.probe not in specs:
                    specs.append(h.probe)
            self._check_gates(scan_fds=True)
            self._open_referees(col)
            self._dec = PerfDecoder(
                {i: self._handlers[k] for k, p in enumerate(col.probes) for i in p.ids},
                self.counts, nprobes=len(self._handlers),
                lost_per_cpu=dict.fromkeys(col.rings, 0))
            if self._stack is not None and self._sampling:
                from .analyze.stacks import Symbolizer

                sym = Symbolizer()
                # a repeated stack (a hot call site) is named once; an mmap or exec of
                # the process may rename its frames: its entries are dropped then
                cache: dict[tuple[int, tuple[int, ...], tuple[int, ...]], list[Any]] = {}

                def stack_of(pid: int, user: list[int], kern: list[int]) -> list[Any]:
                    key = (pid, tuple(user), tuple(kern))
                    hit = cache.get(key)
                    if hit is None:
                        if len(cache) >= STACK_CACHE:
                            cache.clear()
                        hit = cache[key] = (sym.frames(pid, kern, kernel=True)
                                            + sym.frames(pid, user, False))
                    return list(hit)

                def on_mmap(pid: int, *a: Any) -> None:
                    sym.add_mapping(pid, *a)
                    cache.clear()

                def on_exec(pid: int) -> None:
                    sym.forget(pid)
                    cache.clear()

                self._dec.stack_of = stack_of
                self._dec.on_mmap = on_mmap
                self._dec.on_exec = on_exec
            col.enable()
            for ref in self._referees.values():  # inside perf's window: never more
                ref.start()
            self._t0 = time.monotonic()
            self._command.release()

    def _raw(self, duration: float | None, count_only: bool) -> Iterator[list[Event]]:
        """Batches of time-ordered Events (count_only: empty batches while counting)."""
        self.start(count_only=count_only)
        col = self._col
        assert col is not None
        deadline = None if duration is None else self._t0 + duration
        cmd = self._command
        tracking = cmd.pid != 0
        pending = self._pending
        by_ts = attrgetter("ts")
        while True:
            done = self._stopped
            if not done:
                if deadline is not None and time.monotonic() >= deadline:
                    done = True
                elif tracking and cmd.exited():
                    done = True
            if done and col.enabled:
                self._stop_referees()
                col.disable()
            if self._gate_events and time.monotonic() >= self._gate_next:
                self._check_gates(scan_fds=time.monotonic() >= self._gate_scan_next)
            if not done:
                wait = 100.0 if deadline is None else max(
                    0.0, min(100.0, (deadline - time.monotonic()) * 1000))
                col.poll(wait, cmd.pidfd if tracking else -1)
            horizon = time.monotonic_ns() - ORDER_LAG_NS
            decode = self._dec.decode
            for cpu, chunk in col.read():
                decode(cpu, chunk, None if count_only else pending)
            if count_only:
                if done:
                    break
                yield []
                continue
            if pending:
                pending.sort(key=by_ts)
                if done:
                    ready = pending[:]
                    pending.clear()
                else:
                    i = bisect_right(pending, horizon, key=by_ts)
                    ready = pending[:i]
                    del pending[:i]
                if ready:
                    counts = self.counts
                    for ev in ready:
                        counts[ev.probe] += 1
                    yield ready
            if done:
                break
        if not self._sampling:  # counters only: the kernel counted everything
            for h, n in zip(self._handlers, col.counts(), strict=True):
                self.counts[h.probe] += n
                self._dec.seen[h.index] += n
        self._check_gates(scan_fds=True)
        self._warn_gates()
        self._done = True
        self._t1 = time.monotonic()

    def _open_referees(self, col: PerfCollector) -> None:
        """A referee count (ftrace path) per tracepoint probe, up to MAX_REFEREES."""
        if not self._use_referee:
            return
        from .collect.tpreferee import Referee

        me = os.getpid()
        without: list[str] = []
        for (rp, kf, _m), h in zip(self._pending_probes, self._handlers, strict=True):
            if rp.fmt is None or rp.dynamic is not None:
                continue
            if len(self._referees) >= MAX_REFEREES:
                if h.probe not in without:
                    without.append(h.probe)
                continue
            filt = kf
            if not self._pids:  # as the collector's system-wide filter
                filt = f"({kf}) && common_pid != {me}" if kf else f"common_pid != {me}"
            ref = Referee(self.root, rp.system, rp.name, filt, pids=self._pids,
                          follow=self._follow)
            self._referees[h.index] = ref
            try:
                ref.open(col.tasks if self._pids else [])
            except ProbewatchError as e:
                del self._referees[h.index]
                ref.close()
                self.warnings.append(f"{h.probe}: no referee count ({e}): hits a BPF "
                                     "program attached to it hides from perf are not counted")
        if without:
            self.warnings.append(
                f"no referee count beyond {MAX_REFEREES} tracepoint probes: hits a BPF "
                "program attached to the tracepoint hides from perf are not counted for "
                + ", ".join(without))

    def _stop_referees(self) -> None:
        for ref in self._referees.values():  # before perf stops: never more than perf
            try:
                ref.stop()
            except ProbewatchError:
                pass

    def _hidden_by_event(self, twins: list[int]) -> list[tuple[Handler, int, int]]:
        """(handler, hits hidden by BPF, referee count) where the referee counted more
        than perf's counter."""
        out = []
        for h, n in zip(self._handlers, twins, strict=True):
            ref = self._referees.get(h.index)
            if ref is not None and ref.final is not None and ref.final > n:
                out.append((h, ref.final - n, ref.final))
        return out

    def _hidden(self, twins: list[int]) -> dict[str, int]:
        """Per probe: hits the referees counted beyond perf's counters (hidden by BPF)."""
        out: dict[str, int] = {}
        for h, n, _ref in self._hidden_by_event(twins):
            out[h.probe] = out.get(h.probe, 0) + n
        return out

    def _refereed(self, spec: str) -> bool:
        """Every tracepoint of probe ``spec`` has a referee."""
        return all(h.index in self._referees for h in self._handlers
                   if h.probe == spec and h.index in self._tp_handlers)

    def _check_gates(self, scan_fds: bool) -> None:
        """Record the BPF programs attached to our tracepoints now (see the module
        docstring): they hide hits from every perf event of the tracepoint."""
        now = time.monotonic()
        self._gate_next = now + GATE_CHECK_S
        if scan_fds:
            self._gate_scan_next = now + GATE_SCAN_S
        if not self._gate_events:
            return
        from .kernel.bpfgate import tracepoint_programs

        found = tracepoint_programs(self._gate_events, scan_fds=scan_fds)
        for ev, progs in found.items():
            for spec in self._gate_events[ev]:
                mine = self._gates.setdefault(spec, {})
                for prog, desc in progs.items():
                    if scan_fds or prog not in mine:  # fd scans name the owner
                        mine[prog] = desc

    def _warn_gates(self) -> None:
        if self._gate_warned:
            return
        self._gate_warned = True
        col = self._col
        hidden = self._hidden_by_event(col.counts()) if col is not None else []
        for h, n, total in hidden:
            progs = self._gates.get(h.probe, {})
            who = (", ".join(progs[k] for k in sorted(progs)) + " attached to it") \
                if progs else "a BPF program attached to it (and gone between looks)"
            self.warnings.append(
                f"{h.probe}: the kernel hid {n} of {h.event}'s {total} hits from "
                f"perf: {who} returned 0 for them, and the kernel then passes a hit to no "
                "perf event, counters included; counted on the ftrace path and reported "
                "as lost")
        for spec, progs in self._gates.items():
            if self._refereed(spec):  # counted exactly: warned above when it hid any
                continue
            self.warnings.append(
                f"{spec}: {', '.join(progs[k] for k in sorted(progs))} "
                f"{'was' if len(progs) == 1 else 'were'} attached to this tracepoint "
                "during the run; the kernel passes a tracepoint's hits to perf events only "
                "when the BPF programs attached to it return non-zero, so the hits they "
                "filtered out reached neither perf's rings nor its counters: this probe's "
                "counts are lower bounds and its losses unknown (--backend ftrace is not "
                "filtered by them)")
        if self._dec.throttles and not any("throttled" in w for w in self.warnings):
            self.warnings.append(
                f"the kernel throttled sampling {self._dec.throttles} time(s) "
                "(PERF_RECORD_THROTTLE); what it missed is counted in the losses")

    def stop(self) -> None:
        """End the trace: the probes stop now, what the rings hold can still be read."""
        self._stopped = True
        self._stop_referees()
        if self._col is not None:
            self._col.disable()

    def summary(self) -> PerfSummary:
        col = self._col
        gen: dict[str, int] = {}
        lost: dict[str, int] = {}
        hidden: dict[str, int] = {}
        if col is not None:
            twins = col.counts()
            hidden = self._hidden(twins)
            by_handler = {h.index: n for h, n, _t in self._hidden_by_event(twins)}
            for h, n in zip(self._handlers, twins, strict=True):
                n += by_handler.get(h.index, 0)
                gen[h.probe] = gen.get(h.probe, 0) + n
                lost[h.probe] = lost.get(h.probe, 0) + max(0, n - self._dec.seen[h.index])
        end = self._t1 or time.monotonic()
        per_cpu = dict(self._dec.lost_per_cpu)
        ring = col.ring_lost() if col is not None else None
        for cpu, n in (ring or {}).items():  # PERF_FORMAT_LOST also has the losses
            per_cpu[cpu] = max(per_cpu.get(cpu, 0), n)  # no LOST record was written for
        return PerfSummary(
            events=dict(self.counts),
            lost=sum(lost.values()),
            lost_per_cpu=per_cpu,
            unknown=self._dec.unknown + self._dec.decode_errors,
            duration=end - (self._t0 or end),
            generated=gen,
            lost_per_probe=lost,
            lost_records=self._dec.lost_records,
            startup=(self._t0 - self._t_init) if self._t0 else 0.0,
            bpf_gated={k: [v[i] for i in sorted(v)] for k, v in self._gates.items()
                       if not self._refereed(k) or hidden.get(k)},
            bpf_hidden=hidden,
            throttles=self._dec.throttles,
        )

    def close(self) -> None:
        """Close every perf event, then remove tracefs-defined probes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._signals.deferred():
                try:
                    self._command.close()
                finally:
                    try:
                        self._stop_referees()
                        if self._col is not None:
                            self._col.close()
                    finally:
                        try:
                            self._close_referees()
                        finally:
                            self._remove_dynamic()
        finally:
            self._signals.restore()
            _live.discard(self)

    def _close_referees(self) -> None:
        for ref in self._referees.values():
            try:
                ref.close()
            except ProbewatchError as e:
                self.warnings.append(str(e))

    def _remove_dynamic(self) -> None:
        from .kernel.tracefs import remove_dynamic_event

        for dp in reversed(self._dynamic):
            try:
                remove_dynamic_event(self.root, dp.kind[:1], dp.group, dp.name)
            except ProbewatchError as e:
                self.warnings.append(str(e))
        self._dynamic.clear()


# ------------------------------------------------------------------ helpers


def _register_args(ps: ProbeSpec, target: str) -> tuple[str | None, list[RegArg], int]:
    """-> (why the arguments need tracefs, or None; the register arguments; regs mask)."""
    from .collect.bpf.generic import PT_REGS, UARG_INT, compile_uarg
    from .elf.symbols import open_image
    from .sources.args import abi_for

    try:
        abi = abi_for(open_image(target).machine)
    except ValueError as e:
        raise ps.error(str(e), part="target") from None
    perf_regs = PERF_REGS.get(abi.name)
    pt_regs = PT_REGS.get(abi.name)
    if perf_regs is None or pt_regs is None:
        return f"there is no perf register table for {abi.name}", [], 0
    want: list[tuple[str, int, int, bool]] = []
    for a in ps.args:
        try:
            ua = compile_uarg(ps, a, abi)
        except SpecError:
            return f"argument {a.name} is not a whole register", [], 0
        if ua.offs or ua.kind != UARG_INT:
            return f"argument {a.name} reads user memory", [], 0
        reg = pt_regs[ua.reg]
        if reg not in perf_regs:
            return f"register %{reg} is not sampled by perf", [], 0
        want.append((a.name, perf_regs[reg], ua.size, ua.signed))
    mask = 0
    for _n, bit, _s, _g in want:
        mask |= 1 << bit
    out = [RegArg(n, bin(mask & ((1 << bit) - 1)).count("1"), size, signed)
           for n, bit, size, signed in want]
    return None, out, mask


def _uprobe_format(group: str, name: str, retprobe: bool, ps: ProbeSpec,
                   target: str) -> EventFormat:
    """The format the kernel would give this probe (for ``formats`` and sinks)."""
    from .bpf_trace import _uprobe_format as fmt_of
    from .collect.bpf.generic import compile_uarg
    from .elf.symbols import open_image
    from .sources.args import abi_for

    abi = abi_for(open_image(target).machine)
    return fmt_of(group, name, [compile_uarg(ps, a, abi) for a in ps.args], retprobe)


def _defined_note(ps: ProbeSpec, why: str) -> str:
    """The warning of a probe defined in tracefs rather than through its PMU."""
    kind = "kprobe" if ps.kind in ("kprobe", "kretprobe") else "uprobe"
    return (f"{ps.text}: defined in tracefs ({kind}_events) rather than through the "
            f"{kind} PMU because {why}; it is removed when the run ends")


def _kprobe_format(group: str, name: str, retprobe: bool) -> EventFormat:
    from .bpf_trace import _uprobe_format as fmt_of

    return fmt_of(group, name, [], retprobe)


@atexit.register
def _close_all() -> None:
    for s in list(_live):
        try:
            s.close()
        except BaseException:
            pass


__all__ = ["PerfTraceSession", "PerfSummary"]
