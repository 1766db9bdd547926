"""Resolve a probe spec once, for every backend: what it names in this kernel and on disk.

A tracepoint spec becomes the (system, name) pairs its globs match, with their
:class:`~probewatch.decode.format.EventFormat`; a ``u:``/``ur:``/``U:``/``k:``/``kr:``
spec becomes :class:`~probewatch.sources.uprobe.DynamicProbe` definitions (ELF symbol
-> file offset, USDT notes, kernel function globs against
``available_filter_functions``). Each backend arms the result its own way (ftrace and
tracefs-defined perf probes write the definition, the perf PMU and BPF attach to
path + offset); nothing here touches the kernel's state.

Example::

    [rp] = resolve(parse_spec("t:sched:sched_switch"), "/sys/kernel/tracing")
    rp.event, rp.fmt.id          # ('sched:sched_switch', 316)
    [rp] = resolve(parse_spec("u:libc:malloc size=arg0"), root)
    rp.dynamic.offset            # file offset of malloc in libc
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from ..decode.format import EventFormat, load_format
from ..errors import FeatureUnavailable, NotFound
from .spec import ProbeSpec, has_glob
from .tracepoint import resolve_tracepoints
from .uprobe import DynamicProbe

#: a kernel function glob may expand to at most this many kprobes
MAX_KPROBE_GLOB = 64


@dataclass
class ResolvedProbe:
    """One event a spec stands for: a tracepoint (``fmt``) or a dynamic probe
    (``dynamic``: its definition, target file and offset)."""

    spec: ProbeSpec
    system: str
    name: str
    fmt: EventFormat | None = None
    dynamic: DynamicProbe | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def event(self) -> str:
        """``system:name`` (the form Event.event carries)."""
        return f"{self.system}:{self.name}"

    @property
    def kind(self) -> str:
        return self.spec.kind


def resolve(ps: ProbeSpec, root: str, pid: int | None = None) -> list[ResolvedProbe]:
    """Every event ``ps`` stands for (globs expanded); SpecError / NotFound /
    FeatureUnavailable when it cannot be resolved. ``pid`` finds libraries through
    ``/proc/PID/maps``."""
    if ps.kind == "tracepoint":
        assert ps.system is not None and ps.name is not None
        return [ResolvedProbe(ps, s, n, fmt=load_format(root, s, n))
                for s, n in resolve_tracepoints(root, ps.system, ps.name)]
    return [ResolvedProbe(ps, dp.group, dp.name, dynamic=dp, warnings=list(dp.warnings))
            for dp in resolve_dynamic(ps, root, pid)]


def resolve_dynamic(ps: ProbeSpec, root: str, pid: int | None = None) -> list[DynamicProbe]:
    """The definitions of a uprobe, uretprobe, USDT, kprobe or kretprobe spec."""
    # imported here: ELF reading is not needed by tracepoint-only sessions
    from .uprobe import kprobe_definition, resolve_uprobe
    from .usdt import resolve_usdt

    if ps.kind in ("kprobe", "kretprobe"):
        return [kprobe_definition(ps, function=f) for f in kernel_functions(ps, root)]
    if ps.kind == "usdt":
        return resolve_usdt(ps, pid=pid)
    return resolve_uprobe(ps, pid=pid)


def kernel_functions(ps: ProbeSpec, root: str) -> list[str]:
    """The kernel functions a ``k:`` spec names (its glob expanded against tracefs
    ``available_filter_functions``)."""
    func = ps.symbol or ""
    if not has_glob(func):
        return [func]
    names: list[str] = []
    path = os.path.join(root, "available_filter_functions")
    try:
        with open(path) as f:
            for line in f:
                n = line.split(None, 1)[0] if line.strip() else ""
                if n and fnmatch.fnmatchcase(n, func) and n not in names:
                    names.append(n)
    except OSError:
        raise FeatureUnavailable(f"cannot expand {func!r}: {path} unreadable") from None
    if not names:
        raise NotFound(f"no kernel function matches {func!r}")
    if len(names) > MAX_KPROBE_GLOB:
        raise ps.error(f"{func!r} matches {len(names)} kernel functions (limit "
                       f"{MAX_KPROBE_GLOB})", part="symbol")
    return names


__all__ = ["ResolvedProbe", "resolve", "resolve_dynamic", "kernel_functions",
           "MAX_KPROBE_GLOB"]
