"""Pick and open the collection backend of ``probewatch trace``.

Every backend is a :class:`probewatch.session.Session` (``Session(backend=...)``):
``ftrace`` (a private tracefs instance), ``perf`` (perf_event rings, fd-based
uprobes: :mod:`probewatch.perf_trace`) and ``bpf`` (generic eBPF programs:
:mod:`probewatch.bpf_trace`); all take the same keyword arguments and yield the same
Events. ``auto`` chooses by the job and by what the kernel offers:

- streaming events: ftrace. On the getppid firehose (bench/syscall_firehose.py, 1M
  calls, one run of every backend side by side, 2 shared CPUs) ftrace delivered all
  1,000,000 events at 2.2 us/call (6.4x untraced), bpf all at 6.3 us/call, perf
  371,256 (the rest lost, counted) at 9.9 us/call with its in-process reader, and
  ftrace starts fastest; so it stays the default.
- counting without a filter, up to :data:`AUTO_BPF_MAX_TRACEPOINTS` bpf links (syscall
  tracepoints, counted on the raw sys_enter/sys_exit tracepoints, take one per direction):
  bpf counts in the kernel (1.76 us/call, 289 ns of tracer CPU per event measured;
  perf's counters 1.91 us/call and 220 ns, equal within that run's noise).
- aggregating (``trace --hist / --by / --latency``) without a filter, up to
  :data:`AUTO_BPF_MAX_TRACEPOINTS` tracepoints: bpf, which aggregates in BPF maps and
  sends no events (bench/aggregate_cost.py, one run: ``--by comm`` of 1M getppid
  777 ns/call against 870 for bpftrace and 2059 for ftrace's user-space aggregation,
  586 untraced; a log2 ``--hist`` of a uprobe argument 9.9 us/call against 12.9 for
  bpftrace and 17.9 for ftrace), ~0 tracer CPU per event.
- counting with a ``--filter``: perf. Its counters take the tracefs filter in the
  kernel and no record crosses to user space (bpf would have to ship every record
  to evaluate the filter, ftrace decodes pages: 612 ns of tracer CPU per event).
- where a backend cannot run here: ftrace, then perf, then bpf.

Example::

    from probewatch.backends import open_session
    with open_session("auto", pids=[1234]) as s:
        s.add("t:sched:sched_switch")
        for ev in s.events(duration=1):
            print(ev.event, ev.fields)
"""

from __future__ import annotations

from typing import Any

from .errors import FeatureUnavailable, ProbewatchError, TracefsError

BACKENDS = ("auto", "ftrace", "perf", "bpf")
#: auto counts on bpf only up to this many tracepoints: each bpf tracepoint link costs
#: the kernel an RCU grace period (under a global mutex) when it is closed, so 720
#: syscall tracepoints took ~52 s to detach; a tracefs instance is removed at once
AUTO_BPF_MAX_TRACEPOINTS = 64
_BPF_COUNT_KINDS = {"t", "tracepoint", "u", "uprobe", "ur", "uretprobe"}
#: auto counts on perf only while the counters fit in this many file descriptors (one
#: per probe and CPU, and per thread with -p; the default limit is 1024)
AUTO_PERF_MAX_FDS = 512


def open_session(
    backend: str = "auto",
    *,
    counting: bool = False,
    kernel_agg: bool = False,
    specs: list[str] | None = None,
    user_filter: str | None = None,
    **kw: Any,
) -> Any:
    """The :class:`probewatch.session.Session` of ``backend``; same API either way.

    kw: buffer_kb, pids, comm, follow_children, spool_mb (ftrace only) (as
    :class:`probewatch.session.Session`), stack ("user", "kernel", "both": events carry
    ``fields["stack"]``; see :func:`_with_stacks` for what ``auto`` picks then).
    With ``auto`` (see the module's docstring for the measurements): counting-only
    runs of tracepoint/uprobe specs without a filter go to bpf, which counts in the
    kernel, unless they take more than :data:`AUTO_BPF_MAX_TRACEPOINTS` links (detaching
    that many takes the kernel a long time; syscall tracepoints take one per
    direction, see :func:`_bpf_count_links`); with a
    filter they go to perf's counters while they fit in :data:`AUTO_PERF_MAX_FDS`;
    everything else goes to ftrace (then perf, then bpf where ftrace cannot run).
    ``kernel_agg``: an aggregation (trace --hist/--by/--latency) that bpf may compute
    in the kernel: ``auto`` takes bpf for it as for counting (the session falls back
    to user space for what the kernel cannot key on, e.g. string fields).
    """
    if backend not in BACKENDS:
        raise ProbewatchError(f"unknown backend {backend!r} (have: {', '.join(BACKENDS)})")
    if kw.get("stack") is not None:
        return _with_stacks(backend, specs or [], **kw)
    kw.pop("stack", None)
    if backend == "bpf":
        return _bpf(**kw)
    if backend == "perf":
        return _perf(**kw)
    from .session import Session

    countable = backend == "auto" and (counting or kernel_agg) and bool(specs) and all(
        sp.split(":", 1)[0] in _BPF_COUNT_KINDS and not _is_mark(sp) for sp in specs or [])
    if countable and not user_filter and _bpf_count_links(specs or []) <= \
            AUTO_BPF_MAX_TRACEPOINTS:
        try:
            return _bpf(**kw)
        except ProbewatchError:
            pass  # fall through to ftrace
    if countable and user_filter and _perf_fds(specs or [], kw) <= AUTO_PERF_MAX_FDS:
        try:
            return _perf(**kw)
        except ProbewatchError:
            pass

    if backend == "ftrace":
        return Session(backend="ftrace", **kw)
    try:
        return Session(backend="ftrace", **kw)
    except (FeatureUnavailable, TracefsError) as ftrace_err:
        try:
            return _perf(**kw)
        except ProbewatchError as perf_err:
            try:
                return _bpf(**kw)
            except ProbewatchError as bpf_err:
                raise FeatureUnavailable(
                    f"no backend can run here: ftrace: {ftrace_err}; perf: {perf_err}; "
                    f"bpf: {bpf_err}") from None


def _with_stacks(backend: str, specs: list[str], **kw: Any) -> Any:
    """A session whose events carry ``fields["stack"]`` (``stack``: user, kernel, both).

    ``auto`` takes perf (PERF_SAMPLE_CALLCHAIN: every kind of stack), then ftrace for
    kernel stacks (the instance's stacktrace option), then bpf (bpf_get_stack); but
    kernel stacks of syscall tracepoints go to ftrace first: perf samples them with the
    syscall's user registers, so their kernel callchain is empty, while ftrace's
    stacktrace records the entry path (do_syscall_64, entry_SYSCALL_64...).
    """
    stack = kw["stack"]
    if stack not in ("user", "kernel", "both"):
        raise ProbewatchError(f"--stack must be user, kernel or both (got {stack!r})")
    if backend == "perf":
        return _perf(**kw)
    if backend == "bpf":
        return _bpf(**kw)
    from .session import Session

    if backend == "ftrace":
        return Session(backend="ftrace", **kw)
    errors = []
    if stack == "kernel" and any(_syscall_tp(sp) for sp in specs):
        try:
            return Session(backend="ftrace", **kw)
        except ProbewatchError as e:
            errors.append(f"ftrace: {e}")
    try:
        return _perf(**kw)
    except ProbewatchError as e:
        errors.append(f"perf: {e}")
    if stack == "kernel":
        try:
            return Session(backend="ftrace", **kw)
        except ProbewatchError as e:
            errors.append(f"ftrace: {e}")
    try:
        return _bpf(**kw)
    except ProbewatchError as e:
        errors.append(f"bpf: {e}")
    raise FeatureUnavailable(f"no backend can take {stack} stacks here: " + "; ".join(errors))


def _syscall_tp(spec: str) -> bool:
    head = spec.strip().split(None, 1)[0] if spec.strip() else ""
    kind, _, rest = head.partition(":")
    return kind in ("t", "tracepoint") and rest.split(":", 1)[0] in ("syscalls", "raw_syscalls")


def _perf_fds(specs: list[str], kw: dict[str, Any]) -> int:
    """About how many perf counters counting ``specs`` opens (probes x CPUs x tasks)."""
    import os

    from .collect.perf import online_cpus

    probes = _tracepoints(specs) + sum(1 for sp in specs if sp.split(":", 1)[0] in (
        "u", "uprobe", "ur", "uretprobe"))
    tasks = 0
    for p in kw.get("pids") or []:
        try:
            tasks += len(os.listdir(f"/proc/{p}/task"))
        except OSError:
            tasks += 1
    return probes * len(online_cpus()) * max(1, tasks)


def _is_mark(spec: str) -> bool:
    """t:ftrace:print / t:ftrace:raw_data: trace_marker writes, which only a tracefs
    instance records (BPF cannot attach to them)."""
    head = spec.strip().split(None, 1)[0] if spec.strip() else ""
    return head.split(":", 1)[-1].startswith("ftrace:")


def _tracepoints(specs: list[str]) -> int:
    """How many tracepoints the t: specs expand to (0 for what cannot be resolved:
    the backend then reports it)."""
    from .kernel.tracefs import tracefs_root
    from .sources.spec import parse_spec
    from .sources.tracepoint import resolve_tracepoints

    n = 0
    for sp in specs:
        try:
            ps = parse_spec(sp)
            if ps.kind == "tracepoint" and ps.system and ps.name:
                n += len(resolve_tracepoints(tracefs_root(), ps.system, ps.name))
        except ProbewatchError:
            continue
    return n


def _bpf_count_links(specs: list[str]) -> int:
    """The bpf links counting the t: specs takes: syscall tracepoints are counted by
    number on one raw tracepoint per direction (collect/bpf/count.py), others take one
    link each (all of them generic ones past count.py's MAX_TPS)."""
    from .collect.bpf.count import MAX_TPS
    from .kernel.tracefs import tracefs_root
    from .sources.spec import parse_spec
    from .sources.tracepoint import resolve_tracepoints

    enter = exit_ = False
    other = 0
    for sp in specs:
        try:
            ps = parse_spec(sp)
            if ps.kind != "tracepoint" or not ps.system or not ps.name:
                continue
            for system, name in resolve_tracepoints(tracefs_root(), ps.system, ps.name):
                if system == "syscalls" and name.startswith("sys_enter_"):
                    enter = True
                elif system == "syscalls" and name.startswith("sys_exit_"):
                    exit_ = True
                else:
                    other += 1
        except ProbewatchError:
            continue
    if other > MAX_TPS:
        return _tracepoints(specs)
    return other + enter + exit_


def _perf(**kw: Any) -> Any:
    from .perf_trace import PerfTraceSession

    kw.pop("spool_mb", None)  # the perf rings are bounded by themselves
    return PerfTraceSession(backend="perf", **kw)


def _bpf(**kw: Any) -> Any:
    from .bpf_session import bpf_available

    kw.pop("spool_mb", None)  # the BPF ring buffer is bounded by itself
    from .bpf_trace import BpfTraceSession

    ok, why = bpf_available()
    if not ok:
        raise FeatureUnavailable(f"the BPF backend is not usable here: {why}")
    return BpfTraceSession(backend="bpf", **kw)


__all__ = ["open_session", "BACKENDS"]
