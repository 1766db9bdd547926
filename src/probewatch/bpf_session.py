"""BpfSession: the engine of the BPF tools, one kind of :class:`probewatch.Session`.

``probewatch.Session(tool="syscalls" | "tcpconnect" | "bashreadline", ...)`` returns
one (``tool="sslsniff"`` / ``"mallocs"``: its subclasses
:class:`~probewatch.ssl_session.SslSession` and
:class:`~probewatch.analyze.allocs.MallocSession`). It has the methods of every
Session (``start``, ``events`` / ``batches`` / ``drain`` / ``count`` / ``run``,
``stop``, ``losses``, ``summary``, ``close``, ``trace_command`` with ``command``,
``child_pid`` and ``returncode``) and yields the same :class:`~probewatch.event.Event`
records, but its programs choose their events themselves: there is no ``add()``.

The BPF programs (``collect/bpf/*.bpf.c``, built objects shipped with the package)
filter in the kernel (pid set followed through fork, comm, uid, cgroup), read the
user memory syscall arguments point to, count per syscall and per process, and
count what they lose. Every attachment is an fd-based BPF link: closing the
session (``with``-exit, exception, SIGINT, SIGTERM, interpreter exit) removes all.

Example::

    import probewatch
    with probewatch.Session(tool="syscalls", syscalls=["openat"]) as s:
        s.trace_command(["cat", "/etc/hostname"])
        for ev in s.events():
            print(ev.fields["filename"], ev.fields["ret"])
        print(s.summary().to_dict())   # {'events': {'syscalls:openat': ...}, ...}
"""

from __future__ import annotations

import atexit
import os
import signal
import struct
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Self

from .collect.base import Losses
from .collect.bpf import libbpf
from .collect.bpf.generic import comm_bytes
from .collect.bpf.loader import (
    COUNT,
    NR_NORETURN,
    NR_TRACE,
    NRCONF,
    STAT_MAX,
    RecordDecoder,
    object_bytes,
    parse_stats,
    syscall_table,
)
from .collect.command import GatedCommand, SignalGuard
from .decode.syscalls import NORETURN, SyscallTable, capture_plan
from .errors import FeatureUnavailable, NotFound, ProbewatchError
from .event import Event, EventRun
from .session import Session, Summary

_live: weakref.WeakSet[BpfSession] = weakref.WeakSet()

TOOLS = ("syscalls", "tcpconnect", "bashreadline", "sslsniff", "mallocs")


def bpf_available() -> tuple[bool, str]:
    """(usable, reason): can this kernel and installation run the BPF backend?"""
    from .kernel.features import check

    for name in ("BPF", "BPF tracepoint programs", "BPF ring buffer map", "BTF"):
        f = check(name)
        if not f.available:
            return False, f"{name}: {f.reason}"
    try:
        libbpf.lib()
        object_bytes("syscalls")
    except ProbewatchError as e:
        return False, str(e)
    return True, ""


def require_bpf() -> None:
    """Raise FeatureUnavailable (naming what is missing) unless :func:`bpf_available`."""
    ok, why = bpf_available()
    if not ok:
        raise FeatureUnavailable(f"the BPF backend is not usable here: {why}")


def pick_backend(requested: str, needs_bpf: bool = True) -> str:
    """'auto' -> 'bpf' when the kernel allows it, else 'ftrace' (or an error if needed)."""
    if requested not in ("auto", "bpf", "ftrace"):
        raise ProbewatchError(f"unknown backend {requested!r} (have: auto, bpf, ftrace)")
    if requested == "ftrace":
        return "ftrace"
    if requested == "bpf" or needs_bpf:
        require_bpf()
        return "bpf"
    return "bpf" if bpf_available()[0] else "ftrace"


@dataclass
class BpfSummary(Summary):
    """The :class:`~probewatch.session.Summary` of the BPF backend and tools, plus what only
    the BPF side counts: records the programs ``generated``, failed user-memory reads
    (``read_failed``), ``truncated`` strings, and the ``startup`` time (load, attach).
    A tool's ``events`` are keyed by event name (``syscalls:openat``)."""

    generated: int = 0
    read_failed: int = 0
    truncated: int = 0
    startup: float = 0.0
    #: trace --count in the kernel: "tp_btf" / "raw_tp" (raw tracepoints) or "tracepoint"
    counted_by: str = ""
    #: why the raw tracepoint path was not taken ("" when it was)
    count_path: str = ""
    #: aggregated in the kernel (trace --hist/--by/--latency): None when not
    aggregation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(backend="bpf", generated=self.generated, read_failed=self.read_failed,
                 truncated=self.truncated, startup=round(self.startup, 6))
        if self.counted_by:
            d["counted_by"] = self.counted_by
            if self.count_path:
                d["count_path"] = self.count_path
        if self.aggregation is not None:
            d["aggregation"] = self.aggregation
        return d

    @classmethod
    def of(cls, events: dict[str, int], ls: Losses, unknown: int, t_init: float,
           t0: float, t1: float) -> Self:
        """The summary of a BPF run: counts, the programs' Losses, and the times it was
        created (``t_init``), started (``t0``; 0: not) and ended (``t1``; 0: not yet)."""
        end = t1 or time.monotonic()
        return cls(events=dict(events), lost=ls.lost, lost_per_cpu=dict(ls.lost_per_cpu),
                   unknown=unknown, duration=end - (t0 or end), generated=ls.generated,
                   read_failed=ls.read_failed, truncated=ls.truncated,
                   startup=(t0 - t_init) if t0 else 0.0)


class BpfSession(Session):
    """One BPF tool run: load, configure, attach, stream Events, count, close
    (``probewatch.Session(tool=...)``; see the module docstring).

    tool: "syscalls" (syscall entry/exit with arguments, lifecycle, counting),
    "tcpconnect", "bashreadline". ``syscalls``: names to trace (None: all).
    ``emit=False`` with ``count`` / ``count_procs``: count per syscall / per process in
    the kernel (:meth:`syscall_counts`, :meth:`proc_counts`) without records.
    ``exec_info`` (with ``lifecycle``): exec records carry argv, cwd, the environment
    variables of interest, credentials, login uid, start times, cgroup and executable
    names read in the kernel at exec; fork records only new processes, with start
    times. ``raw_syscalls``: select ``syscalls`` in the kernel behind the two
    raw_syscalls tracepoints (fast start and close) instead of one pair per syscall.
    ``backend``: "bpf" (or "auto"), the only one the tools run on.

    Every event comes from the one probe ``bpf:TOOL`` (``Event.probe``); the counts of
    :meth:`summary` are per event name (``syscalls:openat``, ``sched:sched_process_exec``).
    """

    backend = "bpf"

    def __init__(
        self,
        tool: str = "syscalls",
        *,
        backend: str = "bpf",
        pids: Sequence[int] | None = None,
        comm: str | None = None,
        uid: int | None = None,
        cgroup: int | None = None,
        follow_children: bool = True,
        syscalls: Sequence[str] | None = None,
        emit: bool = True,
        count: bool = False,
        count_procs: bool = False,
        lifecycle: bool = False,
        ringbuf_kb: int = 16384,
        str_max: int = 4096,
        buf_max: int = 32,
        argv_max: int = 64,
        arg_max: int = 256,
        bash_path: str = "/bin/bash",
        exec_info: bool = False,
        exec_argv_bytes: int = 4096,
        exec_env_bytes: int = 8192,
        raw_syscalls: bool = False,
    ) -> None:
        if tool not in TOOLS:
            raise ProbewatchError(f"unknown BPF tool {tool!r} (have: {', '.join(TOOLS)})")
        if backend not in ("auto", "bpf"):
            raise ProbewatchError(f"the {tool} tool runs on the bpf backend, not {backend!r}")
        self.tool = tool
        self.root = ""
        self.warnings: list[str] = []
        self._formats: dict[int, Any] = {}
        self._pids = list(pids or [])
        self.comm = comm
        self.uid = uid
        self.cgroup = cgroup
        self._follow = follow_children
        self._syscalls = list(syscalls) if syscalls is not None else None
        self._emit = emit
        self._count = count
        self._count_procs = count_procs
        self._lifecycle = lifecycle
        self._rb_bytes = _ringbuf_size(ringbuf_kb)
        self._limits = (str_max, buf_max, argv_max, arg_max)
        self._bash = bash_path
        # exec info (with lifecycle): argv, cwd, env, credentials read in the kernel at
        # exec, and process-only fork records with start times (see probewatch.h)
        self._exec_info = exec_info
        self._xlimits = (exec_argv_bytes, exec_env_bytes)
        # raw_syscalls: a syscall list is filtered in the kernel behind the two
        # raw_syscalls tracepoints instead of one tracepoint pair per syscall (every
        # syscall then pays the program's entry, but start and close take two links,
        # not hundreds: detaching each tracepoint link waits for an RCU grace period)
        self._raw_syscalls = raw_syscalls
        self._obj: libbpf.BpfObject | None = None
        self._rb: libbpf.RingBuffer | None = None
        self._records: list[bytes] = []
        self._closed = False
        self._started = False
        self._done = False
        self._command = GatedCommand()
        #: called in start() once this session's programs are attached, before a gated
        #: command is released (another session sharing its maps attaches there)
        self.before_release: list[Any] = []
        self.counts: dict[str, int] = {}
        self._t_init = time.monotonic()
        self._t0 = 0.0
        self._t1 = 0.0
        self._stopped = False
        self._signalled = 0
        self._in_poll = False
        # before the first kernel object (the BPF object, the gated command): from here
        # on SIGINT/SIGTERM/SIGHUP run close(); start() holds them back while it creates
        self._signals = SignalGuard(self._on_signal,
                                    (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
        self._signals.install()
        _live.add(self)
        try:
            self.table: SyscallTable = syscall_table()
            self.decoder = RecordDecoder(self.table, probe=f"bpf:{tool}")
            if self._syscalls is not None:
                unknown = [n for n in self._syscalls if n not in self.table.by_name]
                if unknown:
                    raise NotFound(f"unknown syscall(s): {', '.join(unknown)}")
        except BaseException:
            self.close()
            raise

    # -- what a Session has (trace_command, command, child_pid, returncode, with: base)
    def add(self, spec: str, filter: str | None = None) -> list[str]:
        """Not for a tool: its programs choose its events (a ProbewatchError says so)."""
        raise ProbewatchError(f"the {self.tool} tool traces its own events; probe specs "
                              f"({spec!r}) go to probewatch.Session(backend=...).add()")

    @property
    def probes(self) -> dict[str, list[str]]:
        """``bpf:TOOL`` -> the event names it delivered so far."""
        return {f"bpf:{self.tool}": sorted(self.counts)}

    @property
    def delivered(self) -> int:
        """How many events were handed out (the sum of the counts)."""
        return sum(self.counts.values())

    # -- setup
    def _configure(self, obj: libbpf.BpfObject) -> None:
        ro = obj.rodata
        ro["self_pid"] = os.getpid()
        if self._pids:
            ro["filter_pids"] = 1
        ro["follow_forks"] = 1 if self._follow else 0
        if self.comm:
            ro["filter_comm"] = 1
            ro["targ_comm"] = comm_bytes(self.comm)[:15]
        if self.uid is not None:
            ro["filter_uid"] = 1
            ro["targ_uid"] = self.uid
        if self.cgroup is not None:
            ro["filter_cgroup"] = 1
            ro["targ_cgroup"] = self.cgroup
        obj.set_max_entries("events", self._rb_bytes)
        if self.tool == "syscalls":
            s, b, av, a = self._limits
            ro["emit_events"] = 1 if self._emit else 0
            ro["count_syscalls"] = 1 if self._count else 0
            ro["count_procs"] = 1 if self._count_procs else 0
            ro["emit_lifecycle"] = 1 if self._lifecycle else 0
            ro["str_max"] = max(2, min(s, 4096))
            ro["buf_max"] = max(0, min(b, 4096))
            ro["argv_max"] = max(1, min(av, 128))
            ro["arg_max"] = max(2, min(a, 4096))
            if self._exec_info and self._lifecycle:
                xa, xe = self._xlimits
                ro["exec_info"] = 1
                ro["xargv_max"] = max(0, min(xa, 8192))
                ro["xenv_max"] = max(0, min(xe, 8192))

    def _fill_maps(self, obj: libbpf.BpfObject) -> None:
        if self._pids:
            pm = obj.map("pids")
            for p in self._pids:
                if p != self._command.pid and not os.path.exists(f"/proc/{p}"):
                    raise NotFound(f"no process with pid {p}")
                pm.update(struct.pack("<I", p), b"\x01")
        if self.tool != "syscalls":
            return
        nm = obj.map("nrconf")
        wanted = None if self._syscalls is None else set(self._syscalls)
        for nr, info in self.table.by_nr.items():
            if nr >= 1024:
                continue
            flags = 0
            if self._emit and (wanted is None or info.name in wanted):
                flags |= NR_TRACE
            if info.name in NORETURN:
                flags |= NR_NORETURN
            kinds, sizes = capture_plan(info)
            argv_arg = kinds.index(6) if 6 in kinds else -1
            val = NRCONF.pack(bytes(kinds), flags, argv_arg, *sizes)
            nm.update(struct.pack("<I", nr), val)
        if self._syscalls is None or self._count or self._count_procs:
            return

    def _attach(self, obj: libbpf.BpfObject) -> None:
        if self.tool == "syscalls":
            obj.attach_tracepoint("pw_fork", "sched", "sched_process_fork")
            obj.attach_tracepoint("pw_exit", "sched", "sched_process_exit")
            if self._lifecycle:
                obj.attach_tracepoint("pw_exec", "sched", "sched_process_exec")
                if self._exec_info:
                    obj.attach_raw_tracepoint("pw_fork_info", "sched_process_fork")
            if self._syscalls is not None and not (self._count or self._count_procs
                                                   or self._raw_syscalls):
                # a few syscalls: their own tracepoints, so other syscalls cost nothing
                for name in self._syscalls:
                    info = self.table.by_name[name]
                    prog = f"pw_one_enter{min(len(info.args), 6)}"
                    obj.attach_tracepoint(prog, "syscalls", f"sys_enter_{name}")
                    if name not in ("exit", "exit_group"):
                        obj.attach_tracepoint("pw_one_exit", "syscalls", f"sys_exit_{name}")
            else:
                obj.attach_tracepoint("pw_raw_enter", "raw_syscalls", "sys_enter")
                obj.attach_tracepoint("pw_raw_exit", "raw_syscalls", "sys_exit")
        elif self.tool == "tcpconnect":
            obj.attach_tracepoint("pw_fork", "sched", "sched_process_fork")
            obj.attach_tracepoint("pw_tcp_state", "sock", "inet_sock_set_state")
        elif self.tool == "bashreadline":
            from .elf.symbols import resolve_symbol

            syms = resolve_symbol(self._bash, "readline")
            obj.attach_uprobe("pw_readline", self._bash, syms[0].offset, retprobe=True)

    def _autoload(self, obj: libbpf.BpfObject) -> None:
        if self.tool != "syscalls":
            return
        few = self._syscalls is not None and not (self._count or self._count_procs
                                                  or self._raw_syscalls)
        for p in ("pw_raw_enter", "pw_raw_exit"):
            obj.set_autoload(p, not few)
        arities = set()
        if few and self._syscalls is not None:
            arities = {min(len(self.table.by_name[n].args), 6) for n in self._syscalls}
        for n in range(7):
            obj.set_autoload(f"pw_one_enter{n}", n in arities)
        obj.set_autoload("pw_one_exit", few)
        obj.set_autoload("pw_exec", self._lifecycle)
        obj.set_autoload("pw_fork_info", self._lifecycle and self._exec_info)

    def start(self, count_only: bool = False) -> None:
        """Load, configure and attach; then release a gated command. (``count_only``
        changes nothing: counting in the kernel is chosen by ``emit``/``count``.)"""
        if self._started:
            return
        self._started = True
        with self._signals.deferred():  # every object is recorded as it is made
            obj = libbpf.BpfObject.open(object_bytes(self.tool), self.tool)
            self._obj = obj
            self._configure(obj)
            self._autoload(obj)
            obj.load()
            self._fill_maps(obj)
            self._rb = obj.ring_buffer("events", self._records.append)
            self._attach(obj)
            for hook in self.before_release:  # more programs armed before the command runs
                hook()
            self._t0 = time.monotonic()
            self._command.release()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Inside ring_buffer__poll/consume a handler only notes the signal: raising there
        # could land in the ctypes sample callback, where ctypes swallows exceptions;
        # events() raises KeyboardInterrupt / SystemExit at a safe point instead.
        # Anywhere else (e.g. blocked writing to a full pipe) it raises at once.
        self._stopped = True
        if self._in_poll:
            self._signalled = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    # -- running
    def stop(self) -> None:
        """End the trace; what is buffered can still be read (drain(), count())."""
        self._stopped = True

    def _drain(self) -> Iterator[Event]:
        records = self._records
        if not records:
            return
        batch = records[:]
        records.clear()
        dec = self.decoder.decode
        counts = self.counts
        for rec in batch:
            ev = dec(rec)
            if ev is None:
                continue
            counts[ev.event] = counts.get(ev.event, 0) + 1
            yield ev

    def uncount(self, items: Sequence[Event | EventRun]) -> None:
        """Take events delivered but not used out of the counts (which are per event)."""
        counts = self.counts
        for ev in items:
            n = counts.get(ev.event, 1) - 1
            if n > 0:
                counts[ev.event] = n
            else:
                counts.pop(ev.event, None)  # none used: not listed

    def _raw(self, duration: float | None, count_only: bool) -> Iterator[list[Event]]:
        """Batches of Events as the ring buffer gives them (the session's one ring:
        in the order committed), until duration passes, stop(), or the command exits."""
        self.start()
        rb = self._rb
        assert rb is not None
        deadline = None if duration is None else self._t0 + duration
        cmd = self._command
        tracking = cmd.pid != 0
        try:
            while True:
                done = self._stopped
                if deadline is not None and time.monotonic() >= deadline:
                    done = True
                if tracking and cmd.exited():
                    done = True
                self._in_poll = True
                try:
                    if done:
                        rb.consume()
                    else:
                        wait = 100
                        if deadline is not None:
                            wait = max(0, min(100, int((deadline - time.monotonic()) * 1000)))
                        rb.poll(wait)
                finally:
                    self._in_poll = False
                batch = list(self._drain())
                if batch or count_only:
                    yield [] if count_only else batch
                if done:
                    break
            self._done = True
        finally:
            self._t1 = time.monotonic()
        self._raise_signalled()

    def _raise_signalled(self) -> None:
        sig, self._signalled = self._signalled, 0
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        if sig:
            raise SystemExit(128 + sig)

    # -- results
    def losses(self) -> Losses:
        """What the programs counted: generated, lost to a full ring (per CPU), failed
        user-memory reads, truncated strings."""
        if self._obj is None or self._obj.closed:
            return getattr(self, "_last_losses", Losses())
        m = self._obj.map("stats")
        per = {}
        for slot in range(STAT_MAX):
            v = m.lookup(struct.pack("<I", slot), percpu=True)
            if v is not None:
                per[slot] = v
        self._last_losses = parse_stats(per, libbpf.num_possible_cpus())
        return self._last_losses

    def syscall_counts(self) -> dict[str, tuple[int, int, int]]:
        """name -> (calls, errors, time_ns), summed over CPUs (counted in the kernel)."""
        if self._obj is None:
            return {}
        m = self._obj.map("sys_counts")
        ncpu = libbpf.num_possible_cpus()
        stride = ((COUNT.size + 7) // 8) * 8
        out: dict[str, tuple[int, int, int]] = {}
        # the kernel counts every syscall; `syscalls=` (-e) selects the rows
        wanted = None if self._syscalls is None else set(self._syscalls)
        for nr in self.table.by_nr:
            if nr >= 1024 or (wanted is not None and self.table.name(nr) not in wanted):
                continue
            v = m.lookup(struct.pack("<I", nr), percpu=True)
            if not v:
                continue
            c = e = t = 0
            for cpu in range(ncpu):
                a, b, d = COUNT.unpack_from(v, cpu * stride)
                c, e, t = c + a, e + b, t + d
            if c or e:
                out[self.table.name(nr)] = (c, e, t)
        return out

    def proc_counts(self) -> dict[int, tuple[int, int, int]]:
        """pid -> (calls, errors, time_ns)."""
        if self._obj is None:
            return {}
        out = {}
        for k, v in self._obj.map("proc_counts").items():
            out[struct.unpack("<I", k)[0]] = COUNT.unpack_from(v)
        return out

    def summary(self) -> BpfSummary:
        """What the run delivered (per event name) and what the programs counted as lost."""
        return BpfSummary.of(self.counts, self.losses(), getattr(self.decoder, "unknown", 0),
                             self._t_init, self._t0, self._t1)

    def close(self) -> None:
        """Detach and close everything (links, ring buffer, maps, programs). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._signals.deferred():  # a second signal cannot cut clean-up short
                try:
                    self._command.close()  # a command never released is killed
                finally:
                    if self._obj is not None:
                        try:
                            self.losses()
                        except ProbewatchError:
                            pass
                        self._obj.close()
        finally:
            self._signals.restore()
            _live.discard(self)


def _ringbuf_size(kb: int) -> int:
    """Ring buffers are a power-of-two number of pages."""
    want = max(kb * 1024, os.sysconf("SC_PAGE_SIZE"))
    size = 1
    while size < want:
        size <<= 1
    return size


@atexit.register
def _close_all() -> None:
    for s in list(_live):
        try:
            s.close()
        except BaseException:  # a signal held back during close(): exiting anyway
            pass


__all__ = ["BpfSession", "BpfSummary", "bpf_available", "pick_backend"]
