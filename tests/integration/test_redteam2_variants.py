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

DRIVER = BEHAVIORS / "redteam2.py"
redteam = load_module("pw_redteam2", DRIVER)
ATTACKS, BENIGN = split(redteam.VARIANTS)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_root("watch arms BPF programs")
    require_tools("busybox", "perl", "gcc", "curl", "wget", "ssh", "ssh-keygen", "setcap",
                  "unshare", "nsenter", "find", "touch", "tar", "chroot", "systemctl")
    scratch = tmp_path_factory.mktemp("redteam2")
    home = scratch / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# test bashrc\n")
    victim = scratch / "victim"
    victim.mkdir()
    return run_under_watch(DRIVER, ATTACKS + BENIGN, scratch,
                           {"scratch": str(scratch), "home": str(home),
                            "victim_home": str(victim)})


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
    assert len(ATTACKS) >= 20 and len(BENIGN) >= 8
