"""probewatch rules list | lint | test, run as a person would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SIGMA = Path(__file__).resolve().parent.parent / "sigma_conformance"


def pw(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probewatch", "rules", *args],
                          capture_output=True, text=True, input=stdin, timeout=60)


def test_help_has_examples() -> None:
    r = pw("-h")
    assert r.returncode == 0
    assert "examples:" in r.stdout and "rules lint" in r.stdout and "exit status" in r.stdout
    for action in ("list", "lint", "test"):
        assert pw(action, "-h").returncode == 0


def test_lint_clean_file_exits_0() -> None:
    r = pw("lint", str(SIGMA / "conditions.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "1 files: 9 rules run, 0 problems keep a rule or file from " \
                               "running, 0 warnings"


def test_lint_reports_every_rule_that_cannot_run() -> None:
    path = SIGMA / "unsupported.yml"
    r = pw("lint", str(path))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[-1] == ("1 files: 1 rules run, 7 problems keep a rule or file from running, "
                         "1 warnings")
    assert f"{path}:36: sshd not run: logsource service sshd: no event source" in lines
    assert any(ln.startswith(f"{path}:59: unknown_field_or warning: field OriginalFileName")
               for ln in lines)
    # warnings alone do not fail, unless --strict
    assert pw("lint", "--strict", str(SIGMA / "conditions.yml")).returncode == 0


def test_lint_json() -> None:
    r = pw("lint", "--json", str(SIGMA / "unsupported.yml"))
    doc = json.loads(r.stdout)
    assert doc["runs"] == 1 and doc["cannot_run"] == 7 and doc["warnings"] == 1
    assert doc["by_reason"]["logsource service sshd: no event source"] == 1
    p = next(p for p in doc["problems"] if p["rule_id"] == "wide")
    assert p["line"] == 7 and p["runs"] is False and "modifier wide" in p["reason"]


def test_lint_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("title: t\nlogsource:\n  category: process_creation\n detection: x\n")
    r = pw("lint", str(bad))
    assert r.returncode == 1
    assert r.stdout.startswith(f"{bad}:4: not run: YAML:")
    assert "Traceback" not in r.stderr


def test_list_text_and_json() -> None:
    r = pw("list", "--no-default-rules", "--rules", str(SIGMA / "correlations.yml"))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    rev = next(ln for ln in lines if ln.endswith("reverse shell"))
    assert rev.split()[:3] == ["critical", "T1059.004", "temporal"]
    assert len(lines) == 19  # one row a rule; the count goes to stderr
    assert r.stderr == "19 rules\n"
    j = json.loads(pw("list", "--json", "--no-default-rules", "--rules",
                      str(SIGMA / "correlations.yml"), "--level", "high").stdout)
    assert sorted(r["title"] for r in j["rules"]) == [
        "download then chmod", "repeated shadow failures", "reverse shell"]
    rs = next(r for r in j["rules"] if r["title"] == "reverse shell")
    assert rs["correlation"] == "temporal" and len(rs["referenced"]) == 3
    assert rs["kinds"] == ["network_connection", "process_creation", "syscall"]
    assert pw("list", "--level", "bogus").returncode == 2


def test_list_verbose_shows_fields_and_index() -> None:
    r = pw("list", "-v", "--no-default-rules", "--rules", str(SIGMA / "conditions.yml"))
    assert "    index Syscall in process_vm_writev, ptrace" in r.stdout
    assert "    fields Comm, Syscall, request" in r.stdout


def test_test_matches_and_misses() -> None:
    rule = str(SIGMA / "conditions.yml")
    ev = {"kind": "syscall", "fields": {"Syscall": "ptrace", "request": "PTRACE_ATTACH",
                                        "Comm": "evil"}}
    r = pw("test", rule, "--no-default-rules", "--event", json.dumps(ev))
    assert r.returncode == 0 and r.stdout.startswith("match: nested parentheses")
    ev["fields"]["Comm"] = "gdb"
    r = pw("test", rule, "--no-default-rules", "--event", json.dumps(ev))
    assert r.returncode == 1 and r.stdout.startswith("no match: ")
    # by rule name among loaded rules, event from stdin, JSON out
    r = pw("test", "nested_parentheses", "--no-default-rules", "--rules", rule, "--json",
           "--event", "-", stdin=json.dumps(ev))
    assert json.loads(r.stdout) == {"match": False, "matches": [], "errors": {}}


def test_test_correlation_with_several_events(tmp_path: Path) -> None:
    events = [
        {"kind": "network_connection", "ts": 0, "fields": {"ProcessId": 5, "Initiated": "true"}},
        {"kind": "syscall", "ts": 10, "fields": {"ProcessId": 5, "Syscall": "dup2", "newfd": 1}},
        {"kind": "process_creation", "ts": 20, "fields": {"ProcessId": 5, "Image": "/bin/sh"}},
    ]
    f = tmp_path / "ev.json"
    f.write_text(json.dumps(events))
    r = pw("test", "reverse shell", "--no-default-rules", "--rules",
           str(SIGMA / "correlations.yml"), "--event", f"@{f}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().startswith("match: reverse shell")
    assert "group {'ProcessId': 5} count 3" in r.stdout


def test_test_bad_input() -> None:
    r = pw("test", str(SIGMA / "conditions.yml"), "--event", "{not json")
    assert r.returncode == 2 and "bad --event" in r.stderr
    r = pw("test", str(SIGMA / "conditions.yml"), "--event", '{"kind": "syscall"}')
    assert r.returncode == 2 and '"fields"' in r.stderr
    r = pw("test", "no such rule", "--no-default-rules", "--event",
           '{"kind": "syscall", "fields": {}}')
    assert r.returncode == 2 and "no runnable rule 'no such rule'" in r.stderr


def test_placeholders_for_expand() -> None:
    path = str(SIGMA / "modifiers.yml")
    r = pw("lint", path)
    assert r.returncode == 1 and "%shells% (|expand) is not defined" in r.stdout
    assert pw("lint", path, "--placeholder", "shells=*/sh,*/bash").returncode == 0
    ev = '{"kind": "process_creation", "fields": {"Image": "/usr/bin/bash"}}'
    r = pw("test", "expand_defined", "--no-default-rules", "--rules", path,
           "--placeholder", "shells=*/sh,*/bash", "--event", ev)
    assert r.returncode == 0 and r.stdout.startswith("match: expand defined")
    r = pw("lint", path, "--placeholder", "=x")
    assert r.returncode == 2 and "expected NAME=VALUE" in r.stderr
