"""Fuzzing rule loading: malformed YAML, rules and conditions give LoadProblems, never a
traceback; whatever loads evaluates without raising."""

from __future__ import annotations

import string
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.detect.engine import Engine, RuleSet
from probewatch.detect.model import SigmaEvent

MODS = ["contains", "startswith", "endswith", "all", "re", "i", "m", "s", "cidr", "base64",
        "base64offset", "windash", "exists", "fieldref", "gt", "gte", "lt", "lte", "cased",
        "wide", "utf16", "expand", "neq", "minute", "bogus"]
FIELDS = ["Image", "CommandLine", "User", "Uid", "Syscall", "request", "DestinationIp", "",
          "Nope"]
WORDS = ["sel", "sel_a", "sel_b", "filter", "them", "and", "or", "not", "1", "all", "of",
         "(", ")", "sel_*", "x*", "|", "count()"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
    st.text(alphabet=string.printable, max_size=12),
    st.sampled_from(["10.0.0.0/8", "/bin/sh", "*", "?", "%x%", "[", "(", "\\", "a*b?c"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))
keys = st.builds(lambda f, ms: "|".join([f, *ms]), st.sampled_from(FIELDS),
                 st.lists(st.sampled_from(MODS), max_size=3))
selection = st.one_of(st.dictionaries(keys, values, max_size=3), st.lists(scalars, max_size=3),
                      scalars)
conditions = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=7).map(" ".join),
    st.lists(st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join), max_size=2),
    scalars,
)
logsources = st.one_of(
    st.fixed_dictionaries({"category": st.sampled_from(
        ["process_creation", "syscall", "file_event", "network_connection", "dns"])}),
    st.fixed_dictionaries({"product": st.sampled_from(["linux", "windows"]),
                           "service": st.sampled_from(["auditd", "sshd"])}),
    scalars,
)


@st.composite
def rules(draw: Any) -> dict[str, Any]:
    det = draw(st.dictionaries(st.sampled_from(["sel", "sel_a", "sel_b", "filter"]), selection,
                               max_size=3))
    if draw(st.booleans()):
        det["condition"] = draw(conditions)
    r: dict[str, Any] = {"title": draw(st.one_of(st.text(max_size=8), scalars)),
                         "logsource": draw(logsources), "detection": det}
    if draw(st.booleans()):
        r["level"] = draw(st.sampled_from(["low", "high", "bogus", 3]))
    if draw(st.booleans()):
        r["id"] = draw(st.sampled_from(["not-a-uuid", 5, "3f0e0e0e-0000-4000-8000-00000000000e"]))
    if draw(st.booleans()):
        del r[draw(st.sampled_from(["title", "logsource", "detection"]))]
    return r


@st.composite
def correlations(draw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "type": draw(st.sampled_from(["event_count", "value_count", "temporal",
                                      "temporal_ordered", "value_sum", "nope", 3])),
        "rules": draw(st.one_of(st.lists(st.sampled_from(["r0", "r1", "zz"]), max_size=3),
                                scalars)),
        "timespan": draw(st.sampled_from(["10s", "1m", "0s", "x", 5])),
    }
    if draw(st.booleans()):
        c["group-by"] = draw(st.one_of(st.lists(st.sampled_from(FIELDS), max_size=2), scalars))
    if draw(st.booleans()):
        c["condition"] = draw(st.one_of(
            st.dictionaries(st.sampled_from(["gte", "lt", "eq", "field", "bad"]),
                            st.one_of(st.integers(-1, 5), st.sampled_from(["Image", "x"])),
                            max_size=2),
            st.sampled_from(["r0 and not r1", "r0 or", "((r0"]), scalars))
    return {"title": "c", "name": "c", "correlation": c}


def _events() -> list[SigmaEvent]:
    f = {"Image": "/bin/sh", "CommandLine": "sh -c id", "User": "root", "Uid": 0,
         "Syscall": "ptrace", "request": "PTRACE_ATTACH", "DestinationIp": "10.1.1.1",
         "argv": ["sh", "-c"], "Success": False, "Nope": None}
    return [SigmaEvent(k, i, 1, dict(f)) for i, k in enumerate(
        ["process_creation", "syscall", "file_event", "network_connection", "auditd"])]


def _check(rs: RuleSet) -> None:
    for p in rs.report:
        assert isinstance(p.reason, str) and p.reason
    e = Engine(rs)
    for ev in _events():
        e.process(ev)
    e.flush()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(rules(), correlations()), min_size=1, max_size=3))
def test_random_rules_load_or_are_reported(docs: list[dict[str, Any]]) -> None:
    # name the first two documents so correlations can refer to them
    for i, d in enumerate(docs[:2]):
        if "correlation" not in d:
            d["name"] = f"r{i}"
    text = yaml.safe_dump_all(docs, sort_keys=False)
    rs = RuleSet.load([], default=False)
    rs.add_yaml(text, "fuzz.yml")
    _check(rs)
    # every document is accounted for: it runs or it is reported
    assert len(rs.rules) + len({(p.rule_id, p.line) for p in rs.report}) >= 1


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=string.printable + "\u00e9\u2013", max_size=200))
def test_random_text_never_raises(text: str) -> None:
    rs = RuleSet.load([], default=False)
    rs.add_yaml(text, "junk.yml")
    _check(rs)
    # whatever came of it names the file it came from
    assert all(p.path == "junk.yml" for p in rs.report), rs.report
    assert all(r.path == "junk.yml" for r in rs.rules)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=9).map(" ".join))
def test_random_conditions(cond: str) -> None:
    text = yaml.safe_dump({
        "title": "c", "logsource": {"category": "process_creation"},
        "detection": {"sel_a": {"Image|endswith": "/sh"}, "sel_b": {"User": "root"},
                      "filter": {"Uid": 0}, "condition": cond}})
    rs = RuleSet.load([], default=False)
    rs.add_yaml(text, "cond.yml")
    _check(rs)
    assert len(rs.rules) + len(rs.report) >= 1
    for p in rs.report:
        assert p.line is not None and p.path == "cond.yml"
