"""Shared test fixtures: tracefs, built C targets, and the no-leftovers check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROGS = HERE / "integration" / "progs"
BUILD = HERE / "targets" / "bin"


def _is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the leftover check must run after everything else
    last = [i for i in items if "test_zz_nothing_left" in i.nodeid]
    rest = [i for i in items if "test_zz_nothing_left" not in i.nodeid]
    items[:] = rest + last


@pytest.fixture(scope="session")
def tracefs() -> str:
    if not _is_root():
        pytest.skip("needs root: tracefs is root-only")
    from probewatch.kernel.tracefs import tracefs_root

    return tracefs_root()


@pytest.fixture(scope="session")
def bpf() -> None:
    """The eBPF backend: root and a kernel that loads our programs (else skipped, saying
    what is missing)."""
    if not _is_root():
        pytest.skip("needs root: BPF and tracefs")
    from probewatch.bpf_session import bpf_available

    ok, why = bpf_available()
    if not ok:
        pytest.skip(f"BPF backend unavailable: {why}")


def build_c(name: str, *extra: str, src: Path | None = None) -> Path:
    """Compile tests/integration/progs/NAME.c (once per session) into tests/targets/bin."""
    BUILD.mkdir(parents=True, exist_ok=True)
    src = src or PROGS / f"{name}.c"
    out = BUILD / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            pytest.fail("gcc is needed to build test targets (apt-get install gcc)")
        subprocess.run([cc, "-O1", "-o", str(out), str(src), *extra], check=True)
    return out


@pytest.fixture(scope="session")
def getppid_n() -> Path:
    return build_c("getppid_n")
