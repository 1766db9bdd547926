"""watch's memory bounds under a storm of short-lived processes, and the cwd the kernel
gives cut: the process table and the whole watch chain (table, mapper, the shipped
rules) fed the exec records of an exec storm with the longest argv and environment
an exec record holds (127 x 63 bytes, three 1400-byte LD_* variables, a 3.8 KiB cwd)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from probewatch.analyze.proctable import CWD_CUT, ProcessTable
from probewatch.event import Event

ARGV = ["true"] + [f"{i % 10}" + chr(65 + i % 26) * 62 for i in range(1, 128)]
CWD = "/tmp/deep/" + "/".join(["y" * 200] * 18)


def _storm(n: int, first_pid: int = 100_000, t0: int = 10**9) -> Iterator[Event]:
    """fork, exec (exec info, as the BPF program sends it), exit: n processes, each
    with strings of its own (as decoded from the ring buffer)."""
    for i in range(n):
        pid, ts, boot = first_pid + i, t0 + i * 10_000, 10**12 + i
        yield Event(ts, 0, 1, 1, "storm", "sched:sched_process_fork", "bpf:syscalls",
                    {"child_pid": pid, "child_tid": pid, "ppid": 0, "start_boottime": boot})
        yield Event(ts + 1, 0, pid, pid, "true", "sched:sched_process_exec", "bpf:syscalls",
                    {"filename": "/bin/true", "argv": [(a + " ")[:-1] for a in ARGV],
                     "cwd": CWD + str(i),
                     "env": {f"LD_X{k}": f"{i}" + "v" * 1400 for k in range(3)},
                     "ppid": 1, "uid": 0, "gid": 0, "euid": 0, "egid": 0, "loginuid": 0,
                     "start_boottime": boot, "exe_name": "true"})
        yield Event(ts + 2, 0, pid, pid, "true", "sched:sched_process_exit", "bpf:syscalls",
                    {"exit_code": 0, "start_boottime": boot, "group_dead": 1})


def _table(**kw: Any) -> ProcessTable:
    t = ProcessTable(proc_root="/nonexistent/probewatch-test-proc", **kw)
    t.live = False
    return t


def test_exited_records_are_bounded_by_bytes() -> None:
    t = _table(max_exited_bytes=4 << 20)
    t.on_event(Event(1, 0, 1, 1, "init", "sched:sched_process_fork", "bpf:syscalls",
                     {"child_pid": 50, "child_tid": 50, "ppid": 0, "start_boottime": 5}))
    for ev in _storm(2000):
        t.on_event(ev)
    assert t.exited_bytes <= 4 << 20
    assert t.dropped > 1500  # each record is ~25 KB: ~170 of them fit in 4 MiB
    assert 100 < len(t) < 300
    assert 50 in t.procs  # a live process is never dropped
    last = t.procs.get(100_000 + 1999)
    assert last is not None and last.argv == ARGV  # the most recent stay, whole
    assert 100_000 not in t.procs  # the oldest went first


def test_fork_only_storm_is_not_charged_for_shared_argv() -> None:
    """A fork child shares its parent's argv and environment: a fork storm fills the
    table by count (max_entries), not by a byte budget it does not use."""
    t = _table(max_exited_bytes=4 << 20)
    for i in range(3000):
        pid = 200_000 + i
        t.on_event(Event(10 + i * 3, 0, 1, 1, "sh", "sched:sched_process_fork",
                         "bpf:syscalls", {"child_pid": pid, "child_tid": pid, "ppid": 0,
                                          "start_boottime": 10**6 + i}))
        t.on_event(Event(11 + i * 3, 0, pid, pid, "sh", "sched:sched_process_exit",
                         "bpf:syscalls", {"exit_code": 0, "start_boottime": 10**6 + i,
                                          "group_dead": 1}))
    assert t.dropped == 0 and len(t) >= 3000


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_watch_chain_memory_is_bounded_under_an_exec_storm() -> None:
    """20,000 processes with the biggest exec records through table + mapper + the
    shipped rules: watch's memory grows by less than 160 MB (unbounded it grew by
    ~19 KB per process kept for the 30 s grace: 380 MB here, more on a faster host)."""
    from probewatch.detect.engine import Engine, RuleSet
    from probewatch.detect.pipeline import Detector, new_mapper

    rules = RuleSet.load([], default=True)
    table = _table()
    det = Detector(Engine(rules), table=table, mapper=new_mapper(table, rules),
                   wall_offset_ns=0)
    before = _rss_kb()
    for ev in _storm(20_000, first_pid=300_000):
        det.feed(ev)
    grew = _rss_kb() - before
    st = det.finish()
    assert st.events == 60_000 and st.mapper_errors == 0
    assert st.dropped_processes > 10_000
    assert table.exited_bytes <= table.max_exited_bytes
    assert grew < 160_000, f"watch grew by {grew} KiB"


def test_cut_cwd_is_never_taken_for_an_absolute_path() -> None:
    """The kernel's exec record holds the last 4 KiB of a deeper cwd (truncated: cwd):
    the table keeps the whole cwd it followed (fork, chdir) when that ends the same;
    else the tail is marked so a rule anchored at / cannot take it for /etc/..."""
    tail = "/etc/" + "/".join(["z" * 200] * 19)
    t = _table()
    t.on_event(Event(1, 0, 1, 1, "sh", "sched:sched_process_fork", "bpf:syscalls",
                     {"child_pid": 60, "child_tid": 60, "ppid": 0, "start_boottime": 7}))
    exec_f = {"filename": "./x", "argv": ["./x"], "cwd": tail, "env": {}, "ppid": 1,
              "start_boottime": 7, "truncated": ["cwd"]}
    t.on_event(Event(2, 0, 60, 60, "x", "sched:sched_process_exec", "bpf:syscalls",
                     dict(exec_f)))
    p = t.procs[60]
    assert p.cwd == CWD_CUT + tail and not p.cwd.startswith("/")
    assert p.exe == CWD_CUT + tail + "/x"
    # a process whose cwd the table followed through chdir keeps the whole path
    full = "/tmp/hidden/a" + tail
    t.on_event(Event(3, 0, 60, 60, "x", "sched:sched_process_fork", "bpf:syscalls",
                     {"child_pid": 61, "child_tid": 61, "ppid": 1, "start_boottime": 8}))
    t.procs[61].cwd = full
    t.on_event(Event(4, 0, 61, 61, "x", "sched:sched_process_exec", "bpf:syscalls",
                     {**exec_f, "start_boottime": 8}))
    assert t.procs[61].cwd == full and t.procs[61].exe == full + "/x"


def test_fd_paths_per_process_are_bounded() -> None:
    """A live process that opens 64 files with 4 KiB paths (thousands of such
    processes would be gigabytes): the table keeps the newest within FD_BYTES_MAX."""
    from probewatch.analyze.proctable import FD_BYTES_MAX, FD_MAX, Process

    p = Process(70)
    for fd in range(3, 3 + FD_MAX):
        p.set_fd(fd, f"/tmp/{fd:04d}/" + "d" * 4000)
    assert sum(len(v) for v in (p.fds or {}).values()) <= FD_BYTES_MAX
    assert p.fd(2 + FD_MAX) is not None and p.fd(3) is None  # the newest stay
    for fd in range(200, 200 + FD_MAX):  # short paths: all 64 kept, as before
        p.set_fd(fd, f"/etc/x{fd}")
    assert len(p.fds or {}) == FD_MAX and p.fd(200) == "/etc/x200"


def _exec_burst(det: Any, n: int, prog: str, per_parent: int) -> None:
    """n execs of prog (the biggest exec records), per_parent of them per parent."""
    for i in range(n):
        pid, ts, boot = 400_000 + i, 10**9 + i * 10_000, 10**12 + i
        par = 900_000 + i // per_parent
        det.feed(Event(ts, 0, par, par, "sh", "sched:sched_process_fork", "bpf:syscalls",
                       {"child_pid": pid, "child_tid": pid, "ppid": 1,
                        "start_boottime": boot}))
        det.feed(Event(ts + 1, 0, pid, pid, "w", "sched:sched_process_exec", "bpf:syscalls",
                       {"filename": prog, "argv": [(a + " ")[:-1] for a in ARGV],
                        "cwd": CWD + str(i),
                        "env": {f"LD_X{k}": f"{i}" + "v" * 1400 for k in range(3)},
                        "ppid": par, "uid": 0, "gid": 0, "euid": 0, "egid": 0,
                        "loginuid": 0, "start_boottime": boot, "exe_name": "w"}))
        det.feed(Event(ts + 2, 0, pid, pid, "w", "sched:sched_process_exit",
                       "bpf:syscalls", {"exit_code": 0, "start_boottime": boot,
                                        "group_dead": 1}))


def test_alert_and_correlation_state_is_bounded() -> None:
    """12,000 discovery commands (whoami, 4 per parent: each parent a group of the
    discovery-burst correlation) that each alert too (argv[0] is not their name):
    open collapse windows, correlation groups and the events they keep stay bounded
    (with 10,000 windows and groups and no bound on kept events: +1.09 GB for 40,000
    such execs 16 per parent; bounded: ~+100 MB)."""
    from probewatch.cli.watch import _load_engine
    from probewatch.detect.correlation import MAX_TOTAL_EVENTS
    from probewatch.detect.pipeline import (
        COLLAPSE_MAX_OPEN,
        CORRELATION_MAX_GROUPS,
        Detector,
        new_mapper,
    )

    class Args:
        level = "low"
        rules: list[str] = []
        filters: list[str] = []
        no_default_rules = False
        audit = None

    rules, eng = _load_engine(Args())  # type: ignore[arg-type]
    table = _table()
    det = Detector(eng, table=table, mapper=new_mapper(table, rules), wall_offset_ns=0)
    before = _rss_kb()
    _exec_burst(det, 12_000, "/usr/bin/whoami", 4)
    grew = _rss_kb() - before
    assert len(det.collapser) <= COLLAPSE_MAX_OPEN
    assert det.stats.alerts >= 12_000  # every one still reported
    burst = [c for c in eng.correlators.values() if len(c.groups) > 100]
    assert burst and all(len(c.groups) <= CORRELATION_MAX_GROUPS for c in burst)
    assert all(sum(len(g.events) for g in c.groups.values()) <= MAX_TOTAL_EVENTS + 256
               for c in burst)
    assert sum(c.trimmed for c in burst) > 0
    st = det.finish()
    assert st.evicted_groups > 0  # said in the summary
    assert grew < 200_000, f"watch grew by {grew} KiB"


def test_trimmed_events_do_not_change_what_fires() -> None:
    """A correlation whose groups lost their events to the bound still fires on
    its counts (the alert shows the events kept)."""
    from probewatch.detect.correlation import MAX_TOTAL_EVENTS, Correlator

    c = Correlator("event_count", refs=["r1"], timespan_ns=10**12, group_by=["User"],
                   op="gte", count=3)
    for i in range(MAX_TOTAL_EVENTS * 2):  # 2 events in each of many groups
        assert c.feed(0, i, {"User": f"u{i // 2}"}, f"e{i}") == []
    assert c.trimmed > 0
    assert sum(len(g.events) for g in c.groups.values()) <= MAX_TOTAL_EVENTS
    fired = c.feed(0, 10**6, {"User": "u0"}, "last")  # u0: its 3rd event
    assert len(fired) == 1 and fired[0].count == 3 and fired[0].events[-1] == "last"
