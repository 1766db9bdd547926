"""trace --hist / --by / --top / --latency on the live kernel, on every backend.

A target (progs/agg_target.c, -O0 -fno-builtin) mallocs known sizes and sleeps known
times; getppid_n makes a known number of getppid calls. Each aggregation must come
out exact, and the same on ftrace, perf and bpf.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import build_c  # tests/conftest.py (pytest puts tests/ on sys.path)

from .helpers import (
    CLI,
    json_lines,
    our_instances,
    require_uprobe_events,
    run_cli,
    summary_of,
    wait_bpf_attached,
    wait_for,
)

pytestmark = pytest.mark.integration

BACKENDS = ("ftrace", "perf", "bpf")
MALLOC = "u:libc:malloc size=arg0:u64"
# agg_target malloc: 3 x 3000, 5 x 20000, 2 x 300000 bytes
MALLOC_HIST = """@size:
[2K, 4K)               3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                     |
[4K, 8K)               0 |                                                    |
[8K, 16K)              0 |                                                    |
[16K, 32K)             5 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[32K, 64K)             0 |                                                    |
[64K, 128K)            0 |                                                    |
[128K, 256K)           0 |                                                    |
[256K, 512K)           2 |@@@@@@@@@@@@@@@@@@@@                                |
"""


@pytest.fixture(scope="module")
def target(tracefs: str) -> Path:
    require_uprobe_events(tracefs)
    return build_c("agg_target", "-O0", "-fno-builtin")


@pytest.fixture(scope="module")
def backends(tracefs: str) -> list[str]:
    """The backends this kernel runs (perf needs perf tracepoint events, bpf BPF)."""
    have = ["ftrace"]
    if os.path.isdir("/sys/bus/event_source/devices/tracepoint"):
        have.append("perf")
    from probewatch.bpf_session import bpf_available

    if bpf_available()[0]:
        have.append("bpf")
    return have


def test_malloc_hist_exact_and_same_on_every_backend(target: Path,
                                                     backends: list[str]) -> None:
    outs = {}
    for b in backends:
        r = run_cli("trace", "--backend", b, MALLOC, "--hist", "size", "--", str(target),
                    "malloc")
        assert r.returncode == 0, (b, r.stderr)
        outs[b] = r.stdout
        assert "10 events" in r.stderr  # the summary stays on stderr
    assert outs == {b: MALLOC_HIST for b in backends}
    assert len(backends) == 3, f"only {backends} ran here"


def test_malloc_linear_hist_json(target: Path) -> None:
    r = run_cli("trace", MALLOC, "--hist", "size:linear=100000", "--json", "--",
                str(target), "malloc")
    assert r.returncode == 0, r.stderr
    (obj,) = json_lines(r.stdout)
    d = obj["aggregate"]
    assert (d["hist"], d["step"], d["value"], d["events"], d["missing"]) == (
        "linear", 100000, "size", 10, 0)
    (row,) = d["rows"]
    assert row["count"] == 10 and row["sum"] == 3 * 3000 + 5 * 20000 + 2 * 300000
    assert [(b["lo"], b["hi"], b["count"]) for b in row["buckets"]] == [
        (0, 100000, 8), (100000, 200000, 0), (200000, 300000, 0), (300000, 400000, 2)]
    assert summary_of(r.stderr)["events"] == {MALLOC: 10}


def test_by_pid_value_size(target: Path) -> None:
    r = run_cli("trace", MALLOC, "--by", "comm,pid", "--value", "size", "--json", "--",
                str(target), "malloc")
    assert r.returncode == 0, r.stderr
    (row,) = json_lines(r.stdout)[0]["aggregate"]["rows"]
    assert row["key"]["comm"] == "agg_target"
    assert (row["count"], row["sum"], row["avg"]) == (10, 709000, 70900.0)


def test_by_comm_counts_exact_on_every_backend(tracefs: str, getppid_n: Path,
                                               backends: list[str]) -> None:
    texts = set()
    for b in backends:
        r = run_cli("trace", "--backend", b, "--by", "comm", "t:syscalls:sys_enter_getppid",
                    "--", str(getppid_n), "4321")
        assert r.returncode == 0, (b, r.stderr)
        texts.add(r.stdout)
        assert summary_of_text(r.stderr) == 4321
    assert texts == {"COMM       COUNT\ngetppid_n   4321\n"}


def summary_of_text(stderr: str) -> int:
    line = [x for x in stderr.splitlines() if " events (" in x][-1]
    return int(line.split()[0])


def test_latency_of_a_function_that_sleeps(target: Path, backends: list[str]) -> None:
    # agg_nap sleeps 5 x 4.3 ms ([4M, 8M) ns) then 3 x 17 ms ([16M, 32M) ns), SCHED_FIFO
    for b in backends:
        r = run_cli("trace", "--backend", b, "--latency", f"u:{target}:agg_nap", "--json",
                    "--", str(target), "nap")
        assert r.returncode == 0, (b, r.stderr)
        d = json_lines(r.stdout)[0]["aggregate"]
        assert (d["latency"], d["unit"], d["unmatched"], d["events"]) == (True, "ns", 0, 16)
        (row,) = d["rows"]
        assert row["key"] == {"name": f"{target}:agg_nap"}
        assert [(b["lo"], b["hi"], b["count"]) for b in row["buckets"]] == [
            (2**22, 2**23, 5), (2**23, 2**24, 0), (2**24, 2**25, 3)], b
        assert row["sum"] >= 5 * 4_300_000 + 3 * 17_000_000
        # the uretprobe was added for the uprobe
        assert summary_of(r.stderr)["events"] == {f"u:{target}:agg_nap": 8,
                                                  f"ur:{target}:agg_nap": 8}


def test_latency_of_a_syscall_text(target: Path) -> None:
    r = run_cli("trace", "--latency", "t:syscalls:sys_enter_clock_nanosleep", "--", str(target),
                "nap")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "@latency_ns[clock_nanosleep]:"
    assert [x.split("|")[0].split() for x in lines[1:]] == [
        ["[4M,", "8M)", "5"], ["[8M,", "16M)", "0"], ["[16M,", "32M)", "3"]]
    # --top: the same pairs as a table (count, sum and average in ns)
    r = run_cli("trace", "--latency", "--top", "5", "t:syscalls:sys_enter_clock_nanosleep",
                "--", str(target), "nap")
    assert r.returncode == 0, r.stderr
    head, row = r.stdout.splitlines()[1:3]
    assert head.split() == ["NAME", "COUNT", "SUM", "AVG"]
    name, count, total, avg = row.split()
    assert (name, count) == ("clock_nanosleep", "8")
    assert int(total) >= 5 * 4_300_000 + 3 * 17_000_000
    assert float(avg) == pytest.approx(int(total) / 8, abs=0.1)


def test_top_without_interval_refreshes_every_second_plain(tracefs: str,
                                                           getppid_n: Path) -> None:
    # getppid_n sleeps 1.5 s first: at least one refresh falls inside the run
    r = run_cli("trace", "--top", "3", "--json", "t:syscalls:sys_enter_getppid", "--",
                str(getppid_n), "3000", "1500")
    assert r.returncode == 0, r.stderr
    objs = [o["aggregate"] for o in json_lines(r.stdout)]
    assert len(objs) >= 2 and [o["interval"] for o in objs] == list(range(len(objs)))
    assert sum(row["count"] for o in objs for row in o["rows"]) == 3000
    assert all(o["by"] == ["comm"] for o in objs)
    r = run_cli("trace", "--top", "3", "t:syscalls:sys_enter_getppid", "--",
                str(getppid_n), "3000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:3] == ["COMM       COUNT", "getppid_n   3000"]


def test_top_on_a_terminal_is_a_rich_table(tracefs: str, getppid_n: Path) -> None:
    master, slave = pty.openpty()
    p = subprocess.Popen([*CLI, "trace", "--top", "5", "-i", "0.3",
                          "t:syscalls:sys_enter_getppid", "--", str(getppid_n), "2500", "800"],
                         stdout=slave, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    chunks = []
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if select.select([master], [], [], 0.5)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    os.close(master)
    assert p.wait(timeout=30) == 0, p.stderr.read() if p.stderr else ""
    screen = b"".join(chunks).decode()
    assert "probewatch trace --top 5" in screen
    assert "━" in screen or "─" in screen  # rich's box lines
    assert "getppid_n" in screen and "2500" in screen


@pytest.mark.parametrize("argv,msg", [
    (["--hist", "nosuch", MALLOC], "--hist nosuch: no traced event has a field 'nosuch'"),
    (["--by", "nosuch", MALLOC], "--by nosuch: no traced event has a field 'nosuch'"),
    (["--hist", "size:linear=0", MALLOC], "linear=STEP needs a step >= 1"),
    (["--top", "3", "--hist", "size", MALLOC], "--top shows a table of --by keys"),
    (["-i", "1", MALLOC], "-i SECS prints an aggregation every SECS"),
    (["--count", "--by", "comm", MALLOC], "--count prints only the summary"),
    (["--value", "size", MALLOC], "--value FIELD sums per key"),
    (["--latency", "t:sched:sched_process_exec"], "--latency pairs enter and exit events"),
])
def test_bad_options_are_clear_errors(target: Path, argv: list[str], msg: str) -> None:
    r = run_cli("trace", *argv, "--", str(target), "malloc")
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_hist_of_a_string_field_counts_it_missing(target: Path) -> None:
    r = run_cli("trace", "t:sched:sched_process_exec", "--hist", "filename", "--json", "--",
                str(target), "malloc")
    assert r.returncode == 0, r.stderr
    d = json_lines(r.stdout)[0]["aggregate"]
    assert d["rows"] == [] and d["missing"] == d["events"] == 1


def test_max_events_limits_what_is_aggregated(tracefs: str, getppid_n: Path) -> None:
    r = run_cli("trace", "-n", "123", "--by", "comm", "--json", "t:syscalls:sys_enter_getppid",
                "--", str(getppid_n), "5000")
    assert r.returncode == 0, r.stderr
    (row,) = json_lines(r.stdout)[0]["aggregate"]["rows"]
    assert (row["key"], row["count"]) == ({"comm": "getppid_n"}, 123)
    assert summary_of(r.stderr)["total"] == 123


def test_by_probe_counted_by_the_session_same_as_from_events(tracefs: str, getppid_n: Path,
                                                            backends: list[str]) -> None:
    # --by probe alone goes through the session's counting path (in the kernel on bpf
    # and perf); with -n it aggregates decoded events: the same table either way
    want = ("PROBE                         COUNT\n"
            "t:syscalls:sys_enter_getppid   3456\n")
    for b in backends:
        for extra in ([], ["-n", "1000000"]):
            r = run_cli("trace", "--backend", b, "--by", "probe", *extra,
                        "t:syscalls:sys_enter_getppid", "t:syscalls:sys_enter_getpid", "--",
                        str(getppid_n), "3456")
            assert r.returncode == 0, (b, extra, r.stderr)
            assert r.stdout == want, (b, extra)
            assert summary_of_text(r.stderr) == 3456


@pytest.mark.parametrize("backend", ["ftrace", "bpf"])
def test_ctrl_c_prints_the_aggregation(tracefs: str, getppid_n: Path, backends: list[str],
                                       backend: str) -> None:
    # system-wide until ^C (as bpftrace prints its maps at ^C); bpf: in the kernel
    assert backend in backends, f"{backend} cannot run here"
    p = subprocess.Popen([*CLI, "trace", "--backend", backend, "--by", "pid", "--json",
                          "t:syscalls:sys_enter_getppid"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if backend == "bpf":
            wait_bpf_attached(p)
        else:
            assert wait_for(lambda: bool(our_instances(tracefs, p.pid))), "never armed"
            time.sleep(0.3)  # the instance exists before its events are enabled
        child = subprocess.run([str(getppid_n), "1500"], check=True)
        assert child.returncode == 0
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    rows = json_lines(out)[0]["aggregate"]["rows"]
    assert any(r["count"] == 1500 for r in rows), rows
    summ = summary_of(err)
    assert summ["total"] == sum(r["count"] for r in rows)
    assert (summ.get("aggregation") or {}).get("in") == ("kernel" if backend == "bpf"
                                                         else None)
