"""Partial syscall events (Mapper.use_engine + Engine.plan): the same matches as full ones.

The Detector lets the mapper make, for the ``syscall`` kind, only what the loaded rules
can match: nothing for a syscall no rule names, and for the others a Partial with the
fields the candidate rules read, built in full only on a match. These tests run the same
events through a gated and an ungated mapper and compare every match, field by field.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.analyze.proctable import Process, ProcessTable
from probewatch.decode.syscalls import SyscallTable, parse_syscall_format
from probewatch.detect.engine import Engine, Partial, RuleSet, rule_reads
from probewatch.detect.mapping import Mapper
from probewatch.detect.sigma import Lowered
from probewatch.event import Event

ARGS = {
    "openat": "int dfd; const char * filename; int flags; umode_t mode",
    "socket": "int family; int type; int protocol",
    "connect": "int fd; struct sockaddr * uservaddr; int addrlen",
    "dup2": "unsigned int oldfd; unsigned int newfd",
    "ptrace": "long request; long pid; unsigned long addr; unsigned long data",
    "chdir": "const char * filename",
    "getpid": "",
}
NRS = {"openat": 257, "socket": 41, "connect": 42, "dup2": 33, "ptrace": 101, "chdir": 80,
       "getpid": 39}

KEYWORD_RULE = """
title: kw tar
id: 0b6c4b8e-1111-4222-8333-944455556666
level: low
logsource: {category: syscall, product: linux}
detection: {keywords: ['zz-secret'], condition: keywords}
"""

OPENAT_RULE = """
title: shadow via openat by tar
id: 0b6c4b8e-1111-4222-8333-944455556667
level: low
logsource: {category: syscall, product: linux}
detection:
  sel: {Syscall: openat, TargetFilename: /etc/shadow, Comm: tar}
  condition: sel
"""


def _table() -> SyscallTable:
    formats = {}
    for name, decl in ARGS.items():
        text = "\n".join(f"\tfield:{d.strip()};\toffset:0;\tsize:8;\tsigned:0;"
                         for d in decl.split(";") if d.strip())
        formats[name] = parse_syscall_format(text)
    return SyscallTable({nr: n for n, nr in NRS.items()}, formats)


SYSCALLS = _table()


def _proc_table(root: str) -> ProcessTable:
    t = ProcessTable(proc_root=root)
    t.live = False
    init = Process(1, 0, 1)
    init.exe, init.argv, init.uid, init.euid = "/sbin/init", ["/sbin/init"], 0, 0
    t.procs[1] = init
    tar = Process(4502, 1, 3)
    tar.exe, tar.argv, tar.cwd, tar.uid, tar.euid = "/usr/bin/tar", ["tar", "czf", "x"], \
        "/home/u", 1000, 1000
    t.procs[4502] = tar
    return t


def sc(ts: int, name: str, ret: int, comm: str = "tar", **args: Any) -> Event:
    f: dict[str, Any] = {"ppid": 1, "uid": 1000, "gid": 1000, "cgroup": 1, "nr": NRS[name],
                         **args, "ret": ret, "duration_ns": 10}
    return Event(ts, 0, 4502, 4502, comm, f"syscalls:{name}", "bpf:syscalls", f)


def _rules(keywords: bool) -> RuleSet:
    rs = RuleSet.load([], default=True)
    if keywords:
        rs.add_yaml(KEYWORD_RULE)
    rs.add_yaml(OPENAT_RULE)
    return rs


RULES = _rules(True)
RULES_NO_KW = _rules(False)


def _run(events: list[Event], gated: bool, rules: RuleSet
         ) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    engine = Engine(rules)
    m = Mapper(_proc_table("/nonexistent-proc"), SYSCALLS)
    if gated:
        m.use_engine(engine)
    got = []
    partials = 0
    for ev in events:
        for sev in m.map(ev):
            partials += isinstance(sev, Partial)
            for match in engine.process(sev):
                got.append((match.rule.id, dict(match.events[-1].fields)))
    return got, partials


def _events() -> list[Event]:
    addr = struct.pack("<H", 2) + struct.pack(">H", 4444) + bytes([10, 0, 0, 9]) + b"\0" * 8
    return [
        sc(10, "openat", 3, dfd=-100, filename="/etc/passwd", flags=0, mode=0),
        sc(11, "openat", 4, dfd=-100, filename="../../etc/shadow", flags=0, mode=0),
        sc(12, "openat", 5, dfd=3, filename="zz-secret", flags=0o2000000, mode=0),
        sc(13, "getpid", 4502),
        sc(14, "socket", 6, family=2, type=1, protocol=0),
        sc(15, "connect", 0, fd=6, uservaddr=addr, addrlen=16),
        sc(16, "dup2", 0, oldfd=6, newfd=0),
        sc(17, "dup2", 1, oldfd=6, newfd=1),
        sc(18, "ptrace", 0, request=16, pid=1, addr=0, data=0),
        sc(19, "chdir", 0, filename="/root/.ssh"),
        sc(20, "openat", 7, dfd=-100, filename="id_rsa", flags=0, mode=0),
        sc(21, "openat", 8, dfd=-100, filename="/etc/shadow", flags=0, mode=0, comm="cat"),
    ]


def test_gated_mapper_gives_the_same_matches_with_partial_events() -> None:
    full, p0 = _run(_events(), gated=False, rules=RULES_NO_KW)
    lean, p1 = _run(_events(), gated=True, rules=RULES_NO_KW)
    # partial: 5 openat, socket, connect (the port-scan rule names it), 2 dup2, ptrace;
    # no rule names chdir or getpid
    assert p0 == 0 and p1 == 10
    assert [rid for rid, _ in lean] == [rid for rid, _ in full]
    assert lean == full  # the matched events in full, not the partial fields
    ids = {rid for rid, _ in full}
    assert "0b6c4b8e-1111-4222-8333-944455556667" in ids and len(ids) >= 3


def test_a_keyword_rule_makes_every_syscall_event_in_full() -> None:
    full, _ = _run(_events(), gated=False, rules=RULES)
    lean, partials = _run(_events(), gated=True, rules=RULES)
    assert partials == 0 and lean == full
    assert "0b6c4b8e-1111-4222-8333-944455556666" in {rid for rid, _ in full}


def test_plan_says_what_to_make() -> None:
    engine = Engine(RULES)
    assert engine.plan("syscall", {"Syscall": "getpid"}) is None  # the keyword rule
    rs = RuleSet.load([], default=False)
    rs.add_yaml(OPENAT_RULE)
    e2 = Engine(rs)
    assert e2.plan("syscall", {"Syscall": "getpid"}) is False  # no rule: make nothing
    assert e2.plan("syscall", {"Syscall": "openat", "TargetFilename": "/etc/x"}) == frozenset(
        {"Syscall", "TargetFilename", "Comm"})
    assert e2.plan("syscall", {"Syscall": "openat", "TargetFilename": "/tmp/x"}) is False
    assert e2.plan("process_creation", {"Image": "/bin/sh"}) is False


def test_unnamed_syscall_makes_no_event_when_no_rule_reads_it() -> None:
    rs = RuleSet.load([], default=False)
    rs.add_yaml(OPENAT_RULE)
    engine = Engine(rs)
    m = Mapper(_proc_table("/nonexistent-proc"), SYSCALLS, kinds=["syscall"])
    m.use_engine(engine)
    assert m.map(sc(1, "getpid", 4502)) == []
    m.map(sc(2, "socket", 6, family=2, type=1, protocol=0))
    # the fd table is still kept: dup2 of the socket is known
    assert m.table.procs[4502].fd(6) == "socket:AF_INET:SOCK_STREAM"
    [p] = m.map(sc(3, "openat", 3, dfd=-100, filename="/etc/shadow", flags=0, mode=0))
    assert isinstance(p, Partial) and "flags" not in p.fields and "Image" not in p.fields
    [hit] = engine.process(p)
    assert hit.events[0].fields["flags"] == "O_RDONLY"
    assert hit.events[0].fields["Image"] == "/usr/bin/tar"


_FIELD_NAMES = ["Image", "CommandLine", "TargetFilename", "Syscall", "flags", "Comm", "User",
                "ParentImage", "request", "FdTarget", "option", "NewName", "Success", "Uid"]
_VALUES = st.one_of(st.sampled_from(["/etc/shadow", "/usr/bin/tar", "openat", "ptrace",
                                     "PTRACE_ATTACH", "O_RDONLY", "root", "/bin/bash",
                                     "socket:AF_INET:SOCK_STREAM:1.2.3.4:4444", "/root/.ssh/id_rsa",
                                     "PR_SET_NAME", "x"]),
                    st.integers(-2, 2), st.booleans(), st.text(max_size=6))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_FIELD_NAMES), _VALUES, max_size=10))
def test_rule_reads_covers_what_a_predicate_looks_at(fields: dict[str, Any]) -> None:
    for r in RULES.rules:
        reads = rule_reads(r)
        if r.fn is None or reads is None:
            continue
        part = {k: v for k, v in fields.items() if k in reads}
        part["unread-field"] = "zz-secret"  # fields a rule does not read change nothing
        try:
            want = bool(r.fn(fields, Lowered(fields)))
        except Exception:  # noqa: BLE001
            continue
        assert bool(r.fn(part, Lowered(part))) == want, (r.title, reads)


def test_rule_reads_of_keywords_is_every_field(tmp_path: Path) -> None:
    kw = next(r for r in RULES.rules if r.title == "kw tar")
    assert rule_reads(kw) is None
    op = next(r for r in RULES.rules if r.title == "shadow via openat by tar")
    assert rule_reads(op) == frozenset({"Syscall", "TargetFilename", "Comm"})


def test_guards_keep_a_rule_from_events_outside_its_directories() -> None:
    engine = Engine(RULES_NO_KW)
    shadow = next(r for r in RULES_NO_KW.rules if r.title == "shadow via openat by tar")
    assert shadow.index == ("Syscall", frozenset({"openat"}))
    assert shadow.guards == {"Syscall": frozenset({"openat"}),
                             "TargetFilename": frozenset({"etc"})}
    assert engine.plan("syscall", {"Syscall": "openat",
                                   "TargetFilename": "/usr/share/doc/x"}) is False
    assert engine.plan("syscall", {"Syscall": "openat", "TargetFilename": None}) is False
    etc = engine.plan("syscall", {"Syscall": "openat", "TargetFilename": "/ETC/x"})
    assert isinstance(etc, frozenset) and {"TargetFilename", "Comm", "flags"} <= etc
    m = Mapper(_proc_table("/nonexistent-proc"), SYSCALLS, kinds=["syscall"])
    m.use_engine(engine)
    assert m.map(sc(1, "openat", 3, dfd=-100, filename="/usr/share/doc/x", flags=0,
                    mode=0)) == []
    assert m.table.procs[4502].fd(3) == "/usr/share/doc/x"  # the fd table still kept
    # relative to that fd: /usr/share/doc/x/../../../../etc/shadow is /etc/shadow
    [p] = m.map(sc(2, "openat", 4, dfd=3, filename="../../../../etc/shadow", flags=0,
                   mode=0))
    assert p.fields["TargetFilename"] == "/etc/shadow"
    assert [x.rule.title for x in engine.process(p)] == [
        "Password Hash File Read By An Unexpected Program", "shadow via openat by tar"]
