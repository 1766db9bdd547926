"""trace --hist / --by / --latency computed in the kernel (BPF maps) on the bpf backend.

Each test asserts that the aggregation really ran in the kernel (the summary's
``aggregation.in`` is "kernel" and no record was generated: ``--agg-in kernel`` fails
instead of falling back), and that its output is exactly what the user-space
aggregation prints for the same run on ftrace (or on bpf with ``--agg-in user``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import build_c  # tests/conftest.py (pytest puts tests/ on sys.path)

from .helpers import json_lines, require_uprobe_events, run_cli, summary_of
from .test_trace_aggregate import MALLOC, MALLOC_HIST

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bpf(tracefs: str) -> None:
    from probewatch.bpf_session import bpf_available

    ok, why = bpf_available()
    if not ok:
        pytest.skip(f"the kernel has no usable BPF here: {why}")


@pytest.fixture(scope="module")
def target(tracefs: str) -> Path:
    require_uprobe_events(tracefs)
    return build_c("agg_target", "-O0", "-fno-builtin")


def in_kernel(stderr: str) -> dict[str, Any]:
    """The summary of a run that aggregated in the kernel (asserted)."""
    if '{"summary"' not in stderr:  # text: one line
        line = stderr.splitlines()[-1]
        assert line.endswith(", lost 0, aggregated in the kernel"), stderr
        return {"total": int(line.split()[0])}
    s = summary_of(stderr)
    assert s["backend"] == "bpf"
    assert s["aggregation"]["in"] == "kernel", s
    assert s["generated"] == 0 and s["lost"] == 0, s  # not one record went to user space
    return s


def kernel(*argv: str) -> Any:
    r = run_cli("trace", "--backend", "bpf", "--agg-in", "kernel", *argv)
    assert r.returncode == 0, r.stderr
    return r


def test_malloc_log2_hist_in_the_kernel_is_bpftrace_exact(bpf: None, target: Path) -> None:
    r = kernel(MALLOC, "--hist", "size", "--json", "--", str(target), "malloc")
    s = in_kernel(r.stderr)
    assert s["events"] == {MALLOC: 10}
    # the text, byte for byte the same as the user-space aggregation on ftrace
    rk = run_cli("trace", "--backend", "bpf", "--agg-in", "kernel", MALLOC, "--hist", "size",
                 "--", str(target), "malloc")
    ru = run_cli("trace", "--backend", "ftrace", MALLOC, "--hist", "size", "--", str(target),
                 "malloc")
    assert rk.returncode == ru.returncode == 0, (rk.stderr, ru.stderr)
    assert rk.stdout == ru.stdout == MALLOC_HIST
    in_kernel(run_cli("trace", "--backend", "bpf", MALLOC, "--hist", "size", "--json", "--",
                      str(target), "malloc").stderr)  # auto: the kernel, unasked


def test_linear_hist_by_keys_json_same_as_user_space(bpf: None, target: Path) -> None:
    argv = [MALLOC, "--hist", "size:linear=4096", "--by", "comm,size", "--json", "--",
            str(target), "malloc"]
    rk = kernel(*argv)
    in_kernel(rk.stderr)
    ru = run_cli("trace", "--backend", "bpf", "--agg-in", "user", *argv)
    assert ru.returncode == 0, ru.stderr
    assert "aggregation" not in summary_of(ru.stderr)
    dk, du = json_lines(rk.stdout)[0]["aggregate"], json_lines(ru.stdout)[0]["aggregate"]
    assert dk == du
    assert [(r["key"], r["count"], r["sum"]) for r in dk["rows"]] == [
        ({"comm": "agg_target", "size": 20000}, 5, 100000),
        ({"comm": "agg_target", "size": 3000}, 3, 9000),
        ({"comm": "agg_target", "size": 300000}, 2, 600000)]
    row = dk["rows"][1]
    assert [(b["lo"], b["count"]) for b in row["buckets"]] == [(0, 3)]
    assert [(b["lo"], b["count"]) for b in dk["rows"][2]["buckets"]] == [(299008, 2)]


def test_by_comm_and_value_exact(bpf: None, tracefs: str, getppid_n: Path,
                                 target: Path) -> None:
    r = kernel("--by", "comm", "t:syscalls:sys_enter_getppid", "--", str(getppid_n), "4321")
    assert r.stdout == "COMM       COUNT\ngetppid_n   4321\n"
    assert in_kernel(r.stderr)["total"] == 4321
    r = kernel(MALLOC, "--by", "comm,pid", "--value", "size", "--json", "--", str(target),
               "malloc")
    in_kernel(r.stderr)
    (row,) = json_lines(r.stdout)[0]["aggregate"]["rows"]
    assert row["key"]["comm"] == "agg_target" and row["key"]["pid"] > 0
    assert (row["count"], row["sum"], row["avg"]) == (10, 709000, 70900.0)
    # a tracepoint's own integer fields as keys and value: sys_exit_openat's ret (a
    # signed long: -2 for ENOENT, sign-extended in the kernel), the same as user space
    sh = ["--", "sh", "-c", "cat /nonexistent 2>/dev/null; true"]
    argv = ["t:syscalls:sys_exit_openat", "--by", "ret", "--value", "ret", "--json", *sh]
    rk = kernel(*argv)
    in_kernel(rk.stderr)
    ru = run_cli("trace", "--backend", "ftrace", *argv)
    assert ru.returncode == 0, ru.stderr
    dk = json_lines(rk.stdout)[0]["aggregate"]
    assert dk == json_lines(ru.stdout)[0]["aggregate"]
    neg = [row for row in dk["rows"] if row["key"] == {"ret": -2}]
    assert neg and neg[0]["sum"] == -2 * neg[0]["count"], dk
    r = kernel("t:syscalls:sys_enter_clock_nanosleep", "--by", "which_clock,flags", "--json",
               "--", str(target), "nap")
    in_kernel(r.stderr)
    (row,) = json_lines(r.stdout)[0]["aggregate"]["rows"]
    assert row == {"key": {"which_clock": 0, "flags": 0}, "count": 8}  # glibc's nanosleep


def test_latency_in_the_kernel(bpf: None, target: Path) -> None:
    # agg_nap sleeps 5 x 4.3 ms ([4M, 8M) ns) then 3 x 17 ms ([16M, 32M) ns)
    r = kernel("--latency", f"u:{target}:agg_nap", "--json", "--", str(target), "nap")
    s = in_kernel(r.stderr)
    assert s["events"] == {f"u:{target}:agg_nap": 8, f"ur:{target}:agg_nap": 8}
    d = json_lines(r.stdout)[0]["aggregate"]
    assert (d["latency"], d["unmatched"], d["events"]) == (True, 0, 16)
    (row,) = d["rows"]
    assert row["key"] == {"name": f"{target}:agg_nap"}
    assert [(b["lo"], b["hi"], b["count"]) for b in row["buckets"]] == [
        (2**22, 2**23, 5), (2**23, 2**24, 0), (2**24, 2**25, 3)]
    assert 5 * 4_300_000 + 3 * 17_000_000 <= row["sum"] < 5 * 8_388_608 + 3 * 2**25
    # syscall pairs, text
    r = kernel("--latency", "t:syscalls:sys_enter_clock_nanosleep", "--", str(target), "nap")
    in_kernel(r.stderr)
    lines = r.stdout.splitlines()
    assert lines[0] == "@latency_ns[clock_nanosleep]:"
    assert [x.split("|")[0].split() for x in lines[1:]] == [
        ["[4M,", "8M)", "5"], ["[8M,", "16M)", "0"], ["[16M,", "32M)", "3"]]


def test_interval_resets_the_kernel_aggregation(bpf: None, tracefs: str,
                                                getppid_n: Path) -> None:
    # two bursts 1.2 s apart, printed every 0.4 s: each interval shows its own calls
    sh = f"{getppid_n} 1000; sleep 1.2; {getppid_n} 2000"
    r = kernel("--by", "comm", "-i", "0.4", "--json", "t:syscalls:sys_enter_getppid", "--",
               "sh", "-c", sh)
    in_kernel(r.stderr)
    objs = [o["aggregate"] for o in json_lines(r.stdout)]
    assert [o["interval"] for o in objs] == list(range(len(objs)))
    per = [sum(row["count"] for row in o["rows"] if row["key"] == {"comm": "getppid_n"})
           for o in objs]
    # without the reset a later interval would show the first burst again
    assert sum(per) == 3000, per
    assert max(per) <= 2000 and sum(1 for n in per if n) >= 2, per
    # sh's own getppid (dash asks for $PPID) is an event too
    assert sum(o["events"] for o in objs) == summary_of(r.stderr)["total"] >= 3000


def test_map_overflow_is_counted_not_lost(bpf: None, tracefs: str) -> None:
    # four tasks (process, thread, child, grandchild) make 500 calls each; a map of two
    # keys takes the first two tids, the other 1000 events are counted as overflow
    fg = build_c("fork_getppid", "-pthread")
    r = kernel("--by", "tid", "--agg-keys", "2", "--json", "t:syscalls:sys_enter_getppid",
               "--", str(fg), "500")
    s = in_kernel(r.stderr)
    d = json_lines(r.stdout)[0]["aggregate"]
    assert [row["count"] for row in d["rows"]] == [500, 500]
    assert d["events"] == s["total"] == 2000
    assert d["overflow"] == s["aggregation"]["overflow"] == 1000
    assert s["aggregation"]["max_keys"] == 2
    assert "1000 events did not fit the in-kernel map of 2 keys" in r.stderr


def test_what_the_kernel_cannot_key_on_falls_back_or_fails_clearly(bpf: None,
                                                                   target: Path) -> None:
    # a string key: user space on bpf (auto), the same result; --agg-in kernel: an error
    argv = ["t:sched:sched_process_exec", "--by", "filename", "--json", "--", str(target),
            "malloc"]
    r = run_cli("trace", "--backend", "bpf", *argv)
    assert r.returncode == 0, r.stderr
    assert "aggregation" not in summary_of(r.stderr)
    (row,) = json_lines(r.stdout)[0]["aggregate"]["rows"]
    assert (row["key"], row["count"]) == ({"filename": str(target)}, 1)
    for extra, msg in ((["t:sched:sched_process_exec", "--by", "filename"],
                        "--by filename: not a number of every traced event"),
                       ([MALLOC, "--by", "comm", "--filter", "size > 4000"],
                        "the bpf backend evaluates --filter in user space"),
                       ([MALLOC, "--by", "comm", "-n", "3"], "-n needs the events")):
        r = run_cli("trace", "--backend", "bpf", "--agg-in", "kernel", *extra, "--",
                    str(target), "malloc")
        assert r.returncode != 0
        assert f"--agg-in kernel: cannot aggregate in the kernel: {msg}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    # with a filter, bpf aggregates the filtered events in user space: still exact
    r = run_cli("trace", "--backend", "bpf", MALLOC, "--by", "comm", "--filter",
                "size > 4000", "--", str(target), "malloc")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "COMM        COUNT\nagg_target      7\n"


def test_a_value_field_some_events_lack_is_missing_as_in_user_space(bpf: None,
                                                                    target: Path) -> None:
    # sched_process_exec has no "size": its event counts as missing, malloc's aggregate
    argv = [MALLOC, "t:sched:sched_process_exec", "--by", "event", "--value", "size",
            "--json", "--", str(target), "malloc"]
    rk = kernel(*argv)
    in_kernel(rk.stderr)
    ru = run_cli("trace", "--backend", "ftrace", *argv)
    assert ru.returncode == 0, ru.stderr
    dk, du = json_lines(rk.stdout)[0]["aggregate"], json_lines(ru.stdout)[0]["aggregate"]
    assert dk["missing"] == 1 and dk["events"] == 11
    # the event names differ (bpf: probewatch_<pid>-free uprobe names are per backend)
    assert [(r["count"], r["sum"]) for r in dk["rows"]] == [(10, 709000)]
    assert (dk["missing"], dk["events"]) == (du["missing"], du["events"])


def test_auto_picks_bpf_for_an_aggregation_the_kernel_can_take(bpf: None, tracefs: str) -> None:
    from probewatch.backends import open_session

    spec = ["t:syscalls:sys_enter_getppid"]
    with open_session("auto", kernel_agg=True, specs=spec) as s:
        assert s.backend == "bpf"
    with open_session("auto", specs=spec) as s:  # streaming events: ftrace
        assert s.backend == "ftrace"
