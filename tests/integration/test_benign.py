"""Benign work raises no alert with the default rules (tests/behaviors/benign.py).

One ``probewatch watch --json`` run over all workloads: compiling and running a C program
(make and gcc), git commits, pip install of a wheel (with a .pth) into a venv and its
uninstall, pip download from a local index with the login in ~/.netrc (HOME under /home),
a project under /tmp with its own .venv and a git pre-commit hook,
a provisioning script writing ~/.docker/config.json and ~/.git-credentials, tar/gzip of a
directory, an interactive bash session on a pty, a Python test
suite under pytest, read-only admin tools (systemctl, apt-cache, journalctl), pip
unpacking and building a source distribution through a pip #! script, go build/vet with
wget and curl -R from a local web server, ltrace/strace of a freshly built program, a
group-shared git repository (git init --shared, clone, push, gc), and a program built with
-fsanitize=address (LeakSanitizer attaches to it at exit).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import need_root  # tests/conftest.py

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENIGN = ROOT / "tests" / "behaviors" / "benign.py"

_spec = importlib.util.spec_from_file_location("pw_benign", BENIGN)
assert _spec is not None and _spec.loader is not None
benign = importlib.util.module_from_spec(_spec)
sys.modules["pw_benign"] = benign
_spec.loader.exec_module(benign)

NAMES = list(benign.WORKLOADS)


@pytest.fixture(scope="module")
def benign_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_root("watch arms BPF programs")
    base = tmp_path_factory.mktemp("benign")
    venv = base / "venv"
    # made before watch starts: creating the venv is setup, installing into it the workload.
    # --system-site-packages --without-pip: the venv's python runs the installed pip
    # (seconds faster than ensurepip on a loaded machine; pip still installs into the venv)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, stdout=subprocess.DEVNULL)
    work = base / "work"
    work.mkdir()
    log = base / "log.txt"
    cmd = [sys.executable, "-m", "probewatch", "watch", "--json", "--",
           sys.executable, str(BENIGN), "--dir", str(work), "--venv", str(venv),
           "--log", str(log), *NAMES]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    pids: dict[int, str] = {}
    out: dict[str, Any] = {"__other__": {"rc": 0, "alerts": []}}
    for line in log.read_text().splitlines():
        name, pid, rc = line.split()
        pids[int(pid)] = name
        out[name] = {"rc": int(rc), "alerts": []}
    for line in r.stdout.splitlines():
        a = json.loads(line)
        if a.get("type") not in ("alert", "repeat"):
            continue
        chain = [p["pid"] for p in a.get("ancestry", [])] + [a["process"]["pid"]]
        owner = next((pids[p] for p in chain if p in pids), "__other__")
        out[owner]["alerts"].append(a)
    summary = json.loads(r.stderr.strip().splitlines()[-1])["summary"]
    out["__summary__"] = summary
    out["__stderr__"] = r.stderr
    return out


def _show(alerts: list[dict[str, Any]]) -> list[str]:
    return [f"{a['rule']['title']}: {a['process']['command_line']!r} {a.get('matched')}"
            for a in alerts]


@pytest.mark.parametrize("name", NAMES)
def test_benign_workload_raises_no_alert(benign_run: dict[str, Any], name: str) -> None:
    res = benign_run[name]
    assert res["rc"] == 0, f"workload {name} failed: {benign_run['__stderr__'][-2000:]}"
    assert res["alerts"] == [], _show(res["alerts"])


def test_benign_run_saw_the_work_and_lost_nothing(benign_run: dict[str, Any]) -> None:
    assert benign_run["__other__"]["alerts"] == [], _show(benign_run["__other__"]["alerts"])
    s = benign_run["__summary__"]
    assert s["alerts"] == 0
    assert s["lost"] == 0
    # the workloads are real: thousands of events went through the rules
    assert s["events"] > 1000
    assert s["rules"] >= 30
