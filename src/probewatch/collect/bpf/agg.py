"""The maps of generic.bpf.c's in-kernel aggregation (agg.h), from the Python side.

:class:`AggSetup` is what user space writes before load (the .rodata switches and one
``struct pw_aggconf`` per slot); :func:`read_agg` and :func:`read_agg_stats` read map
``agg`` (every CPU's ``struct pw_agg_val`` summed) and map ``agg_stats`` back. What the
numbers mean for ``trace --hist / --by / --latency`` is
:mod:`probewatch.bpf_agg`'s business.

Example::

    setup = AggSetup(keys=AGGK_COMM | AGGK_SLOT, hist=AGGH_NONE)
    setup.slots[0] = AggSlot()
    col = GenericCollector(agg=setup)          # pw_tp_agg & co. instead of pw_tp
    ...
    rows = read_agg(col_obj)                   # {key bytes: (count, sum)}
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from . import libbpf

# agg.h
AGG_FIELDS = 2
AGGK_COMM, AGGK_PID, AGGK_TID, AGGK_CPU, AGGK_SLOT = 1, 2, 4, 8, 16
AGGH_NONE, AGGH_LOG2, AGGH_LINEAR = 0, 1, 2
AGGS_NONE, AGGS_TP, AGGS_UARG, AGGS_PID, AGGS_TID, AGGS_CPU, AGGS_ABSENT = range(7)
AGGR_AGG, AGGR_ENTER, AGGR_EXIT, AGGR_SKIP = range(4)
AGGST_FULL, AGGST_UNMATCHED, AGGST_START_FULL = 0, 1, 2
AGGST_MAX = 4
#: default size of map "agg" (keys) and "agg_start" (threads inside a latency pair)
DEFAULT_MAX_KEYS = 10240

AGGSRC = struct.Struct("<BBBBHH")  # struct pw_aggsrc, 8 bytes
AGGCONF_TAIL = struct.Struct("<BBHI")  # role, _pad, pair, _pad2
AGGCONF_SIZE = 3 * AGGSRC.size + AGGCONF_TAIL.size  # struct pw_aggconf, 32 bytes
AGG_KEY = struct.Struct(f"<16sIIIIII{AGG_FIELDS}qq")  # struct pw_agg_key, 64 bytes
AGG_VAL = struct.Struct("<QQ")  # struct pw_agg_val


@dataclass(frozen=True)
class AggSrc:
    """Where a number comes from (``struct pw_aggsrc``)."""

    kind: int = AGGS_NONE
    size: int = 0
    sign: bool = False
    off: int = 0

    def pack(self) -> bytes:
        return AGGSRC.pack(self.kind, self.size, int(self.sign), 0, self.off, 0)


@dataclass
class AggSlot:
    """One slot's ``struct pw_aggconf``: its key fields, its value, its latency role."""

    key: tuple[AggSrc, ...] = ()
    value: AggSrc = AggSrc()
    role: int = AGGR_AGG
    pair: int = 0

    def pack(self) -> bytes:
        keys = list(self.key) + [AggSrc()] * (AGG_FIELDS - len(self.key))
        return (b"".join(k.pack() for k in keys[:AGG_FIELDS]) + self.value.pack()
                + AGGCONF_TAIL.pack(self.role, 0, self.pair, 0))


@dataclass
class AggSetup:
    """The .rodata switches of the aggregation and the per-slot configurations."""

    keys: int = 0  # AGGK_* bits
    hist: int = AGGH_NONE
    step: int = 1
    slots: dict[int, AggSlot] = field(default_factory=dict)
    max_keys: int = DEFAULT_MAX_KEYS
    max_starts: int = DEFAULT_MAX_KEYS

    def configure(self, obj: Any) -> None:
        """Before load: the .rodata switches and the map sizes."""
        ro = obj.rodata
        ro["agg_keys"] = self.keys
        ro["agg_hist"] = self.hist
        ro["agg_step"] = max(1, self.step)
        obj.set_max_entries("agg", max(1, self.max_keys))
        obj.set_max_entries("agg_start", max(1, self.max_starts))

    def write(self, obj: Any) -> None:
        """After load: one ``struct pw_aggconf`` per slot."""
        m = obj.map("aggconf")
        for slot, conf in self.slots.items():
            m.update(struct.pack("<I", slot), conf.pack())


def _percpu_sum(raw: bytes, ncpu: int, stride: int, st: struct.Struct) -> list[int]:
    tot = [0] * len(st.unpack_from(raw, 0))
    for c in range(ncpu):
        for i, x in enumerate(st.unpack_from(raw, c * stride)):
            tot[i] += x
    return tot


def read_agg(obj: Any) -> dict[bytes, tuple[int, int]]:
    """Map ``agg``: key bytes -> (count, sum mod 2**64), summed over the CPUs."""
    m = obj.map("agg")
    ncpu = libbpf.num_possible_cpus()
    stride = (AGG_VAL.size + 7) // 8 * 8
    out = {}
    for k, v in m.items(percpu=True):
        count, total = _percpu_sum(v, ncpu, stride, AGG_VAL)
        out[k] = (count, total & 0xFFFF_FFFF_FFFF_FFFF)
    return out


def read_agg_stats(obj: Any) -> list[int]:
    """Map ``agg_stats`` (AGGST_*), summed over the CPUs."""
    m = obj.map("agg_stats")
    ncpu = libbpf.num_possible_cpus()
    out = []
    q = struct.Struct("<Q")
    for i in range(AGGST_MAX):
        v = m.lookup(struct.pack("<I", i), percpu=True)
        out.append(_percpu_sum(v, ncpu, 8, q)[0] if v is not None else 0)
    return out


__all__ = ["AggSetup", "AggSlot", "AggSrc", "read_agg", "read_agg_stats"]
