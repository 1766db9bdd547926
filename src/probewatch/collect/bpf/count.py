"""In-kernel counting at the limit: ``count.bpf.c`` behind ``trace --count`` (bpf).

The generic tracepoint program (``generic.bpf.c``'s ``pw_tp``) runs on the perf
tracepoint path: the kernel copies each event's arguments into a record before the
program runs. To count, nothing of that is needed: this collector attaches raw
tracepoints instead and counts in one per-CPU array.

- ``syscalls:sys_enter_X`` / ``sys_exit_X``: one program on the raw tracepoint
  ``sys_enter`` / ``sys_exit`` (the one under every syscall tracepoint) counts each
  syscall by number; a slot's count is the sum over the numbers of its syscall.
- any other tracepoint: a raw tracepoint of the same name, one program each
  (at most :data:`MAX_TPS`).
- ``-p`` / ``-- CMD``: a bitmap of thread-group ids (children join at fork).

Which program type counted (``tp_btf``, ``raw_tp``) is :attr:`CountCollector.kind`;
the session's summary reports it as ``counted_by``. ``PROBEWATCH_BPF_COUNT`` in the
environment picks one (``tp_btf``, ``raw_tp``, or ``tracepoint``: the generic program)
for benchmarks (bench/syscall_firehose.py compares them); the default, ``auto``, is
``tp_btf`` where the kernel has BTF (its ``sys_exit`` program loads the syscall number
straight from pt_regs; ``raw_tp`` needs a bpf_probe_read_kernel for it).

Differences from the perf tracepoint path (why the session falls back to
:class:`~probewatch.collect.bpf.generic.GenericCollector` in those cases): no
``--filter`` (no record to evaluate it on), no ``--comm``, no uprobes; at most
:data:`MAX_TPS` non-syscall tracepoints. Syscalls of 32-bit (compat) tasks are left
out, as the syscall tracepoints leave them out (x86_64: the code segment in pt_regs;
arm64: an AArch32 pstate).

Example::

    col = CountCollector(pids=[1234])
    col.add_tracepoint(0, "syscalls", "sys_enter_getppid", nrs=[110])
    col.load()
    col.attach()
    ...
    col.slot_counts()   # {0: 1000000}
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from ...errors import ProbewatchError
from . import libbpf
from .loader import Losses, object_bytes

NR_MAX = 1024  # probewatch.h PW_NR_MAX
MAX_TPS = 16  # count.bpf.c PW_CNT_TPS
EXIT_BASE = NR_MAX
TP_BASE = 2 * NR_MAX
PID_MAX_DEFAULT = 1 << 22
#: program types for syscalls, cheapest first (bench/syscall_firehose.py measured it)
KINDS = ("tp_btf", "raw_tp")


def pid_max() -> int:
    """The kernel's pid_max (largest pid + 1)."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return PID_MAX_DEFAULT


@dataclass
class _Count:
    slot: int
    system: str
    name: str
    keys: list[int]  # indexes into the counts map
    tp: int = -1  # pw_cnt_tpN for a non-syscall tracepoint


@dataclass
class CountCollector:
    """Load count.bpf.o, attach raw tracepoints, read per-slot counts.

    ``kind``: "auto" (tp_btf where the kernel has BTF, else raw_tp), "tp_btf" or
    "raw_tp" for the syscall programs (non-syscall tracepoints are always raw_tp).
    """

    pids: list[int] = field(default_factory=list)
    follow: bool = True
    exclude_self: bool = True
    kind: str = "auto"
    raw: list[bytes] = field(default_factory=list)  # never filled: no records

    def __post_init__(self) -> None:
        if self.kind not in ("auto", *KINDS):
            raise ProbewatchError(f"count program kind must be auto, tp_btf or raw_tp "
                                  f"(got {self.kind!r})")
        self._counts: list[_Count] = []
        self._ntp = 0
        self._obj: libbpf.BpfObject | None = None
        self._last: dict[int, int] = {}

    # -- what to count (before load)
    def add_tracepoint(self, slot: int, system: str, name: str,
                       nrs: list[int] | None = None) -> None:
        """Count ``system:name`` into ``slot``; a syscall tracepoint needs its numbers."""
        if system == "syscalls" and name.startswith(("sys_enter_", "sys_exit_")):
            if not nrs or any(not 0 <= n < NR_MAX for n in nrs):
                raise ProbewatchError(f"{system}:{name}: no syscall number below {NR_MAX}")
            base = 0 if name.startswith("sys_enter_") else EXIT_BASE
            self._counts.append(_Count(slot, system, name, [base + n for n in nrs]))
            return
        if self._ntp >= MAX_TPS:
            raise ProbewatchError(f"at most {MAX_TPS} tracepoints besides syscalls "
                                  "are counted on raw tracepoints")
        self._counts.append(_Count(slot, system, name, [TP_BASE + self._ntp], self._ntp))
        self._ntp += 1

    @property
    def nslots(self) -> int:
        return len(self._counts)

    def _want(self) -> tuple[bool, bool]:
        enter = any(c.tp < 0 and c.keys[0] < EXIT_BASE for c in self._counts)
        exit_ = any(c.tp < 0 and c.keys[0] >= EXIT_BASE for c in self._counts)
        return enter, exit_

    # -- load, attach
    def load(self, emit: bool = False) -> None:
        kinds = [self.kind] if self.kind != "auto" else (
            list(KINDS) if os.path.exists("/sys/kernel/btf/vmlinux") else ["raw_tp"])
        err: libbpf.BpfLibError | None = None
        for k in kinds:
            try:
                self._load(k)
                self.kind = k
                return
            except libbpf.BpfLibError as e:  # e.g. tp_btf refused: raw_tp next
                err = e
                if self._obj is not None:
                    self._obj.close()
                    self._obj = None
        assert err is not None
        raise err

    def _load(self, kind: str) -> None:
        if self._obj is not None:
            raise ProbewatchError("CountCollector: already loaded")
        obj = libbpf.BpfObject.open(object_bytes("count"), "count")
        self._obj = obj
        filt = bool(self.pids)
        ro = obj.rodata
        ro["self_pid"] = os.getpid() if self.exclude_self else 0
        ro["filter_pids"] = 1 if filt else 0
        words = (pid_max() + 63) // 64 if filt else 1
        obj.set_max_entries("pid_bits", words)
        enter, exit_ = self._want()
        btf = kind == "tp_btf"
        obj.set_autoload("pw_cnt_enter", enter and not btf)
        obj.set_autoload("pw_cnt_exit", exit_ and not btf)
        obj.set_autoload("pw_cnt_enter_btf", enter and btf)
        obj.set_autoload("pw_cnt_exit_btf", exit_ and btf)
        for i in range(MAX_TPS):
            obj.set_autoload(f"pw_cnt_tp{i}", i < self._ntp)
        obj.set_autoload("pw_cnt_fork", filt and self.follow)
        obj.set_autoload("pw_cnt_gone", filt)
        obj.load()
        if filt:
            bits: dict[int, int] = {}
            for p in self.pids:
                if p // 64 >= words:
                    raise ProbewatchError(f"pid {p} is above the kernel's pid_max")
                bits[p // 64] = bits.get(p // 64, 0) | 1 << (p % 64)
            m = obj.map("pid_bits")
            for w, v in bits.items():
                m.update(struct.pack("<I", w), struct.pack("<Q", v))

    def attach(self) -> None:
        obj = self._obj
        assert obj is not None
        if self.pids and self.follow:
            obj.attach_tracepoint("pw_cnt_fork", "sched", "sched_process_fork")
        enter, exit_ = self._want()
        btf = self.kind == "tp_btf"
        if enter:
            if btf:
                obj.attach_btf_tracepoint("pw_cnt_enter_btf")
            else:
                obj.attach_raw_tracepoint("pw_cnt_enter", "sys_enter")
        if exit_:
            if btf:
                obj.attach_btf_tracepoint("pw_cnt_exit_btf")
            else:
                obj.attach_raw_tracepoint("pw_cnt_exit", "sys_exit")
        for c in self._counts:
            if c.tp >= 0:
                obj.attach_raw_tracepoint(f"pw_cnt_tp{c.tp}", c.name)
        if self.pids:  # last: a raw tracepoint's programs run in the order attached, so
            # a counted sched_process_exit still sees the exiting pid in the set
            obj.attach_raw_tracepoint("pw_cnt_gone", "sched_process_exit")

    # -- the collector interface the session drives (no records: nothing to read)
    def poll(self, timeout_ms: int) -> int:
        return 0

    def consume(self) -> int:
        return 0

    def epoll_fd(self) -> int:
        return -1

    def stop(self) -> None:
        self.detach()

    def detach(self) -> None:
        if self._obj is not None and not self._obj.closed:
            self._obj.detach()

    def _refresh(self) -> None:
        obj = self._obj
        if obj is None or obj.closed:
            return
        m = obj.map("counts")
        ncpu = libbpf.num_possible_cpus()
        for c in self._counts:
            total = 0
            for k in c.keys:
                v = m.lookup(struct.pack("<I", k), percpu=True)
                if v is not None:
                    total += sum(struct.unpack_from(f"<{ncpu}Q", v))
            self._last[c.slot] = total

    def slot_counts(self) -> dict[int, int]:
        """slot -> times its tracepoint fired for a wanted task."""
        self._refresh()
        return dict(self._last)

    def losses(self) -> Any:
        """Nothing is ever lost: no record is made."""
        return Losses()

    def close(self) -> None:
        if self._obj is not None and not self._obj.closed:
            try:
                self._refresh()
            except ProbewatchError:
                pass
            self._obj.close()




def syscall_nrs(name: str) -> list[int]:
    """The numbers of the syscall whose tracepoints are ``sys_enter_NAME`` /
    ``sys_exit_NAME`` (the format name: ``newstat`` is ``stat``'s); [] if unknown.

    Example::

        syscall_nrs("getppid")   # [110] on x86_64
    """
    from ...decode.syscalls import _FORMAT_ALIAS
    from .loader import syscall_table

    table = syscall_table()
    return sorted(nr for nr, info in table.by_nr.items()
                  if info.name == name or _FORMAT_ALIAS.get(info.name) == name)


__all__ = ["CountCollector", "KINDS", "MAX_TPS", "NR_MAX", "pid_max", "syscall_nrs"]
