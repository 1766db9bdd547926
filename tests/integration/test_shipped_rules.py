"""Every shipped rule against the real behaviour, under ``probewatch watch --json``.

tests/behaviors/run.py performs each technique (and a near miss for each) in its own
forked child; two watch runs (the positives, then the near misses) keep the total time
low. An alert belongs to a behaviour when the behaviour's pid is in its ancestry.
Each positive must raise exactly the expected rules, with the rules' ATT&CK techniques;
each near miss must raise nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import build_c, kernel_lacks, need_root  # tests/conftest.py

from .redteam_harness import BEHAVIORS, RULES_DIR, load_module

pytestmark = pytest.mark.integration

BEHAVIORS_DIR = BEHAVIORS
_load = load_module


behaviors = _load("pw_behaviors", BEHAVIORS_DIR / "run.py")

POSITIVE = sorted(n for n, (_, exp) in behaviors.BEHAVIORS.items() if exp)
NEGATIVE = sorted(n for n, (_, exp) in behaviors.BEHAVIORS.items() if not exp)


def rule_meta() -> dict[str, dict[str, Any]]:
    """file stem -> {id, techniques} of the alerting (first) rule of each file."""
    out = {}
    for p in sorted(RULES_DIR.glob("*.yml")):
        doc = next(yaml.safe_load_all(p.read_text()))
        techs = sorted(t[7:].upper() for t in doc.get("tags", [])
                       if t.startswith("attack.t") and t[8:9].isdigit())
        out[p.stem] = {"id": doc["id"], "techniques": techs}
    return out


RULES = rule_meta()
STEM_BY_ID = {m["id"]: stem for stem, m in RULES.items()}


def _needs_root() -> None:
    need_root("watch arms BPF programs")


@pytest.fixture(scope="module")
def ctx_file(tmp_path_factory: pytest.TempPathFactory) -> Any:
    _needs_root()
    built = build_c("behave", src=BEHAVIORS_DIR / "behave.c")
    # the behaviours run from an installed-program location: a checkout under /tmp (as
    # CI's may be) would make every near miss of a compiled program a "runs from a
    # temporary directory" case
    bindir = Path(f"/opt/probewatch-tests-{os.getpid()}")
    bindir.mkdir(exist_ok=True)
    behave = bindir / "behave"
    shutil.copy2(built, behave)
    scratch = tmp_path_factory.mktemp("behaviors")
    home = scratch / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# test bashrc\n")
    (home / ".bash_history").write_text("ls\n")
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    empty_c = scratch / "empty.c"
    empty_c.write_text("int pw_empty;\n")
    preload = scratch / "libpwempty.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(preload), str(empty_c)], check=True)
    victim = Path("/home") / f"pwtest-{os.getpid()}"
    (victim / ".ssh").mkdir(parents=True)
    (victim / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n")
    (victim / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAfake pw@test\n")
    (victim / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAfake pw@test\n")
    ctx = scratch / "ctx.json"
    ctx.write_text(json.dumps({
        "behave": str(behave), "scratch": str(scratch), "home": str(home),
        "site": str(site), "preload": str(preload), "victim_home": str(victim),
    }))
    try:
        yield ctx
    finally:
        shutil.rmtree(victim, ignore_errors=True)
        shutil.rmtree(bindir, ignore_errors=True)


def watch_behaviors(ctx: Path, names: list[str], capture: Path | None = None
                    ) -> dict[str, Any]:
    """Run NAMES under watch; {name: {"rc": int, "alerts": [alert, ...]}}."""
    log = ctx.parent / f"log-{names[0]}.txt"
    cmd = [sys.executable, "-m", "probewatch", "watch", "--json",
           *(["-o", str(capture)] if capture else []), "--",
           sys.executable, str(BEHAVIORS_DIR / "run.py"), "--ctx", str(ctx), "--log",
           str(log), *names]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    pids: dict[int, str] = {}
    out: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        name, pid, rc = line.split()
        pids[int(pid)] = name
        out[name] = {"rc": int(rc), "alerts": []}
    assert sorted(out) == sorted(names), f"behaviours missing from the log: {r.stderr[-2000:]}"
    stray = []
    for line in r.stdout.splitlines():
        a = json.loads(line)
        if a.get("type") not in ("alert", "repeat"):
            continue
        chain = [p["pid"] for p in a.get("ancestry", [])] + [a["process"]["pid"]]
        owner = next((pids[p] for p in chain if p in pids), None)
        if owner is None:
            stray.append(a)
        else:
            out[owner]["alerts"].append(a)
    out["__stray__"] = stray
    out["__stderr__"] = r.stderr
    out["__stdout__"] = r.stdout
    out["__capture__"] = capture
    return out


@pytest.fixture(scope="module")
def positives(ctx_file: Path) -> dict[str, Any]:
    return watch_behaviors(ctx_file, POSITIVE, capture=ctx_file.parent / "positives.db")


@pytest.fixture(scope="module")
def negatives(ctx_file: Path) -> dict[str, Any]:
    return watch_behaviors(ctx_file, NEGATIVE)


def _summary(alerts: list[dict[str, Any]]) -> list[str]:
    return [f"{STEM_BY_ID.get(a['rule']['id'], a['rule']['id'])}: "
            f"{a['process']['command_line']!r} {a.get('matched')}" for a in alerts]


def _traced(syscall: str) -> bool:
    from probewatch.detect.pipeline import needed_syscalls

    return syscall in needed_syscalls()


@pytest.mark.parametrize("name", POSITIVE)
def test_behavior_raises_its_rule(positives: dict[str, Any], name: str) -> None:
    expected = behaviors.BEHAVIORS[name][1]
    if "kernel_module_load_syscall" in expected and not _traced("finit_module"):
        kernel_lacks("init_module/finit_module tracepoints "
                     "(CONFIG_MODULES=n): module-load syscalls cannot be traced here")
    res = positives[name]
    assert res["rc"] == 0, f"behaviour {name} failed"
    got = {STEM_BY_ID.get(a["rule"]["id"], a["rule"]["id"]) for a in res["alerts"]}
    assert got == set(expected), _summary(res["alerts"])
    for a in res["alerts"]:
        stem = STEM_BY_ID[a["rule"]["id"]]
        assert sorted(a["rule"]["techniques"]) == RULES[stem]["techniques"]
        assert a["level"] in ("low", "medium", "high", "critical")


@pytest.mark.parametrize("name", NEGATIVE)
def test_near_miss_raises_nothing(negatives: dict[str, Any], name: str) -> None:
    res = negatives[name]
    assert res["rc"] == 0, f"behaviour {name} failed"
    assert res["alerts"] == [], _summary(res["alerts"])


def test_runs_raise_nothing_outside_the_behaviours(positives: dict[str, Any],
                                                   negatives: dict[str, Any]) -> None:
    # the driver itself (python, its listener) must stay quiet
    assert positives["__stray__"] == [], _summary(positives["__stray__"])
    assert negatives["__stray__"] == [], _summary(negatives["__stray__"])


def test_every_shipped_rule_has_a_behaviour() -> None:
    # the red-team variants (tests/integration/test_redteam_variants.py and
    # test_redteam2_variants.py) count too
    redteam = _load("pw_redteam_variants", BEHAVIORS_DIR / "redteam.py")
    redteam2 = _load("pw_redteam2_variants", BEHAVIORS_DIR / "redteam2.py")
    variants = {**redteam.VARIANTS, **redteam2.VARIANTS}
    covered = set().union(*(exp for _, exp in behaviors.BEHAVIORS.values()),
                          *(exp for _, exp in variants.values()))
    assert covered == set(RULES), sorted(set(RULES) ^ covered)
    benign = [n for n, (_, exp) in variants.items() if not exp]
    assert len(NEGATIVE) + len(benign) >= len(RULES) * 3 // 4


def _alert_keys(stdout: str) -> list[tuple[str, int, str]]:
    keys = []
    for line in stdout.splitlines():
        a = json.loads(line)
        if a.get("type") in ("alert", "repeat"):
            keys.append((a["rule"]["id"], a["process"]["pid"], a["type"]))
    return sorted(keys)


def test_replay_of_the_capture_raises_the_same_alerts(positives: dict[str, Any]) -> None:
    cap = positives["__capture__"]
    r = subprocess.run([sys.executable, "-m", "probewatch", "watch", "--json", "--replay",
                        str(cap)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    live = _alert_keys(positives["__stdout__"])
    assert len(live) >= len(POSITIVE)
    assert _alert_keys(r.stdout) == live
