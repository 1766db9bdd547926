"""The shipped rules as data: they load, carry complete metadata, and decide their
example events (tests/behaviors/examples/STEM.json) right.

Each examples file holds ``match`` and ``nomatch`` lists of cases; a case is a list of
events ``{"kind", "fields"}`` fed in order (one second apart) to an Engine that has
only that rule file loaded. A ``match`` case must make the file's alerting rule (its
first document) fire; a ``nomatch`` case must not. Fields a rule does not name get
plain defaults (a root shell's child), so every case states only what matters.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule

from probewatch.detect.engine import Engine, RuleSet
from probewatch.detect.model import SigmaEvent

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "src" / "probewatch" / "detect" / "rules"
EXAMPLES = ROOT / "tests" / "behaviors" / "examples"
FILES = sorted(RULES_DIR.glob("*.yml"))
STEMS = [p.stem for p in FILES]

TACTICS = {
    "reconnaissance", "resource-development", "initial-access", "execution", "persistence",
    "privilege-escalation", "defense-evasion", "credential-access", "discovery",
    "lateral-movement", "collection", "command-and-control", "exfiltration", "impact",
}
CATEGORIES = {"process_creation", "file_event", "network_connection", "syscall",
              "shell_command", "tls"}
TECHNIQUE = re.compile(r"^attack\.t\d{4}(\.\d{3})?$")
DEFAULTS = {
    "ProcessId": 4242, "ParentProcessId": 4200, "Image": "/usr/bin/true",
    "CommandLine": "true", "Argv0": "true", "Comm": "true", "User": "root", "Uid": 0,
    "Euid": 0, "Gid": 0, "Egid": 0, "LogonId": 4294967295, "CurrentDirectory": "/root",
    "ParentImage": "/usr/bin/bash", "ParentCommandLine": "-bash", "Success": True,
}


def docs(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(path.read_text()))


def test_at_least_30_rules_all_load_with_pysigma() -> None:
    assert len(FILES) >= 30
    for p in FILES:
        c = SigmaCollection.from_yaml(p.read_text(), collect_errors=True)
        errors = [e for r in c.rules for e in r.errors]
        assert errors == [], f"{p.name}: {errors}"
    rs = RuleSet.load([RULES_DIR], default=False)
    assert rs.report == []
    alerting = [r for r in rs.rules if r.generate]
    assert len(alerting) == len(FILES)


def test_ids_are_fresh_unique_uuids() -> None:
    ids = [d["id"] for p in FILES for d in docs(p)]
    assert len(ids) == len(set(ids))
    for i in ids:
        assert uuid.UUID(i).version == 4, i
    names = [d["name"] for p in FILES for d in docs(p) if "name" in d]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("stem", STEMS)
def test_rule_metadata(stem: str) -> None:
    ds = docs(RULES_DIR / f"{stem}.yml")
    main = ds[0]
    for key in ("title", "id", "status", "description", "author", "date", "tags", "level",
                "falsepositives"):
        assert main.get(key), f"{stem}: no {key}"
    assert main["author"] == "probewatch"
    assert main["level"] in ("low", "medium", "high", "critical")
    assert len(main["description"]) >= 80
    assert all(isinstance(f, str) and f for f in main["falsepositives"])
    tags = main["tags"]
    assert any(TECHNIQUE.match(t) for t in tags), f"{stem}: no ATT&CK technique"
    assert any(t[7:] in TACTICS for t in tags), f"{stem}: no ATT&CK tactic"
    for t in tags:
        assert TECHNIQUE.match(t) or t[7:] in TACTICS, f"{stem}: odd tag {t}"
    if "correlation" in main:
        corr = main["correlation"]
        assert corr["generate"] is False
        bases = {d["name"]: d for d in ds[1:]}
        assert set(corr["rules"]) == set(bases), f"{stem}: base rules live in the same file"
        for b in bases.values():  # steps of a sequence never alert alone
            assert b["level"] == "informational"
            assert b["logsource"]["product"] == "linux"
            assert b["logsource"]["category"] in CATEGORIES
    else:
        assert len(ds) == 1
        assert main["logsource"] == {"product": "linux",
                                     "category": main["logsource"]["category"]}
        assert main["logsource"]["category"] in CATEGORIES


def test_correlations_parse_as_pysigma_correlations() -> None:
    kinds = {}
    for p in FILES:
        c = SigmaCollection.from_yaml(p.read_text())
        c.resolve_rule_references()
        for r in c.rules:
            if isinstance(r, SigmaCorrelationRule):
                kinds[p.stem] = r.type.name.lower()
    assert kinds == {"reverse_shell_sequence": "temporal_ordered",
                     "download_then_execute": "temporal_ordered",
                     "packet_socket_sniffing": "temporal_ordered",
                     "discovery_burst": "value_count",
                     "port_scan_connect_burst": "value_count",
                     "port_scan_shell_loop": "value_count",
                     "archive_to_network_client": "temporal",
                     "child_shell_after_connect": "temporal_ordered",
                     "discovery_burst_multicall": "value_count",
                     "download_pipe_shell": "temporal",
                     "reverse_shell_fifo": "temporal_ordered",
                     "reverse_shell_fifo_stdin": "temporal_ordered",
                     "reverse_shell_socket_relay": "temporal_ordered",
                     "typed_reverse_shell": "temporal_ordered",
                     "typed_download_pipe_shell": "temporal_ordered",
                     "private_key_sent_over_tls": "temporal_ordered"}


@functools.cache
def _ruleset(stem: str) -> RuleSet:
    rs = RuleSet.load([RULES_DIR / f"{stem}.yml"], default=False)
    assert rs.report == []
    return rs


def _fires(stem: str, case: list[dict[str, Any]]) -> bool:
    main_id = docs(RULES_DIR / f"{stem}.yml")[0]["id"]
    eng = Engine(_ruleset(stem), min_level="informational")
    fired = False
    for i, ev in enumerate(case):
        fields = {**DEFAULTS, **ev["fields"]}
        sev = SigmaEvent(ev["kind"], (i + 1) * 1_000_000_000, fields["ProcessId"], fields)
        fired |= any(m.rule.id == main_id for m in eng.process(sev))
    fired |= any(m.rule.id == main_id for m in eng.flush())
    assert not eng.errors, eng.errors
    return fired


def test_every_rule_has_examples() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_rule_examples(stem: str) -> None:
    ex = json.loads((EXAMPLES / f"{stem}.json").read_text())
    assert ex["match"] and ex["nomatch"]
    for case in ex["match"]:
        assert _fires(stem, case), f"{stem} should match {case}"
    for case in ex["nomatch"]:
        assert not _fires(stem, case), f"{stem} should not match {case}"


@pytest.mark.parametrize("stem", ["shadow_read", "reverse_shell_sequence"])
def test_rules_test_cli_agrees(stem: str, tmp_path: Path) -> None:
    """`probewatch rules test TITLE --event @FILE` on the shipped rule, a match and a miss."""
    ex = json.loads((EXAMPLES / f"{stem}.json").read_text())
    title = docs(RULES_DIR / f"{stem}.yml")[0]["title"]
    for key, want in (("match", 0), ("nomatch", 1)):
        events = [{"kind": e["kind"], "fields": {**DEFAULTS, **e["fields"]},
                   "ts": (i + 1) * 1_000_000_000} for i, e in enumerate(ex[key][0])]
        f = tmp_path / f"{key}.json"
        f.write_text(json.dumps(events))
        r = subprocess.run([sys.executable, "-m", "probewatch", "rules", "test", title,
                            "--event", f"@{f}"], capture_output=True, text=True, timeout=60)
        assert r.returncode == want, (key, r.stdout, r.stderr)
        assert (title in r.stdout) and (("no match" in r.stdout) == (want == 1))
