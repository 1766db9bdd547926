"""The detection engine: indexing, levels, techniques, errors, loading reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from probewatch.detect.engine import DEFAULT_RULES_DIR, Engine, RuleSet, techniques_of
from probewatch.detect.model import SigmaEvent, at_least, level_rank, parse_level

RULES = """
title: ptrace attach
name: ptrace_attach
level: high
tags: [attack.defense_evasion, attack.t1055.008, attack.T1622]
logsource: {category: syscall, product: linux}
detection:
  sel: {Syscall: ptrace, request: [PTRACE_ATTACH, PTRACE_SEIZE]}
  condition: sel
---
title: module load
name: module_load
level: medium
logsource: {category: syscall, product: linux}
detection:
  sel: {Syscall: [init_module, finit_module]}
  condition: sel
---
title: any failed syscall by nobody
name: nobody_fails
level: low
logsource: {category: syscall, product: linux}
detection:
  sel: {User: nobody, Success: false}
  condition: sel
---
title: insmod
name: insmod
level: informational
logsource: {category: process_creation, product: linux}
detection:
  sel: {Image|endswith: [/insmod, /modprobe]}
  condition: sel
---
title: shell from anything
name: any_shell
level: low
logsource: {category: process_creation, product: linux}
detection:
  sel: {CommandLine|contains: ' -i'}
  condition: sel
---
title: auditd execve
name: audit_exec
level: low
logsource: {product: linux, service: auditd}
detection:
  sel: {type: EXECVE, a0: whoami}
  condition: sel
"""


@pytest.fixture(scope="module")
def rs() -> RuleSet:
    r = RuleSet.load([], default=False)
    r.add_yaml(RULES, "inline.yml")
    assert not r.report
    return r


def names(matches: list) -> list[str]:  # type: ignore[type-arg]
    return [m.rule.name for m in matches]


def test_levels() -> None:
    assert level_rank("critical") == 4 and level_rank(None) == 0
    assert at_least("HIGH", "medium") and not at_least("low", "medium")
    assert parse_level(" Medium ") == "medium"
    with pytest.raises(ValueError, match="choose from informational, low"):
        parse_level("severe")


def test_techniques_from_tags(rs: RuleSet) -> None:
    r = rs.get("ptrace_attach")
    assert r is not None and r.techniques == ["T1055.008", "T1622"]
    assert techniques_of(["attack.t1000", "attack.g0001", "car.2013-01-002"]) == ["T1000"]


def test_syscall_rules_indexed_by_syscall(rs: RuleSet) -> None:
    e = Engine(rs)
    ptrace = SigmaEvent("syscall", 1, 1, {"Syscall": "ptrace", "request": "PTRACE_SEIZE"})
    assert [r.name for r in e.candidates(ptrace)] == ["ptrace_attach", "nobody_fails"]
    openat = SigmaEvent("syscall", 1, 1, {"Syscall": "openat", "Success": False})
    assert [r.name for r in e.candidates(openat)] == ["nobody_fails"]
    assert names(e.process(ptrace)) == ["ptrace_attach"]
    fin = SigmaEvent("syscall", 1, 1, {"Syscall": "FINIT_MODULE"})
    assert names(e.process(fin)) == ["module_load"]
    # the index is a prefilter only: a ptrace without ATTACH does not match
    assert e.process(SigmaEvent("syscall", 1, 1, {"Syscall": "ptrace",
                                                   "request": "PTRACE_TRACEME"})) == []


def test_process_rules_indexed_by_image_basename(rs: RuleSet) -> None:
    e = Engine(rs)
    ev = SigmaEvent("process_creation", 1, 1, {"Image": "/usr/sbin/INSMOD",
                                                "CommandLine": "insmod x.ko"})
    assert [r.name for r in e.candidates(ev)] == ["insmod", "any_shell"]
    other = SigmaEvent("process_creation", 1, 1, {"Image": "/bin/ls"})
    assert [r.name for r in e.candidates(other)] == ["any_shell"]
    assert names(e.process(ev)) == ["insmod"]


def test_auditd_rules_indexed_by_record_type(rs: RuleSet) -> None:
    e = Engine(rs)
    ev = SigmaEvent("auditd", 1, 1, {"type": "EXECVE", "argc": "1", "a0": "whoami"})
    assert names(e.process(ev)) == ["audit_exec"]
    assert e.candidates(SigmaEvent("auditd", 1, 1, {"type": "PATH"})) == ()


def test_syscall_names(rs: RuleSet) -> None:
    # nobody_fails may fire on any syscall
    assert rs.syscall_names() is None
    only = RuleSet.load([], default=False)
    only.add_yaml("\n---\n".join(RULES.split("---")[i] for i in (0, 1, 3, 5)))
    assert only.syscall_names() == {"ptrace", "init_module", "finit_module", "execve",
                                    "execveat"}


def test_unknown_kind_meets_no_rule(rs: RuleSet) -> None:
    assert Engine(rs).process(SigmaEvent("dns_query", 1, 1, {"Image": "/usr/sbin/insmod"})) == []


def test_min_level(rs: RuleSet) -> None:
    ev = SigmaEvent("process_creation", 1, 1, {"Image": "/sbin/modprobe",
                                                "CommandLine": "modprobe -i x"})
    assert sorted(names(Engine(rs).process(ev))) == ["any_shell", "insmod"]
    assert names(Engine(rs, min_level="low").process(ev)) == ["any_shell"]
    assert names(Engine(rs, min_level="high").process(ev)) == []
    with pytest.raises(ValueError):
        Engine(rs, min_level="nope")


def test_rule_without_level_counts_as_medium() -> None:
    rs = RuleSet.load([], default=False)
    rs.add_yaml("title: t\nlogsource: {category: process_creation}\n"
                "detection: {s: {Image: /x}, condition: s}\n")
    ev = SigmaEvent("process_creation", 1, 1, {"Image": "/x"})
    assert rs.rules[0].level is None
    assert len(Engine(rs, min_level="medium").process(ev)) == 1
    assert Engine(rs, min_level="high").process(ev) == []


def test_evaluation_errors_are_counted_not_raised(rs: RuleSet) -> None:
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    e = Engine(rs)
    ev = SigmaEvent("syscall", 1, 1, {"Syscall": "ptrace", "request": Bad()})
    assert e.process(ev) == []
    assert e.errors == {"ptrace_attach": 1}
    e.process(ev)
    assert e.errors["ptrace_attach"] == 2
    # the engine goes on
    assert names(e.process(SigmaEvent("syscall", 2, 1, {"Syscall": "init_module"}))) == [
        "module_load"]
    assert e.stats()["errors"] == {"ptrace_attach": 2}


def test_match_carries_the_event_and_rule_metadata(rs: RuleSet) -> None:
    ev = SigmaEvent("syscall", 5, 42, {"Syscall": "ptrace", "request": "PTRACE_ATTACH"},
                    source="raw")
    (m,) = Engine(rs).process(ev)
    assert m.events == [ev] and m.group is None and m.count == 1
    assert m.rule.level == "high" and m.rule.path == "inline.yml" and m.rule.kind == "syscall"
    assert m.rule.to_dict()["index"] == {"field": "Syscall", "values": ["ptrace"]}


def test_rule_matches_helper(rs: RuleSet) -> None:
    r = rs.get("insmod")
    assert r is not None
    assert r.matches(SigmaEvent("process_creation", 0, 0, {"Image": "/sbin/insmod"}))
    assert not r.matches(SigmaEvent("syscall", 0, 0, {"Image": "/sbin/insmod"}))


def test_default_rules_are_the_shipped_ones() -> None:
    rs = RuleSet.load([], default=True)
    shipped = sorted(DEFAULT_RULES_DIR.glob("*.yml")) if DEFAULT_RULES_DIR.is_dir() else []
    assert rs.files == [str(p) for p in shipped]
    # every shipped file either runs or is reported
    for f in rs.files:
        assert any(r.path == f for r in rs.rules) or any(p.path == f for p in rs.report)
    assert RuleSet.load([], default=False).files == []


def test_malformed_files_are_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("title: x\ndetection: [\n  oops: {\n")
    (tmp_path / "b.yml").write_text("- just\n- a list\n")
    (tmp_path / "c.yml").write_bytes(b"title: \xff\xfe\n")
    (tmp_path / "d.yml").write_text("")
    (tmp_path / "e.yml").write_text(
        "title: no detection\nid: 0e0e0e0e-0000-4000-8000-00000000000e\n"
        "logsource: {category: process_creation}\n")
    (tmp_path / "f.yml").write_text(
        "title: bad level\nlevel: severe\nlogsource: {category: process_creation}\n"
        "detection: {s: {Image: x}, condition: s}\n")
    (tmp_path / "g.yml").write_text(
        "title: bad modifier\nlogsource: {category: process_creation}\n"
        "detection:\n  s:\n    Image|sortof: x\n  condition: s\n")
    (tmp_path / "ignored.txt").write_text("not a rule")
    rs = RuleSet.load([tmp_path, tmp_path / "missing.yml"], default=False)
    by = {Path(p.path).name: p for p in rs.report}
    assert by["a.yml"].line == 3 and by["a.yml"].reason.startswith("YAML:")
    assert "not a rule" in by["b.yml"].reason and by["b.yml"].line == 1
    assert "UTF-8" in by["c.yml"].reason
    assert by["d.yml"].reason == "no rule in file"
    assert "detection" in by["e.yml"].reason and by["e.yml"].rule_id == (
        "0e0e0e0e-0000-4000-8000-00000000000e")
    assert "severe" in by["f.yml"].reason and by["f.yml"].line == 2
    assert "sortof" in by["g.yml"].reason and by["g.yml"].line == 5
    assert by["missing.yml"].reason == "no such file or directory"
    assert "ignored.txt" not in by and rs.rules == []
    assert all(not p.runs for p in rs.report)
    assert str(by["g.yml"]).startswith(str(tmp_path / "g.yml") + ":5: bad modifier not run:")


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    rule = ("title: t{n}\nid: 1e0e0e0e-0000-4000-8000-00000000000e\n"
            "logsource: {{category: process_creation}}\n"
            "detection: {{s: {{Image: x}}, condition: s}}\n")
    (tmp_path / "a.yml").write_text(rule.format(n=1))
    (tmp_path / "b.yml").write_text(rule.format(n=2))
    rs = RuleSet.load([tmp_path], default=False)
    assert [r.title for r in rs.rules] == ["t1"]
    (p,) = rs.report
    assert "duplicate rule id" in p.reason and p.path.endswith("b.yml") and p.line == 2


def test_global_action_documents(tmp_path: Path) -> None:
    (tmp_path / "g.yml").write_text("""
action: global
logsource: {category: process_creation, product: linux}
level: low
---
title: one
detection: {s: {Image|endswith: /one}, condition: s}
---
title: two
detection: {s: {Image|endswith: /two}, condition: s}
""")
    rs = RuleSet.load([tmp_path], default=False)
    assert [(r.title, r.level) for r in rs.rules] == [("one", "low"), ("two", "low")]
    e = Engine(rs)
    assert names(e.process(SigmaEvent("process_creation", 0, 0, {"Image": "/x/two"}))) == [None]


# --- the index is only a prefilter: indexed evaluation equals evaluating every rule ---

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIGMA = Path(__file__).resolve().parent.parent / "sigma_conformance"
_VOCAB: dict[str, list[object]] = {
    "Image": ["/usr/bin/id", "/usr/bin/ID", "/bin/sh", "/usr/bin/crontab", "/usr/bin/curl",
              "/sbin/insmod", "/usr/bin/python3", "/tmp/x", "relative/nc", "", None, 5],
    "CommandLine": ["nc -e /bin/sh", "curl http://x", "crontab -l", "t -x 1 -y 2", "xx yy",
                    "pp qq", "bash -i", ""],
    "User": ["root", "bob", "alice", "nobody"],
    "Syscall": ["ptrace", "PTRACE", "openat", "init_module", "execve", "write", None],
    "request": ["PTRACE_ATTACH", "PTRACE_TRACEME"],
    "type": ["SYSCALL", "EXECVE", "PATH", "syscall"],
    "SYSCALL": ["ptrace", "memfd_create", "sysinfo"],
    "a0": ["whoami", "sysctl"], "exe": ["/tmp/a", "/usr/bin/kmod"],
    "TargetFilename": ["/etc/shadow", "/etc/cron.d/x", "/tmp/a", "/ETC/passwd", "x", None],
    "Operation": ["write", "create", "unlink"], "Success": [True, False, "false"],
    "ParentImage": ["/bin/bash", "/opt/gitlab-runner"], "Uid": [0, 1000, "0"],
    "argv": [["nc", "-e"], ["ls"], []], "DestinationIp": ["10.1.1.1", "fd00::1", "8.8.8.8"],
    "LD_PRELOAD": ["/tmp/x.so", ""], "Comm": ["gdb", "evil"],
    "name": ["/etc/passwd", "/usr/share/doc/x", "/ETC/pam.d/sshd", "rel", None],
    "a1": ["--cpu-priority=5", "-w"],
}


@st.composite
def _events(draw: st.DrawFn) -> SigmaEvent:
    kind = draw(st.sampled_from(["process_creation", "syscall", "file_event",
                                 "network_connection", "auditd"]))
    keys = draw(st.lists(st.sampled_from(sorted(_VOCAB)), unique=True, max_size=8))
    return SigmaEvent(kind, 0, 1, {k: draw(st.sampled_from(_VOCAB[k])) for k in keys})


@pytest.fixture(scope="module")
def _big() -> RuleSet:
    return RuleSet.load([SIGMA / "modifiers.yml", SIGMA / "conditions.yml", SIGMA /
                         "filtered.yml"], default=True, placeholders={"shells": ["*/sh"]})


@settings(max_examples=300, deadline=None)
@given(ev=_events())
def test_index_equals_evaluating_every_rule(_big: RuleSet, ev: SigmaEvent) -> None:
    e = Engine(_big)
    got = sorted(m.rule.id for m in e.process(ev) if not m.rule.correlation)
    want = sorted(r.id for r in _big.rules
                  if not r.correlation and r.generate and r.matches(ev))
    assert got == want
