"""What the red-team test modules share: loading a driver (tests/behaviors/redteam*.py),
the shipped rules by id, running a driver's variants under one real ``watch --json``
and giving each alert to the variant whose pid is in its ancestry, and the checks.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BEHAVIORS = ROOT / "tests" / "behaviors"
RULES_DIR = ROOT / "src" / "probewatch" / "detect" / "rules"


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _rules() -> dict[str, tuple[str, list[str]]]:
    """rule id -> (file stem, ATT&CK techniques) for every document of every file."""
    out = {}
    for p in sorted(RULES_DIR.glob("*.yml")):
        for doc in yaml.safe_load_all(p.read_text()):
            techs = sorted(t[7:].upper() for t in doc.get("tags", [])
                           if t.startswith("attack.t") and t[8:9].isdigit())
            out[doc["id"]] = (p.stem, techs)
    return out


RULES = _rules()
STEMS = {stem for stem, _ in RULES.values()}
STEM_BY_ID = {rid: stem for rid, (stem, _) in RULES.items()}


def split(variants: dict[str, tuple[Any, Any]]) -> tuple[list[str], list[str]]:
    """(attack variants: those expecting rules, benign ones), each sorted."""
    return (sorted(n for n, (_, exp) in variants.items() if exp),
            sorted(n for n, (_, exp) in variants.items() if not exp))


def require_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.fail(f"{name} is not installed (scripts/install.sh installs it for the "
                        "tests)")


def run_under_watch(driver: Path, names: list[str], scratch: Path,
                    ctx: dict[str, str]) -> dict[str, Any]:
    """Run ``driver`` on ``names`` under one ``probewatch watch --json``: per name its
    exit status and the alerts of its processes; ``__stray__``: alerts of nobody's."""
    ctx_file = scratch / "ctx.json"
    ctx_file.write_text(json.dumps(ctx))
    log = scratch / "log.txt"
    r = subprocess.run([sys.executable, "-m", "probewatch", "watch", "--json", "--",
                        sys.executable, str(driver), "--ctx", str(ctx_file), "--log",
                        str(log), *names], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    pids: dict[int, str] = {}
    out: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        name, pid, rc = line.split()
        pids[int(pid)] = name
        out[name] = {"rc": int(rc), "alerts": []}
    assert sorted(out) == sorted(names), r.stderr[-2000:]
    stray: list[dict[str, Any]] = []
    for line in r.stdout.splitlines():
        a = json.loads(line)
        if a.get("type") != "alert":
            continue
        chain = [p["pid"] for p in a.get("ancestry", [])] + [a["process"]["pid"]]
        owner = next((pids[p] for p in chain if p in pids), None)
        (stray if owner is None else out[owner]["alerts"]).append(a)
    out["__stray__"] = stray
    out["__stderr__"] = r.stderr
    return out


def summary(alerts: list[dict[str, Any]]) -> list[str]:
    return [f"{STEM_BY_ID.get(a['rule']['id'], a['rule']['id'])}: "
            f"{a['process']['command_line']!r} {a.get('matched')}" for a in alerts]


def check_caught(results: dict[str, Any], name: str, expected: set[str]) -> None:
    """The variant ran and raised exactly the expected rules, with their techniques."""
    res = results[name]
    assert res["rc"] == 0, f"variant {name} failed: {results['__stderr__'][-1500:]}"
    got = {STEM_BY_ID.get(a["rule"]["id"], a["rule"]["id"]) for a in res["alerts"]}
    assert got == expected, summary(res["alerts"])
    for a in res["alerts"]:
        assert sorted(a["rule"]["techniques"]) == RULES[a["rule"]["id"]][1]


def check_quiet(results: dict[str, Any], name: str) -> None:
    res = results[name]
    assert res["rc"] == 0, f"workload {name} failed: {results['__stderr__'][-1500:]}"
    assert res["alerts"] == [], summary(res["alerts"])
