"""The in-kernel aggregation's user side without a kernel: the map layouts against the
BTF of the built object, the plan (what the kernel can key on), and that reading the
maps gives the Aggregator exactly what it computes from the same events itself."""

from __future__ import annotations

from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import missing  # tests/conftest.py
from probewatch.analyze.aggregate import Aggregator
from probewatch.bpf_agg import KernelAggregation, SlotInfo, Unsupported
from probewatch.collect.bpf.agg import (
    AGG_KEY,
    AGG_VAL,
    AGGCONF_SIZE,
    AGGR_ENTER,
    AGGR_EXIT,
    AGGR_SKIP,
    AGGS_ABSENT,
    AGGS_TP,
    AGGS_UARG,
    AGGSRC,
    AggSlot,
    AggSrc,
)
from probewatch.collect.bpf.generic import UARG_INT, UARG_STR, UArg
from probewatch.decode.format import parse_format
from probewatch.event import Event

from .test_bpf_generic import EXEC_FORMAT, _btf_structs, _py_layout


def test_layouts_match_btf_of_built_object() -> None:
    obj = resources.files("probewatch.collect.bpf").joinpath("obj/x86_64/generic.bpf.o")
    try:
        path = str(obj)
        open(path, "rb").close()
    except OSError:
        missing("generic.bpf.o not built for this machine (scripts/build-bpf.sh)")
    btf = _btf_structs(path)
    assert [m[1:] for m in btf["pw_aggsrc"]] == _py_layout(AGGSRC)
    assert [m[1:] for m in btf["pw_agg_key"]] == [
        (0, 16, None), (16, 4, False), (20, 4, False), (24, 4, False), (28, 4, False),
        (32, 4, False), (36, 4, False), (40, 16, True), (56, 8, True)]
    assert [m[1:] for m in btf["pw_agg_val"]] == _py_layout(AGG_VAL)
    assert [m[0] for m in btf["pw_aggconf"]] == ["key", "value", "role", "_pad", "pair",
                                                 "_pad2"]
    assert btf["pw_aggconf"][-1][1] + 4 == AGGCONF_SIZE == len(AggSlot().pack()) == 32
    assert AGG_KEY.size == 64


EXEC = parse_format(EXEC_FORMAT, "sched")
MALLOC_ARGS = [UArg("size", 5, (), UARG_INT, 8), UArg("name", 4, (0,), UARG_STR, 0)]


def test_plan_sources_and_what_stays_in_user_space() -> None:
    slots = [SlotInfo("sched:sched_process_exec", "t:sched:sched_process_exec", fmt=EXEC),
             SlotInfo("probewatch_1:malloc_0", "u:libc:malloc size=arg0:u64",
                      uargs=MALLOC_ARGS)]
    ka = KernelAggregation(Aggregator(value="size", hist="log2", keys=["comm"]), slots)
    assert ka.setup.slots[0].value == AggSrc(AGGS_ABSENT)  # exec has no size: missing
    assert ka.setup.slots[1].value == AggSrc(AGGS_UARG, 8, False, 0)
    ka = KernelAggregation(Aggregator(keys=["pid"], value="old_pid"), slots[:1])
    assert ka.setup.slots[0].value == AggSrc(AGGS_TP, 4, True, 16)
    for agg, msg in ((Aggregator(keys=["filename"]), "--by filename"),
                     (Aggregator(keys=["size"]), "--by size"),
                     (Aggregator(keys=["a", "b", "c"]), "--by with 3 fields"),
                     (Aggregator(value="__probe_ip", keys=["comm"]), "__probe_ip")):
        with pytest.raises(Unsupported, match=msg):
            KernelAggregation(agg, slots)
    # --latency: roles by pair
    lat = [SlotInfo("syscalls:sys_enter_read", "t:syscalls:sys_enter_read"),
           SlotInfo("syscalls:sys_exit_read", "t:syscalls:sys_exit_read"),
           SlotInfo("sched:sched_switch", "t:sched:sched_switch"),
           SlotInfo("probewatch_1:f_0", "ur:/bin/x:f")]
    ka = KernelAggregation(Aggregator(latency=True), lat)
    assert [(c.role, c.pair) for c in ka.setup.slots.values()] == [
        (AGGR_ENTER, 0), (AGGR_EXIT, 0), (AGGR_SKIP, 0), (AGGR_EXIT, 1)]
    assert ka.pairs == ["read", "/bin/x:f"]


def _bucket(v: int, hist: str | None, step: int) -> int:
    """What pw_agg_bucket() computes (generic.bpf.c)."""
    if hist == "log2":
        return 0 if v < 0 else min(v.bit_length() + 1, 65)
    if hist == "linear":
        return v // step
    return 0


EVENTS = st.lists(st.tuples(st.sampled_from(["a", "bb", "sh"]), st.integers(1, 3),
                            st.integers(-2**40, 2**40)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.sampled_from([None, "log2", "linear"]), st.integers(1, 1000),
       st.sampled_from([[], ["comm"], ["comm", "pid"], ["v"], ["pid", "v"]]),
       st.integers(0, 60))
def test_maps_read_back_equal_the_user_space_aggregation(
        evs: list[tuple[str, int, int]], hist: str | None, step: int, keys: list[str],
        cut: int) -> None:
    """Simulate the kernel's map for signed s64 values (key: comm, pid, slot, field,
    bucket; value: count, sum mod 2**64), read it in two intervals (-i) and compare with
    Aggregator.add() of the same events, interval by interval. (Sums are 64-bit in the
    kernel: a sum beyond the s64 range would wrap.)"""
    fmt = parse_format(EXEC_FORMAT.replace("pid_t old_pid;\toffset:16;\tsize:4",
                                           "s64 v;\toffset:16;\tsize:8"), "sched")
    slot = SlotInfo("sched:sched_process_exec", "t:x", fmt=fmt)
    mk = lambda: Aggregator(value="v", hist=hist, step=step if hist == "linear" else 0,  # noqa: E731
                            keys=keys)
    ka = KernelAggregation(mk(), [slot])
    rows: dict[bytes, tuple[int, int]] = {}
    count = 0
    parts = (evs[:cut], evs[cut:])
    for part in parts:
        user, kern = mk(), mk()
        user.add([Event(i, 0, pid, pid, comm, "sched:sched_process_exec", "t:x", {"v": v})
                  for i, (comm, pid, v) in enumerate(part)])
        for comm, pid, v in part:
            kb = AGG_KEY.pack(comm.encode() if "comm" in keys else b"",
                              pid if "pid" in keys else 0, 0, 0, 0, 0, 0,
                              v if "v" in keys else 0, 0, _bucket(v, hist, step))
            c, s = rows.get(kb, (0, 0))
            rows[kb] = (c + 1, (s + v) % 2**64)
        count += len(part)
        ka.fill(kern, dict(rows), [0, 0, 0, 0], {0: count})
        assert kern.to_dict() == user.to_dict()
        assert kern.render_text() == user.render_text()
