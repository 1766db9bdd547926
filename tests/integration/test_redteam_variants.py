"""Red-team variants of the targeted techniques, and everyday work, under real ``watch``.

tests/behaviors/redteam.py performs each variant (another tool, a script file instead of
a command line, a renamed binary, a dir fd, a symlink, a busybox applet, ...) in its own
forked child; one ``probewatch watch --json`` run covers them all. An alert belongs to a
variant when the variant's pid is in its ancestry. Each attack variant must raise exactly
its expected rules (with their ATT&CK techniques); each benign workload (git clone, tar,
pip install of a wheel, gcc, dpkg -l, ssh-keygen, systemctl, curl to a local server,
ssh-agent, gdb bt, ...) must raise nothing; the driver itself must stay quiet.
"""

from __future__ import annotations

import importlib.util
import json
import os
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
DRIVER = ROOT / "tests" / "behaviors" / "redteam.py"
RULES_DIR = ROOT / "src" / "probewatch" / "detect" / "rules"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


redteam = _load("pw_redteam", DRIVER)

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
    for t in ("busybox", "perl", "gdb", "gcc", "curl", "wget", "bpftrace", "openssl", "git",
              "ssh-keygen", "ssh-agent", "node"):
        _tool(t)
    scratch = tmp_path_factory.mktemp("redteam")
    home = scratch / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# test bashrc\n")
    victim = Path("/home") / f"pwrt-{os.getpid()}"
    redteam.make_victim(victim)
    ctx = scratch / "ctx.json"
    ctx.write_text(json.dumps({"scratch": str(scratch), "home": str(home),
                               "victim_home": str(victim)}))
    log = scratch / "log.txt"
    names = ATTACKS + BENIGN
    try:
        r = subprocess.run([sys.executable, "-m", "probewatch", "watch", "--json", "--",
                            sys.executable, str(DRIVER), "--ctx", str(ctx), "--log", str(log),
                            *names], capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(victim, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-3000:]
    pids: dict[int, str] = {}
    out: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        name, pid, rc = line.split()
        pids[int(pid)] = name
        out[name] = {"rc": int(rc), "alerts": []}
    assert sorted(out) == sorted(names), r.stderr[-2000:]
    stray = []
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
    assert len(ATTACKS) >= 40 and len(BENIGN) >= 12
