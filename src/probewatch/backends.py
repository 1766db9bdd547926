"""Pick and open the collection backend of ``probewatch trace``.

``ftrace`` is :class:`probewatch.session.Session` (a private tracefs instance);
``bpf`` is :class:`probewatch.bpf_trace.BpfTraceSession` (generic eBPF programs);
both take the same keyword arguments and yield the same Events. ``auto`` picks
ftrace, and falls back to bpf when the ftrace backend cannot run here. On the
getppid firehose ftrace delivers more events per second with less slowdown of the
traced workload and starts faster (see the benchmark in bench/README.md or the
report of the change that added the bpf backend), so it stays the default.

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

BACKENDS = ("auto", "ftrace", "bpf")
#: auto counts on bpf only up to this many tracepoints: each bpf tracepoint link costs
#: the kernel an RCU grace period (under a global mutex) when it is closed, so 720
#: syscall tracepoints took ~52 s to detach; a tracefs instance is removed at once
AUTO_BPF_MAX_TRACEPOINTS = 64
_BPF_COUNT_KINDS = {"t", "tracepoint", "u", "uprobe", "ur", "uretprobe"}


def open_session(
    backend: str = "auto",
    *,
    counting: bool = False,
    specs: list[str] | None = None,
    user_filter: str | None = None,
    **kw: Any,
) -> Any:
    """A Session (ftrace) or BpfTraceSession (bpf) for ``backend``; same API either way.

    kw: buffer_kb, pids, comm, follow_children, spool_mb (ftrace only) (as
    :class:`probewatch.session.Session`).
    With ``auto``, counting-only runs of tracepoint/uprobe specs without a filter go
    to bpf, which counts in the kernel (no record crosses to user space), unless they
    expand to more than :data:`AUTO_BPF_MAX_TRACEPOINTS` tracepoints (detaching that
    many bpf links takes the kernel a long time); everything else goes to ftrace.
    """
    if backend not in BACKENDS:
        raise ProbewatchError(f"unknown backend {backend!r} (have: {', '.join(BACKENDS)})")
    if backend == "bpf":
        return _bpf(**kw)
    from .session import Session

    if backend == "auto" and counting and not user_filter and specs and all(
        sp.split(":", 1)[0] in _BPF_COUNT_KINDS and not _is_mark(sp) for sp in specs
    ) and _tracepoints(specs) <= AUTO_BPF_MAX_TRACEPOINTS:
        try:
            return _bpf(**kw)
        except ProbewatchError:
            pass  # fall through to ftrace

    if backend == "ftrace":
        return Session(backend="ftrace", **kw)
    try:
        return Session(backend="ftrace", **kw)
    except (FeatureUnavailable, TracefsError) as ftrace_err:
        try:
            return _bpf(**kw)
        except ProbewatchError as bpf_err:
            raise FeatureUnavailable(
                f"no backend can run here: ftrace: {ftrace_err}; bpf: {bpf_err}"
            ) from None


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


def _bpf(**kw: Any) -> Any:
    from .bpf_session import bpf_available

    kw.pop("spool_mb", None)  # the BPF ring buffer is bounded by itself
    from .bpf_trace import BpfTraceSession

    ok, why = bpf_available()
    if not ok:
        raise FeatureUnavailable(f"the BPF backend is not usable here: {why}")
    return BpfTraceSession(backend="bpf", **kw)


__all__ = ["open_session", "BACKENDS"]
