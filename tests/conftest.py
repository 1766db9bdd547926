"""Shared test fixtures: tracefs, built C targets, and the no-leftovers check.

Skips have two kinds, and only one of them may hide on CI:

* ``kernel_lacks(feature)``: the running kernel does not offer a feature (kprobes, a
  tracepoint, BTF, ...). Always a skip, whose reason names the feature.
* ``missing(what)``: something the installation provides is absent: root, a tool or
  header that ``WITH_TESTS=1 scripts/install.sh`` installs (bpftool, trace-cmd, strace,
  binutils, gcc, <sys/sdt.h>, libbpf), a committed ``.bpf.o`` or a Python package of the
  ``test`` extra. A skip on a developer's machine; a FAILURE when ``PROBEWATCH_CI`` is set
  (scripts/test.sh sets it: it has just installed all of these).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

HERE = Path(__file__).resolve().parent
PROGS = HERE / "integration" / "progs"
BUILD = HERE / "targets" / "bin"

#: set by scripts/test.sh: whatever scripts/install.sh installs must be here
CI = os.environ.get("PROBEWATCH_CI", "") not in ("", "0")


def _hypothesis_profiles() -> None:
    """Hypothesis on a shared 2-core machine: no per-example deadline anywhere (a busy
    neighbour is not a failure); on CI (PROBEWATCH_CI or CI set) derandomized as well,
    so a run is reproducible. Tests that set their own settings() inherit these."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the tests that use it fail with the import error
        return
    slow = [HealthCheck.too_slow]
    settings.register_profile("dev", deadline=None, suppress_health_check=slow)
    settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                              suppress_health_check=slow)
    settings.load_profile("ci" if CI or os.environ.get("CI") else "dev")


_hypothesis_profiles()


def missing(what: str) -> NoReturn:
    """An installed dependency is absent: skip here, fail under PROBEWATCH_CI."""
    if CI:
        pytest.fail(f"{what} -- PROBEWATCH_CI is set and scripts/install.sh (WITH_TESTS=1) "
                    "provides it, so its absence is a failure, not a skip", pytrace=False)
    pytest.skip(what)


def kernel_lacks(feature: str) -> NoReturn:
    """The running kernel does not offer FEATURE: a skip (also on CI) that names it."""
    pytest.skip(f"kernel lacks {feature}")


def need_tool(name: str, package: str | None = None) -> str:
    """The path of NAME on PATH (a tool scripts/install.sh installs), else missing()."""
    path = shutil.which(name)
    if not path:
        missing(f"{name} not installed (apt-get install {package or name})")
    return path


def need_root(why: str = "tracing") -> None:
    if os.geteuid() != 0:
        missing(f"needs root: {why}")


def need_module(name: str) -> None:
    """A Python package of the ``test`` extra (pyproject.toml), else missing()."""
    import importlib

    try:
        importlib.import_module(name)
    except ImportError as e:
        missing(f"Python package {name} not installed (pip install -e '.[test]'): {e}")


#: features.check() rows the BPF backend needs from the kernel (not the installation)
BPF_KERNEL_FEATURES = ("BPF", "BPF tracepoint programs", "BPF ring buffer map", "BTF")


def require_bpf() -> None:
    """The BPF backend is usable: kernel rows missing -> kernel_lacks; libbpf or the
    committed .bpf.o missing -> missing() (a failure on CI)."""
    need_root("BPF and tracefs")
    from probewatch.collect.bpf import libbpf
    from probewatch.collect.bpf.loader import object_bytes
    from probewatch.errors import ProbewatchError
    from probewatch.kernel.features import check

    for name in BPF_KERNEL_FEATURES:
        f = check(name)
        if not f.available:
            kernel_lacks(f"{name}: {f.reason}")
    try:
        libbpf.lib()
    except ProbewatchError as e:
        missing(f"libbpf unusable (apt-get install libbpf1): {e}")
    try:
        object_bytes("syscalls")
    except ProbewatchError as e:
        missing(f"committed BPF object missing: {e}")
    from probewatch.bpf_session import bpf_available

    ok, why = bpf_available()
    assert ok, f"every part of the BPF backend is present but bpf_available() says: {why}"


#: the top-level tracefs settings when the suite started (tests/integration/
#: test_zz_nothing_left.py checks the suite left them so): files a test that runs another
#: tracer (trace-cmd) might change
TOP_LEVEL_FILES = ("tracing_on", "current_tracer", "trace_clock", "buffer_size_kb",
                   "set_event", "set_event_pid")
TOP_AT_START: dict[str, str] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    # a suite started in the background of a non-interactive shell (`cmd &`, nohup)
    # inherits SIGINT ignored, and so would every probewatch it starts: the tests that
    # send ^C would see it ignored. Python's own handler is what a terminal run has.
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(root, "tracing_on")):
            for f in TOP_LEVEL_FILES:
                try:
                    with open(os.path.join(root, f)) as fh:
                        TOP_AT_START[f] = fh.read()
                except OSError:
                    pass
            break


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # everything under tests/integration/ arms real probes: `-m "not integration"` leaves
    # it out even where a file forgets its pytestmark
    for i in items:
        if "integration" in Path(str(i.path)).relative_to(HERE).parts[:1]:
            i.add_marker(pytest.mark.integration)
    # the leftover check must run after everything else
    last = [i for i in items if "test_zz_nothing_left" in i.nodeid]
    rest = [i for i in items if "test_zz_nothing_left" not in i.nodeid]
    items[:] = rest + last


@pytest.fixture(scope="session")
def tracefs() -> str:
    need_root("tracefs is root-only")
    from probewatch.kernel.tracefs import tracefs_root

    return tracefs_root()


@pytest.fixture(scope="session")
def bpf() -> None:
    """The eBPF backend: root and a kernel that loads our programs (else skipped, saying
    which kernel feature is missing; a missing libbpf or .bpf.o fails on CI)."""
    require_bpf()


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


def default_version(lib: str, name: str) -> str:
    """NAME's default symbol version in LIB as binutils' readelf shows it (``GLIBC_2.2.5``
    on x86_64, ``GLIBC_2.17`` on arm64): the libc on disk says, not the test."""
    import re

    readelf = need_tool("readelf", "binutils")
    out = subprocess.run([readelf, "--dyn-syms", "-W", lib], capture_output=True, text=True,
                         check=True).stdout
    found = set(re.findall(rf"\s{re.escape(name)}@@(\S+)$", out, re.M))
    assert len(found) == 1, f"{name}@@VERSION in {lib}: {found}"
    return found.pop()
