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

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import need_root  # tests/conftest.py

from .redteam_harness import (
    BEHAVIORS,
    STEMS,
    check_caught,
    check_quiet,
    load_module,
    require_tools,
    run_under_watch,
    split,
    summary,
)

pytestmark = pytest.mark.integration

DRIVER = BEHAVIORS / "redteam.py"
redteam = load_module("pw_redteam", DRIVER)
ATTACKS, BENIGN = split(redteam.VARIANTS)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_root("watch arms BPF programs")
    require_tools("busybox", "perl", "gdb", "gcc", "curl", "wget", "bpftrace", "openssl",
                  "git", "ssh-keygen", "ssh-agent", "node")
    scratch = tmp_path_factory.mktemp("redteam")
    home = scratch / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# test bashrc\n")
    victim = Path("/home") / f"pwrt-{os.getpid()}"
    redteam.make_victim(victim)
    try:
        return run_under_watch(DRIVER, ATTACKS + BENIGN, scratch,
                               {"scratch": str(scratch), "home": str(home),
                                "victim_home": str(victim)})
    finally:
        shutil.rmtree(victim, ignore_errors=True)


@pytest.mark.parametrize("name", ATTACKS)
def test_variant_is_caught(results: dict[str, Any], name: str) -> None:
    check_caught(results, name, set(redteam.VARIANTS[name][1]))


@pytest.mark.parametrize("name", BENIGN)
def test_benign_work_is_quiet(results: dict[str, Any], name: str) -> None:
    check_quiet(results, name)


def test_driver_is_quiet(results: dict[str, Any]) -> None:
    assert results["__stray__"] == [], summary(results["__stray__"])


def test_expected_rules_exist() -> None:
    named = set().union(*(exp for _, exp in redteam.VARIANTS.values()))
    assert named <= STEMS, sorted(named - STEMS)
    assert len(ATTACKS) >= 40 and len(BENIGN) >= 12
