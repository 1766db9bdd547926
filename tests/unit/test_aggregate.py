"""analyze/aggregate.py: bucket math (hypothesis), bpftrace's hist layout, count/sum/avg
per key, enter/exit latency pairing, option parsers (fuzzed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.analyze.aggregate import (
    LOG2_BUCKETS,
    AggregateError,
    Aggregator,
    hist_lines,
    linear_index,
    log2_bounds,
    log2_index,
    log2_label,
    pair_of,
    pair_spec,
    pair_specs,
    parse_hist,
    parse_keys,
    size_label,
)
from probewatch.event import Event

U64 = st.integers(min_value=0, max_value=2**64 - 1)
S64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def ev(value: int | None = None, comm: str = "a", pid: int = 1, tid: int | None = None,
       ts: int = 0, probe: str = "u:libc:malloc size=arg0:u64",
       event: str = "probewatch_1:malloc") -> Event:
    fields = {} if value is None else {"size": value}
    return Event(ts, 0, pid, pid if tid is None else tid, comm, event, probe, fields)


@given(U64)
def test_log2_bucket_holds_its_value(v: int) -> None:
    i = log2_index(v)
    lo, hi = log2_bounds(i)
    assert lo is not None and lo <= v < hi
    assert 1 <= i < LOG2_BUCKETS


@given(st.integers(max_value=-1, min_value=-(2**63)))
def test_negative_values_share_bucket_zero(v: int) -> None:
    assert log2_index(v) == 0
    assert log2_bounds(0) == (None, 0)
    assert log2_label(0) == "(..., 0)"


@given(U64, U64)
def test_log2_is_monotonic(a: int, b: int) -> None:
    if a <= b:
        assert log2_index(a) <= log2_index(b)


@given(S64, st.integers(min_value=1, max_value=10**9))
def test_linear_bucket_holds_its_value(v: int, step: int) -> None:
    k = linear_index(v, step)
    assert k * step <= v < (k + 1) * step


def test_log2_buckets_at_the_edges() -> None:
    assert [log2_index(v) for v in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [
        1, 2, 3, 3, 4, 4, 5, 11, 12]
    assert log2_index(2**64 - 1) == 65
    assert [log2_label(i) for i in (1, 2, 3, 12, 22, 32, 42)] == [
        "[0]", "[1]", "[2, 4)", "[1K, 2K)", "[1M, 2M)", "[1G, 2G)", "[1T, 2T)"]


@given(st.integers(min_value=0, max_value=6), st.integers(min_value=1, max_value=1023))
def test_size_label_suffixes(power: int, m: int) -> None:
    label = size_label(m * 1024**power)
    if m % 2 == 1 or power == 6:  # m not a multiple of 1024: the suffix is exact
        assert label == f"{m}{'KMGTPE'[power - 1] if power else ''}"
    assert size_label(1536) == "1536"
    assert size_label(0) == "0"


def test_hist_lines_are_bpftraces() -> None:
    # captured from bpftrace 0.x: uprobe:libc:malloc { @size = hist(arg0); }
    want = [
        "[2K, 4K)               3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                     |",
        "[4K, 8K)               0 |                                                    |",
        "[16K, 32K)             5 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
        "[256K, 512K)           2 |@@@@@@@@@@@@@@@@@@@@                                |",
    ]
    got = hist_lines([("[2K, 4K)", 3), ("[4K, 8K)", 0), ("[16K, 32K)", 5),
                      ("[256K, 512K)", 2)])
    assert got == want


def test_log2_hist_text_and_json() -> None:
    agg = Aggregator(value="size", hist="log2")
    agg.add([ev(3000)] * 3 + [ev(20000)] * 5 + [ev(300000)] * 2 + [ev(None)])
    text = agg.render_text()
    assert text.splitlines()[0] == "@size:"
    assert len(text.splitlines()) == 1 + 8  # [2K, 4K) .. [256K, 512K), zeros between
    d = agg.to_dict()
    assert d["missing"] == 1 and d["events"] == 11
    (row,) = d["rows"]
    assert row["count"] == 10 and row["sum"] == 709000
    nz = [(b["lo"], b["hi"], b["count"]) for b in row["buckets"] if b["count"]]
    assert nz == [(2048, 4096, 3), (16384, 32768, 5), (262144, 524288, 2)]


@settings(deadline=None)
@given(st.lists(st.integers(min_value=-10**6, max_value=10**6), min_size=1, max_size=100),
       st.integers(min_value=1, max_value=5000))
def test_linear_hist_counts_every_value_once(vals: list[int], step: int) -> None:
    agg = Aggregator(value="size", hist="linear", step=step)
    agg.add([ev(v) for v in vals])
    (row,) = agg.to_dict()["rows"]
    assert sum(b["count"] for b in row["buckets"]) == len(vals)
    assert len(row["buckets"]) <= max(500, len(vals))
    for b in row["buckets"]:
        assert b["count"] == sum(1 for v in vals if b["lo"] <= v < b["hi"])
    assert row["sum"] == sum(vals)
    if (max(vals) - min(vals)) // step < 400:  # a short span: contiguous, as bpftrace
        los = [b["lo"] for b in row["buckets"]]
        assert los == list(range(los[0], los[-1] + 1, step))


@settings(deadline=None)
@given(st.lists(U64, min_size=1, max_size=200))
def test_log2_hist_counts_every_value_once(vals: list[int]) -> None:
    agg = Aggregator(value="size", hist="log2")
    agg.add([ev(v) for v in vals])
    (row,) = agg.to_dict()["rows"]
    for b in row["buckets"]:
        assert b["count"] == sum(1 for v in vals if b["lo"] <= v < b["hi"])
    assert sum(b["count"] for b in row["buckets"]) == len(vals)
    assert row["buckets"][0]["count"] and row["buckets"][-1]["count"]  # trimmed


def test_by_key_count_sum_avg_sorted() -> None:
    agg = Aggregator(value="size", keys=["comm"])
    agg.add([ev(10, "a"), ev(20, "b"), ev(30, "b"), ev(None, "c")])
    d = agg.to_dict()
    assert [(r["key"], r["count"], r["sum"], r["avg"]) for r in d["rows"]] == [
        ({"comm": "b"}, 2, 50, 25.0), ({"comm": "a"}, 1, 10, 10.0)]
    assert agg.table() == ["COMM  COUNT  SUM   AVG", "b         2   50  25.0",
                           "a         1   10  10.0"]
    assert agg.table(top=1)[1:] == ["b         2   50  25.0"]


def test_count_by_two_keys_and_reset() -> None:
    agg = Aggregator(keys=["comm", "pid"])
    agg.add([ev(comm="x", pid=2), ev(comm="x", pid=2), ev(comm="x", pid=3)])
    assert [(r["key"], r["count"]) for r in agg.to_dict()["rows"]] == [
        ({"comm": "x", "pid": 2}, 2), ({"comm": "x", "pid": 3}, 1)]
    agg.reset()
    assert agg.to_dict()["rows"] == [] and agg.events == 0


def test_latency_pairs_per_thread() -> None:
    enter = "u:/bin/x:f"
    leave = "ur:/bin/x:f"
    agg = Aggregator(latency=True)
    agg.add([
        ev(tid=1, ts=100, probe=enter), ev(tid=2, ts=150, probe=enter),
        ev(tid=1, ts=100 + 3_000_000, probe=leave),  # 3 ms: [2M, 4M)
        ev(tid=2, ts=150 + 20_000_000, probe=leave),  # 20 ms: [16M, 32M)
        ev(tid=3, ts=999, probe=leave),  # no enter
    ])
    (row,) = agg.to_dict()["rows"]
    assert row["key"] == {"name": "/bin/x:f"} and row["count"] == 2
    assert [(b["lo"], b["count"]) for b in row["buckets"] if b["count"]] == [
        (2**21, 1), (2**24, 1)]
    assert agg.unmatched == 1
    assert agg.render_text().splitlines()[0] == "@latency_ns[/bin/x:f]:"


def test_latency_of_syscalls_by_event_name() -> None:
    agg = Aggregator(latency=True, keys=["comm"])
    p = "t:syscalls:sys_enter_*"
    agg.add([ev(tid=5, ts=10, probe=p, event="syscalls:sys_enter_read", comm="cat"),
             ev(tid=5, ts=14, probe="t:syscalls:sys_exit_*", event="syscalls:sys_exit_read",
                comm="cat"),
             ev(tid=5, ts=20, probe=p, event="sched:sched_switch")])  # not a pair: ignored
    (row,) = agg.to_dict()["rows"]
    assert row["key"] == {"name": "read", "comm": "cat"} and row["sum"] == 4


def test_pairs_of_specs() -> None:
    assert pair_spec("t:syscalls:sys_enter_read") == "t:syscalls:sys_exit_read"
    assert pair_spec("u:libc:malloc size=arg0:u64") == "ur:libc:malloc"
    assert pair_spec("t:sched:sched_switch") is None
    assert pair_specs(["u:libc:malloc", "ur:libc:malloc"]) == ["u:libc:malloc",
                                                                "ur:libc:malloc"]
    with pytest.raises(AggregateError, match="--latency pairs enter and exit"):
        pair_specs(["t:sched:sched_switch"])
    assert pair_of("ur:libc:malloc", "x:y") == ("libc:malloc", True)
    assert pair_of("t:syscalls:sys_exit_read", "syscalls:sys_exit_read") == ("read", True)


def test_parse_hist_and_keys() -> None:
    assert parse_hist("size") == ("size", "log2", 0)
    assert parse_hist("size:log2") == ("size", "log2", 0)
    assert parse_hist("len:linear=64") == ("len", "linear", 64)
    for bad, why in [("size:linear=0", "step >= 1"), ("size:lin", "log2 or linear"),
                     (":log2", "field name"), ("size:linear=x", "step >= 1")]:
        with pytest.raises(AggregateError, match=why):
            parse_hist(bad)
    assert parse_keys("comm, pid") == ["comm", "pid"]
    with pytest.raises(AggregateError, match="KEY"):
        parse_keys("comm,,pid")


@given(st.text(max_size=40))
def test_option_parsers_never_crash(text: str) -> None:
    for parse in (parse_hist, parse_keys):
        try:
            parse(text)
        except AggregateError as e:
            assert str(e).startswith(("--hist", "--by"))
