"""The collector interface every collection mechanism implements.

A probe spec is resolved once by :func:`probewatch.sources.probes.resolve` into
:class:`~probewatch.sources.probes.ResolvedProbe` s; the session hands each one to its
collector's :meth:`Collector.arm` (with the tracefs filter and what the mechanism
needs besides), runs it, reads what it collected and closes it:

- :class:`probewatch.collect.ftrace.FtraceCollector`: enables the event in a private
  tracefs instance (dynamic probes are defined in tracefs first);
- :class:`probewatch.collect.perf.PerfCollector`: a perf event per CPU (tracepoint
  id, or the uprobe/kprobe PMU at path + offset / function);
- :class:`probewatch.collect.bpf.generic.GenericCollector`: one attachment of the
  generic BPF programs (tracepoint format, or uprobe path + offset + arguments).

Reading stays mechanism-specific (pages from a spool, perf ring records, BPF ring
buffer records); the session decodes them into the same
:class:`~probewatch.event.Event` records.

Example::

    def arm_all(col: Collector, probes: list[ResolvedProbe]) -> None:
        for rp in probes:
            col.arm(rp, None)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..sources.probes import ResolvedProbe


class Collector(Protocol):
    """Arm resolved probes, stop, close (see the module docstring)."""

    def arm(self, probe: ResolvedProbe, filter: str | None = None, **how: Any) -> int:
        """Arm one resolved probe (``filter``: tracefs syntax, where the mechanism
        filters in the kernel); returns its index in this collector."""
        ...

    def stop(self) -> None:
        """Stop collecting; what is buffered can still be read."""
        ...

    def close(self) -> None:
        """Release everything in the kernel. Idempotent."""
        ...


@dataclass
class Losses:
    """What a collector counted of what the kernel did not deliver: ``lost`` (ring
    overruns, per CPU in ``lost_per_cpu``); the BPF programs also count what they
    ``generated``, user-memory reads that failed (``read_failed``) and records cut
    short (``truncated``). Every session's ``losses()`` returns one.

    Example::

        Losses(generated=10, lost=2, lost_per_cpu={0: 2}).to_dict()["lost"]   # 2
    """

    generated: int = 0
    lost: int = 0
    read_failed: int = 0
    truncated: int = 0
    lost_per_cpu: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # the fields in order, JSON's string keys per CPU
        d["lost_per_cpu"] = {str(k): v for k, v in sorted(self.lost_per_cpu.items())}
        return d


__all__ = ["Collector", "Losses"]
