"""Red-team variants, second pass (tests/behaviors/redteam2.py), under real ``watch``.

Privilege escalation, persistence, defense evasion, discovery, exfiltration and
container-escape techniques the first pass (test_redteam_variants.py) did not cover, each
performed for real in its own forked child (system paths only inside an unshared mount
namespace); one ``probewatch watch --json`` run covers them all. An alert belongs to a
variant when the variant's pid is in its ancestry. Each attack variant must raise exactly
its expected rules (with their ATT&CK techniques); each benign near-miss (touch with the
current time, find by name, id/getent, reading unit files, curl POST of inline JSON, a
tmpfs in a private namespace, ...) must raise nothing; the driver itself must stay quiet.
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

from conftest import need_root  # tests/conftest.py

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "behaviors" / "redteam2.py"
RULES_DIR = ROOT / "src" / "probewatch" / "detect" / "rules"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


redteam = _load("pw_redteam2", DRIVER)

ATTACKS = sorted(n for n, (_, exp) in redteam.VARIANTS.items() if exp)
BENIGN = sorted(n for n, (_, exp) in redteam.VARIANTS.items() if not exp)


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


def _tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed (scripts/install.sh installs it for the tests)")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_root("watch arms BPF programs")
    for t in ("busybox", "perl", "gcc", "curl", "wget", "ssh", "ssh-keygen", "setcap",
              "unshare", "nsenter", "find", "touch", "tar", "chroot", "systemctl"):
        _tool(t)
    scratch = tmp_path_factory.mktemp("redteam2")
    home = scratch / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# test bashrc\n")
    victim = scratch / "victim"
    victim.mkdir()
    ctx = scratch / "ctx.json"
    ctx.write_text(json.dumps({"scratch": str(scratch), "home": str(home),
                               "victim_home": str(victim)}))
    log = scratch / "log.txt"
    names = ATTACKS + BENIGN
    r = subprocess.run([sys.executable, "-m", "probewatch", "watch", "--json", "--",
                        sys.executable, str(DRIVER), "--ctx", str(ctx), "--log", str(log),
                        *names], capture_output=True, text=True, timeout=300)
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


def _summary(alerts: list[dict[str, Any]]) -> list[str]:
    return [f"{STEM_BY_ID.get(a['rule']['id'], a['rule']['id'])}: "
            f"{a['process']['command_line']!r} {a.get('matched')}" for a in alerts]


@pytest.mark.parametrize("name", ATTACKS)
def test_variant_is_caught(results: dict[str, Any], name: str) -> None:
    res = results[name]
    assert res["rc"] == 0, f"variant {name} failed: {results['__stderr__'][-1500:]}"
    got = {STEM_BY_ID.get(a["rule"]["id"], a["rule"]["id"]) for a in res["alerts"]}
    assert got == set(redteam.VARIANTS[name][1]), _summary(res["alerts"])
    for a in res["alerts"]:
        assert sorted(a["rule"]["techniques"]) == RULES[a["rule"]["id"]][1]


@pytest.mark.parametrize("name", BENIGN)
def test_benign_work_is_quiet(results: dict[str, Any], name: str) -> None:
    res = results[name]
    assert res["rc"] == 0, f"workload {name} failed: {results['__stderr__'][-1500:]}"
    assert res["alerts"] == [], _summary(res["alerts"])


def test_driver_is_quiet(results: dict[str, Any]) -> None:
    assert results["__stray__"] == [], _summary(results["__stray__"])


def test_expected_rules_exist() -> None:
    named = set().union(*(exp for _, exp in redteam.VARIANTS.values()))
    assert named <= STEMS, sorted(named - STEMS)
    assert len(ATTACKS) >= 20 and len(BENIGN) >= 8
