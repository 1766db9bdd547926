"""A referee count of tracepoint hits on the ftrace path, which no BPF program gates.

perf events of a tracepoint only see the hits that every BPF program attached to it
(through a perf event, by anyone) returned non-zero for; their counters included
(:mod:`probewatch.kernel.bpfgate`). The ftrace path of the same tracepoint has no such
gate. :class:`Referee` enables a tracepoint, with the same kernel filter and task
scope as the perf events, in a private tracefs instance with a one-page ring per CPU
that nobody reads: every hit is written (or overwrites an older one) and the kernel
counts both (``per_cpu/cpuN/stats``: ``entries`` + ``overrun`` + ``commit overrun``).
That is the number of hits, whatever BPF did; what perf saw less is what was hidden.

Scope: ``pids`` given, ``set_event_pid`` holds their threads and ``options/event-fork``
adds their children as perf's ``inherit`` does; otherwise system-wide, the caller's
filter excluding itself as for the perf events.

Example::

    ref = Referee(root, "syscalls", "sys_enter_getppid", None, pids=[1234])
    ref.open(tasks=[1234])
    ref.start()                # before the traced command runs
    ...
    ref.stop()
    ref.count()                # 1000000
    ref.close()
"""

from __future__ import annotations

import re

from ..kernel.tracefs import Instance

_STAT = re.compile(r"^(entries|overrun|commit overrun):\s*(\d+)", re.M)


class Referee:
    """Counts the hits of one tracepoint in its own private tracefs instance (the
    instance's ring stats are per CPU, not per event: one instance per event)."""

    def __init__(self, root: str, system: str, name: str, filter_expr: str | None,
                 pids: list[int] | None = None, follow: bool = True) -> None:
        self.root = root
        self.system = system
        self.name = name
        self.filter = filter_expr
        self.pids = list(pids or [])
        self.follow = follow
        self.inst: Instance | None = None
        self.final: int | None = None

    def open(self, tasks: list[int]) -> None:
        """Create the instance, tracing off, the event enabled (``tasks``: the threads
        of the pids, when pids were given)."""
        inst = self.inst = Instance.create(self.root)
        inst.tracing_on(False)
        inst.set_buffer_kb(4)  # one page per CPU: only the counts are wanted
        inst.set_option("overwrite", True)
        if self.pids:
            inst.set_option("event-fork", self.follow)
            inst.set_event_pids(tasks)
        inst.enable(self.system, self.name, self.filter)

    def start(self) -> None:
        if self.inst is not None:
            self.inst.tracing_on(True)

    def count(self) -> int:
        """The hits so far (``entries + overrun + commit overrun`` over the CPUs)."""
        if self.final is not None:
            return self.final
        total = 0
        if self.inst is not None:
            for _cpu, d in self.inst.cpu_dirs():
                try:
                    with open(f"{d}/stats") as f:
                        total += sum(int(v) for _k, v in _STAT.findall(f.read()))
                except OSError:
                    pass
        return total

    def stop(self) -> None:
        """Stop counting and keep the count (idempotent)."""
        if self.inst is None or self.final is not None:
            return
        self.inst.tracing_on(False)
        self.final = self.count()

    def close(self) -> None:
        """Remove the instance (the count stays readable). Idempotent."""
        try:
            self.stop()
        finally:
            inst, self.inst = self.inst, None
            if inst is not None:
                inst.remove()


__all__ = ["Referee"]
