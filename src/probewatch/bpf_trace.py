"""BpfTraceSession: ``probewatch trace`` on the eBPF backend, same API and Events as Session.

Tracepoints (``t:SYSTEM:NAME``, globs) and uprobes/uretprobes (``u:``/``ur:`` with
``NAME=EXPR[:TYPE]`` arguments) are collected by the generic programs of
``collect/bpf/generic.bpf.c`` (one program attached many times; the BPF cookie of an
attachment names the probe). Tracepoint records are the raw ftrace record bytes and
decode with the same :class:`~probewatch.decode.format.EventFormat` as ftrace's;
uprobe events are named ``probewatch_<pid>:<symbol>_<n>`` and carry the same fields
(``__probe_ip`` or ``__probe_func``/``__probe_ret_ip``, then the arguments) as the
ftrace backend's. So ``--json`` output is interchangeable between the backends.

Differences from the ftrace backend, by design:

- ``comm`` and ``pid`` are read in the kernel when the event fires (ftrace looks
  them up later in /proc); the tracer never traces itself.
- ``--filter`` (tracefs syntax) is evaluated in user space with the kernel's
  semantics (:mod:`probewatch.collect.bpf.filter`); string comparisons on pointer
  fields, which need the kernel to read memory, are refused.
- A tracepoint record longer than ``tp_max`` bytes (4096) is cut; its dynamic
  fields are cut to what arrived and the event gets ``fields["truncated"]``.
  Strings of uprobe arguments are read up to ``str_max`` bytes (4096).
- ``U:`` (USDT) and ``k:``/``kr:`` specs are not supported (use ``--backend ftrace``).
- ``count_only``: counted in the kernel on raw tracepoints
  (:mod:`probewatch.collect.bpf.count`: no record, a per-CPU array) when every probe
  is a tracepoint and there is no filter, comm or stack; else by the generic program.
  The summary's ``counted_by`` says which.
- :meth:`BpfTraceSession.aggregate_in_kernel`: ``trace --hist / --by / --latency``
  computed by the programs in BPF maps, no records emitted (:mod:`probewatch.bpf_agg`).
- ``stack=``: ``bpf_get_stack`` into each record (after its data): up to 64 kernel
  frames, and up to 32 user frames twice, as addresses and as build-id frames, so user
  frames of a process that has exited are named through the files known by build-id
  (the probed files, the command, this process's libraries, each traced process's
  mappings when its first stack arrives).

Example::

    from probewatch.bpf_trace import BpfTraceSession
    with BpfTraceSession() as s:
        s.add("t:sched:sched_process_exec")
        s.trace_command(["sh", "-c", "/bin/true"])
        for ev in s.events():
            print(ev.pid, ev.comm, ev.fields["filename"])
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import struct
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from .bpf_session import BpfSummary
from .collect.base import Losses
from .collect.bpf import libbpf
from .collect.bpf.filter import FilterField, Predicate, compile_filter
from .collect.bpf.generic import (
    GEN_STACK,
    GEN_TP,
    GEN_TRUNC,
    GEN_UPROBE,
    HDR,
    STACK_KERNEL,
    STACK_USER,
    GenericCollector,
    UArg,
    UprobeDecoder,
    compile_uarg,
    record_stacks,
)
from .collect.command import GatedCommand, SignalGuard
from .decode.format import (
    ELEM_STRING,
    KIND_DATA_LOC,
    KIND_INT,
    KIND_POINTER,
    KIND_REL_LOC,
    KIND_STRING,
    EventFormat,
    parse_format,
)
from .errors import DecodeError, NotFound, ProbewatchError, SpecError
from .event import Event
from .session import Session
from .sources.args import abi_for
from .sources.probes import ResolvedProbe, resolve, resolve_dynamic
from .sources.spec import ProbeSpec, parse_spec

_live: weakref.WeakSet[BpfTraceSession] = weakref.WeakSet()

#: ring buffer KiB per CPU (one ring shared by all CPUs of this size times the CPUs):
#: user space decodes slower than a syscall firehose produces, so the ring absorbs
#: bursts of about a million events
DEFAULT_BUFFER_KB = 32768
#: events younger than this (ns) wait for records of other CPUs still in flight
ORDER_LAG_NS = 2_000_000
#: stacks (pid, raw frames) kept named, for call sites that repeat
STACK_CACHE = 4096
_INT_CODES = {(1, True): "b", (1, False): "B", (2, True): "h", (2, False): "H",
              (4, True): "i", (4, False): "I", (8, True): "q", (8, False): "Q"}


#: Summary plus what only the BPF side counts (failed user reads, truncation): one class
#: for the bpf backend and the BPF tools (defined beside them, in a lighter module)
BpfTraceSummary = BpfSummary


@dataclass
class _Slot:
    """One attachment: the event it produces and how its records decode."""

    event: str
    probe: str
    fmt: EventFormat | None = None  # tracepoints
    udec: UprobeDecoder | None = None  # uprobes
    pred: Predicate | None = None
    raw: Callable[[bytes, int, int, dict[str, Any]], dict[str, Any]] | None = None
    dyn: list[tuple[str, int, bool]] = field(default_factory=list)  # (name, offset, rel)


class BpfTraceSession(Session):
    """The eBPF backend of :class:`probewatch.session.Session` (``Session(backend="bpf")``).

    Everything it creates in the kernel is a BPF object with fd-based links; close()
    (``with``-exit, exceptions, SIGINT, SIGTERM, interpreter exit) removes it all.
    """

    backend = "bpf"

    def __init__(
        self,
        backend: str = "bpf",
        buffer_kb: int | None = None,
        pids: Sequence[int] | None = None,
        comm: str | None = None,
        follow_children: bool = True,
        tp_max: int = 4096,
        str_max: int = 4096,
        spool_mb: int | None = None,
        spool_dir: str | None = None,
        stack: str | None = None,
    ) -> None:
        # spool_mb / spool_dir: ftrace's; the BPF ring buffer is bounded by itself
        if backend not in ("auto", "bpf"):
            raise ProbewatchError(f"BpfTraceSession is the bpf backend, not {backend!r}")
        if stack not in (None, "user", "kernel", "both"):
            raise ProbewatchError(f"stack must be user, kernel or both (got {stack!r})")
        # stack: every Event gets fields["stack"] (bpf_get_stack into the record),
        # frames {addr, symbol, offset, module}, innermost first (kernel then user)
        self._stack = stack
        self._t_init = time.monotonic()
        self._closed = False
        self._command = GatedCommand()
        # before the first kernel object: SIGTERM/SIGHUP/SIGINT from here on run close()
        self._signals = SignalGuard(chain=(signal.SIGINT,))
        self._signals.install()
        _live.add(self)
        try:
            self._setup(buffer_kb, pids, comm, follow_children, tp_max, str_max)
        except BaseException:
            self.close()
            raise

    def _setup(self, buffer_kb: int | None, pids: Sequence[int] | None, comm: str | None,
               follow_children: bool, tp_max: int, str_max: int) -> None:
        from .kernel.tracefs import tracefs_root

        self.root = tracefs_root()
        self.comm = comm
        self._pids = list(pids or [])
        self._follow = follow_children
        ncpu = os.cpu_count() or 1
        per_cpu_kb = buffer_kb if buffer_kb else DEFAULT_BUFFER_KB
        self._col = GenericCollector(
            comm=comm, ringbuf_bytes=_pow2(per_cpu_kb * 1024 * ncpu),
            tp_max=tp_max, ustr_max=str_max,
            stack_mode={None: 0, "kernel": STACK_KERNEL, "user": STACK_USER,
                        "both": STACK_KERNEL | STACK_USER}[self._stack],
        )
        self._sym: Any = None
        self._pids_seen: set[int] = set()
        self._stack_cache: dict[tuple[int, bytes], list[dict[str, Any]]] = {}
        self._slots: list[_Slot] = []
        #: the uprobes as resolved (DynamicProbe), attached by fd: never in tracefs
        self._uprobes: list[Any] = []
        self._probes: dict[str, list[str]] = {}
        self._slot_probe: list[str] = []
        self._events_seen: set[str] = set()
        self._formats: dict[int, Any] = {}
        self._started = False
        self._emit = True
        self.counts: dict[str, int] = {}
        #: --count: the program type that counted ("tp_btf", "raw_tp": the raw
        #: tracepoint path of collect/bpf/count.py; "tracepoint": the generic program)
        #: and, when the raw path was not taken, why (count_path)
        self.counted_by = ""
        self.count_path = ""
        self.warnings: list[str] = []
        self._pending: list[Event] = []
        self._stopped = False
        self._done = False
        self._t0 = 0.0
        self._t1 = 0.0
        self._comms: dict[bytes, str] = {}
        self.unknown = 0
        self.decode_errors = 0
        self._kagg: Any = None  # bpf_agg.KernelAggregation when aggregating in the kernel

    # -- probes
    def add(self, spec: str, filter: str | None = None) -> list[str]:
        """Arm a probe spec; returns the "system:name" events it produced.

        Kinds: ``t:`` tracepoints (globs expand) and ``u:``/``ur:`` uprobes and
        uretprobes. ``filter`` is a tracefs filter, applied in user space.
        """
        if self._started:
            raise ProbewatchError("cannot add probes after the session has started")
        if spec.strip() == "marker" or spec.strip().split(":", 1)[-1].startswith("ftrace:"):
            raise ProbewatchError(f"{spec!r}: marks (trace_marker writes) reach only a "
                                  "tracefs instance: use the ftrace backend, not bpf")
        ps = parse_spec(spec)
        if filter is not None and not filter.strip():
            filter = None
        names: list[str] = []
        if ps.kind == "tracepoint":
            for rp in resolve(ps, self.root):
                ev = rp.event
                if ev in self._events_seen:
                    continue
                fmt = rp.fmt
                assert fmt is not None
                slot = self._tp_slot(fmt, spec, filter)
                self._col.arm(rp)
                self._slots.append(slot)
                self._formats[fmt.id] = fmt
                self._events_seen.add(ev)
                names.append(ev)
        elif ps.kind in ("uprobe", "uretprobe"):
            names = self._add_uprobe(ps, spec, filter)
        else:
            raise ps.error(
                f"the bpf backend does not support {ps.kind} probes yet; use --backend ftrace",
                part="kind")
        self._probes[spec] = names
        self.counts.setdefault(spec, 0)
        return names

    def _tp_slot(self, fmt: EventFormat, spec: str, filt: str | None) -> _Slot:
        slot = _Slot(fmt.event_name, spec, fmt=fmt)
        for f in fmt.fields:
            if f.kind in (KIND_DATA_LOC, KIND_REL_LOC):
                slot.dyn.append((f.name, f.offset, f.kind == KIND_REL_LOC))
        if filt:
            ffields, raw = _tp_filter_fields(fmt)
            slot.pred = _compile(filt, ffields, fmt.event_name)
            slot.raw = raw
        return slot

    def _add_uprobe(self, ps: ProbeSpec, spec: str, filt: str | None) -> list[str]:
        from .elf.symbols import open_image

        pid = self._pids[0] if self._pids else None
        probes = resolve_dynamic(ps, self.root, pid)
        names = []
        for dp in probes:
            for w in dp.warnings:
                self.warnings.append(f"{ps.text}: {w}")
            try:
                abi = abi_for(open_image(dp.elf_path or dp.target_path).machine)
            except ValueError as e:
                raise ps.error(str(e), part="target") from None
            args: list[UArg] = [compile_uarg(ps, a, abi) for a in ps.args]
            retprobe = ps.kind == "uretprobe"
            fmt = _uprobe_format(dp.group, dp.name, args, retprobe)
            ev = f"{dp.group}:{dp.name}"
            slot = _Slot(ev, spec, udec=UprobeDecoder(args, retprobe))
            if filt:
                ffields = [
                    FilterField(f.name, f.size, f.signed,
                                is_string=f.kind in (KIND_DATA_LOC, KIND_STRING))
                    for f in fmt.all_fields
                    if f.kind in (KIND_DATA_LOC, KIND_STRING)
                    or (f.kind == KIND_INT and f.size in (1, 2, 4, 8))]
                slot.pred = _compile(filt, ffields, ev)
                slot.raw = _uprobe_raw(args)
            self._col.arm(ResolvedProbe(ps, dp.group, dp.name, dynamic=dp), args=args)
            self._slots.append(slot)
            self._formats[-len(self._slots)] = fmt
            self._uprobes.append(dp)
            names.append(ev)
        return names

    @property
    def dynamic_probes(self) -> list[Any]:
        """The uprobes this session resolved (DynamicProbe; attached by fd, so nothing
        of them is in tracefs): file, symbol and offset, e.g. for a capture's probes."""
        return list(self._uprobes)

    @property
    def probes(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._probes.items()}

    # -- in-kernel aggregation
    def aggregate_in_kernel(self, agg: Any, max_keys: int | None = None) -> str | None:
        """Aggregate as ``agg`` (an :class:`~probewatch.analyze.aggregate.Aggregator`)
        in the kernel instead of emitting records; call after :meth:`add`, before
        :meth:`start` (then ``start(count_only=True)`` and :meth:`count`, and
        :meth:`kernel_aggregate` to read). Returns None, or why it cannot (nothing
        changed then: the session emits records as before)."""
        from .bpf_agg import KernelAggregation, SlotInfo, Unsupported
        from .collect.bpf.agg import DEFAULT_MAX_KEYS

        if self._started:
            raise ProbewatchError("aggregate_in_kernel() must come before start()")
        if self._stack is not None:
            return "--stack needs the events"
        if any(sl.pred is not None for sl in self._slots):
            return "the bpf backend evaluates --filter in user space"
        infos = [SlotInfo(sl.event, sl.probe, sl.fmt,
                          sl.udec.args if sl.udec is not None else None)
                 for sl in self._slots]
        try:
            ka = KernelAggregation(agg, infos, max_keys or DEFAULT_MAX_KEYS)
        except Unsupported as e:
            return str(e)
        self._kagg = ka
        self._col.agg = ka.setup
        return None

    @property
    def aggregating_in_kernel(self) -> bool:
        return self._kagg is not None

    def kernel_aggregate(self, agg: Any) -> None:
        """Add to ``agg`` what the kernel aggregated since the last call."""
        if self._kagg is None:
            raise ProbewatchError("not aggregating in the kernel")
        rows, stats = self._col.agg_snapshot()
        if not stats:  # closed
            return
        self._kagg.fill(agg, rows, stats, self._col.slot_counts())

    # -- running
    def start(self, count_only: bool = False) -> None:
        """Load and attach the programs, then release a gated command."""
        if self._started:
            return
        if not self._probes:
            raise ProbewatchError("no probes added")
        self._started = True
        col = self._col
        for p in self._pids:
            if p != self._command.pid and not os.path.exists(f"/proc/{p}"):
                raise NotFound(f"no process with pid {p}")
        col.pids = list(self._pids)
        col.follow = self._follow
        if self._stack is not None:
            self._init_symbolizer()
        # counting needs no records unless a filter must look at the fields
        self._emit = not count_only or any(s.pred is not None for s in self._slots)
        with self._signals.deferred():  # each object is recorded in col as it is made
            if count_only:
                self.counted_by = "tracepoint"
                self.count_path = "--filter"  # records, each evaluated in user space
            fast = self._fast_counter() if not self._emit else None
            if fast is not None:  # loaded and attached
                self._col = fast
            else:
                col.load(emit=self._emit)
                col.attach()
            self._t0 = time.monotonic()
            self._command.release()

    def _fast_counter(self) -> Any:
        """A loaded and attached :class:`CountCollector` (raw tracepoints, per-CPU array)
        when every probe can be counted that way, else None (``count_path`` says why)."""
        from .collect.bpf.count import MAX_TPS, CountCollector, syscall_nrs

        how = os.environ.get("PROBEWATCH_BPF_COUNT", "auto")  # the bench compares them
        if how == "tracepoint":
            self.count_path = "PROBEWATCH_BPF_COUNT=tracepoint"
            return None
        self.count_path = ""
        why = ""
        if self._kagg is not None:
            why = "aggregating in the kernel"  # the generic program's maps do it
        elif self.comm is not None:
            why = "--comm"
        elif self._uprobes:
            why = "uprobes"
        elif self._stack is not None:
            why = "stacks"
        gen = self._col
        fast = CountCollector(pids=list(self._pids), follow=self._follow, kind=how)
        ntp = 0
        for a in gen.attachments if not why else []:
            if a.system == "syscalls" and a.name.startswith(("sys_enter_", "sys_exit_")):
                nrs = syscall_nrs(a.name.split("_", 2)[2])
                if not nrs:
                    why = f"no syscall number for {a.system}:{a.name}"
                    break
                fast.add_tracepoint(a.slot, a.system, a.name, nrs)
            else:
                ntp += 1
                if ntp > MAX_TPS:
                    why = f"more than {MAX_TPS} tracepoints besides syscalls"
                    break
                fast.add_tracepoint(a.slot, a.system, a.name)
        if why:
            self.count_path = why
            return None
        try:
            fast.load()
            fast.attach()
        except libbpf.BpfLibError as e:  # e.g. no raw tracepoint of that name
            fast.close()
            self.count_path = f"raw tracepoints refused: {e}"
            return None
        self.counted_by = fast.kind
        return fast

    def _init_symbolizer(self) -> None:
        """Know the probed files, the traced command and this process's libraries (libc,
        ld.so) by build-id: their frames are named even after the process exited."""
        import shutil

        from .analyze.stacks import Symbolizer

        sym = self._sym = Symbolizer()
        if self._stack == "kernel":
            return
        for a in self._col.attachments:
            if a.path:
                sym.add_file(a.path)
        argv = self._command.argv if hasattr(self._command, "argv") else None
        if argv:
            exe = argv[0] if "/" in argv[0] else shutil.which(argv[0])
            if exe:
                sym.add_file(os.path.realpath(exe), exe)
        sym.add_process_files(os.getpid())
        for p in self._pids:
            if p != self._command.pid:
                sym.add_process_files(p)

    def _decode(self, recs: list[bytes], out: list[Event]) -> None:
        """Ring-buffer records -> Events appended to ``out`` (filters applied)."""
        unpack = HDR.unpack_from
        slots = self._slots
        comms = self._comms
        hsz = HDR.size
        for rec in recs:
            kind, flags, cpu, ts, pid, tid, slot_i, size, craw = unpack(rec)
            try:
                s = slots[slot_i]
            except IndexError:
                self.unknown += 1
                continue
            end = min(hsz + size, len(rec))
            comm = comms.get(craw)
            if comm is None:
                comm = craw.partition(b"\0")[0].decode("utf-8", "replace")
                comms[craw] = comm
            try:
                if kind == GEN_TP:
                    assert s.fmt is not None
                    if flags & GEN_TRUNC:
                        rec, end, cut = _clip_dynamic(rec, hsz, end, s.dyn)
                        fields = s.fmt.decode(rec, hsz, end)
                        fields["truncated"] = cut
                    else:
                        # the generated decoder straight into an Event (one call)
                        ev = s.fmt.maker(rec, hsz, end, ts, cpu)
                        fields = ev.fields
                        if s.pred is None or s.pred(s.raw(rec, hsz, end, fields),
                                                    comm, cpu):
                            if flags & GEN_STACK:
                                fields["stack"] = self._stack_of(pid, rec, size)
                            ev.pid = pid
                            ev.tid = tid
                            ev.comm = comm
                            ev.event = s.event
                            ev.probe = s.probe
                            out.append(ev)
                        continue
                elif kind == GEN_UPROBE and s.udec is not None:
                    fields = s.udec.decode(rec, hsz, end)
                else:
                    self.unknown += 1
                    continue
            except (DecodeError, struct.error):
                self.decode_errors += 1
                continue
            if s.pred is not None:
                assert s.raw is not None
                if not s.pred(s.raw(rec, hsz, end, fields), comm, cpu):
                    continue
            if flags & GEN_STACK:
                fields["stack"] = self._stack_of(pid, rec, size)
            out.append(Event(ts, cpu, pid, tid, comm, s.event, s.probe, fields))

    def _stack_of(self, pid: int, rec: bytes, size: int) -> list[dict[str, Any]]:
        """The frames of a GEN_STACK record: kernel (kallsyms) then user (build-ids of
        the files known, else the process's mappings)."""
        key = (pid, rec[HDR.size + ((size + 7) & ~7):])
        hit = self._stack_cache.get(key)
        if hit is not None:  # the same stack again (a hot call site): named once
            return list(hit)
        sym = self._sym
        kips, uips, bids = record_stacks(rec, HDR.size, size)
        if uips and pid not in self._pids_seen:
            self._pids_seen.add(pid)
            sym.add_process_files(pid)  # while it runs: the files it maps, by build-id
        frames = sym.frames(pid, kips, kernel=True) + sym.user_frames(pid, uips, bids)
        if len(self._stack_cache) >= STACK_CACHE:
            self._stack_cache.clear()
        self._stack_cache[key] = frames
        return list(frames)

    def _raw(self, duration: float | None, count_only: bool) -> Iterator[list[Event]]:
        """Batches of time-ordered Events (count_only: empty batches while counting)."""
        self.start(count_only=count_only)
        col = self._col
        deadline = None if duration is None else self._t0 + duration
        cmd = self._command
        tracking = cmd.pid != 0
        pending = self._pending
        by_ts = attrgetter("ts")
        poller = select.poll()
        rb_fd = col.epoll_fd()
        if rb_fd >= 0:
            poller.register(rb_fd, select.POLLIN)
        if tracking and cmd.pidfd >= 0:
            poller.register(cmd.pidfd, select.POLLIN)
        counting_in_kernel = not self._emit
        while True:
            done = self._stopped
            if not done:
                if deadline is not None and time.monotonic() >= deadline:
                    done = True
                elif tracking and cmd.exited():
                    done = True
            if not done:
                wait = 200.0 if deadline is None else max(
                    0.0, min(200.0, (deadline - time.monotonic()) * 1000))
                poller.poll(wait)
            # records committed after this instant carry a later timestamp (minus the
            # few microseconds a program takes between its clock read and the commit)
            horizon = time.monotonic_ns() - ORDER_LAG_NS
            col.consume()
            raw = col.raw
            if raw:
                recs = raw[:]
                raw.clear()
                if count_only:
                    evs: list[Event] = []
                    self._decode(recs, evs)
                    for ev in evs:
                        self.counts[ev.probe] += 1
                else:
                    self._decode(recs, pending)
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
        if counting_in_kernel:
            if self._kagg is not None:  # nothing after the end in the maps or the counts
                col.detach()
            per = col.slot_counts()
            for i, n in per.items():
                self.counts[self._slots[i].probe] += n
        self._done = True
        self._t1 = time.monotonic()

    def stop(self) -> None:
        """End the trace: links are destroyed now, what is buffered can still be read."""
        self._stopped = True
        self._col.detach()

    def losses(self) -> Losses:
        """What the programs counted: generated, lost (per CPU), failed reads, truncated."""
        return self._col.losses()

    def summary(self) -> BpfTraceSummary:
        s = BpfTraceSummary.of(self.counts, self.losses(),
                               self.unknown + self.decode_errors,
                               self._t_init, self._t0, self._t1)
        s.counted_by, s.count_path = self.counted_by, self.count_path
        ka = self._kagg
        if ka is not None:
            s.aggregation = {"in": "kernel", "max_keys": ka.setup.max_keys,
                             "overflow": ka.overflow, "start_overflow": ka.start_overflow}
        return s

    def close(self) -> None:
        """Detach and free every BPF object of this session. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._signals.deferred():  # a second signal cannot cut clean-up short
                try:
                    self._command.close()  # a command never released is killed
                finally:
                    col = getattr(self, "_col", None)
                    if col is not None:
                        col.close()
        finally:
            self._signals.restore()
            _live.discard(self)


# ------------------------------------------------------------------ helpers


def _pow2(n: int) -> int:
    size = max(n, os.sysconf("SC_PAGE_SIZE"))
    p = 1
    while p < size:
        p <<= 1
    return min(p, 1 << 30)


def _compile(filt: str, ffields: list[FilterField], event: str) -> Predicate:
    """compile_filter(), its SpecError naming the event the filter was meant for."""
    try:
        return compile_filter(filt, ffields)
    except SpecError as e:
        raise SpecError(f"{event}: {e.message}", e.spec, e.pos) from None


def _clip_dynamic(rec: bytes, start: int, end: int,
                  dyn: list[tuple[str, int, bool]]) -> tuple[bytes, int, list[str]]:
    """A cut record: shorten dynamic fields that run past its end; -> (rec, end, names)."""
    buf = bytearray(rec[:end])
    cut = []
    for name, off, rel in dyn:
        p = start + off
        if p + 4 > end:
            continue
        (loc,) = struct.unpack_from("<I", buf, p)
        o = (loc & 0xFFFF) + (p + 4 if rel else start)
        ln = loc >> 16
        if o + ln > end:
            ln = max(0, end - o)
            struct.pack_into("<I", buf, p, (ln << 16) | (loc & 0xFFFF))
            cut.append(name)
    return bytes(buf), end, cut


def _tp_filter_fields(
    fmt: EventFormat,
) -> tuple[list[FilterField], Callable[[bytes, int, int, dict[str, Any]], dict[str, Any]]]:
    """The filterable fields of a tracepoint and a function reading their raw values."""
    ffields = []
    ints: list[tuple[str, struct.Struct, int]] = []
    strings: list[str] = []
    for f in fmt.all_fields:
        if f.kind in (KIND_INT, KIND_POINTER) and f.size in (1, 2, 4, 8):
            ffields.append(FilterField(f.name, f.size, f.signed,
                                       is_pointer=f.kind == KIND_POINTER))
            ints.append((f.name, struct.Struct("<" + _INT_CODES[(f.size, f.signed)]), f.offset))
        elif f.kind == KIND_STRING or (
            f.kind in (KIND_DATA_LOC, KIND_REL_LOC) and f.elem_kind == ELEM_STRING
        ):
            ffields.append(FilterField(f.name, is_string=True))
            strings.append(f.name)

    def raw(rec: bytes, start: int, end: int, fields: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {n: st.unpack_from(rec, start + off)[0] for n, st, off in ints}
        for n in strings:
            out[n] = fields.get(n, "")
        return out

    return ffields, raw


def _uprobe_raw(args: list[UArg]) -> Callable[[bytes, int, int, dict[str, Any]], dict[str, Any]]:
    def raw(rec: bytes, start: int, end: int, fields: dict[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        (out["common_pid"],) = struct.unpack_from("<I", rec, 20)  # the header's tid
        return out

    return raw


def _uprobe_format(group: str, name: str, args: list[UArg], retprobe: bool) -> EventFormat:
    """The format the kernel would give this probe (field names, sizes, signedness)."""
    lines = [
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;",
        "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;",
        "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;",
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;",
        "",
    ]
    off = 8
    heads = ["__probe_func", "__probe_ret_ip"] if retprobe else ["__probe_ip"]
    for h in heads:
        lines.append(f"\tfield:unsigned long {h};\toffset:{off};\tsize:8;\tsigned:0;")
        off += 8
    for a in args:
        if a.kind == 1:
            lines.append(f"\tfield:__data_loc char[] {a.name};\toffset:{off};\tsize:4;\tsigned:1;")
            off += 4
            continue
        es = a.elem_size or a.size
        t = f"{'s' if a.signed else 'u'}{es * 8}"
        dims = "[]" if a.kind == 2 else ""
        lines.append(f"\tfield:{t} {a.name}{dims};\toffset:{off};\tsize:{a.size};"
                     f"\tsigned:{int(a.signed)};")
        off += a.size
    text = f"name: {name}\nID: 0\nformat:\n" + "\n".join(lines) + "\n\nprint fmt: \"\"\n"
    return parse_format(text, group)


@atexit.register
def _close_all() -> None:
    for s in list(_live):
        try:
            s.close()
        except BaseException:  # a signal held back during close(): exiting anyway
            pass


__all__ = ["BpfTraceSession", "BpfTraceSummary", "libbpf"]
