"""Build the C test target (tests/targets/pw_target.c) in the variants the ELF, uprobe
and USDT tests need.

Variants, all in one output directory:

- ``pw_pie``        -O2, PIE, with .symtab and DWARF
- ``pw_nopie``      -O0, non-PIE (ET_EXEC at 0x400000)
- ``pw_stripped``   pw_pie stripped, with ``.gnu_debuglink`` -> ``pw_stripped.debug``
                    (made by ``objcopy --only-keep-debug``) beside it
- ``pw_nodebug``    pw_pie stripped, no debuglink, no debug file anywhere
- ``pw_buildid``    pw_pie stripped, no debuglink; its debug file is only at
                    ``debugroot/.build-id/xx/rest.debug`` (pass ``debug_roots``)
- ``libpw.so``      a shared library (``pw_lib_mul``) that every variant links to

USDT probes come from <sys/sdt.h> (Debian: systemtap-sdt-dev); without it the target
builds with no-op probes and ``has_sdt`` is False.

Use from a test module (pytest puts tests/ on sys.path)::

    from targets.build import build_for_tests

    @pytest.fixture(scope="module")
    def targets(tmp_path_factory):
        return build_for_tests(tmp_path_factory, "targets", require_sdt=True)

or call ``build(tmp_path)`` directly (raises BuildUnavailable without gcc).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCES = ["pw_target.c", "pw_sem.c"]


class BuildUnavailable(RuntimeError):
    """gcc / objcopy / strip are missing: the tests that need the target skip."""


@dataclass
class Targets:
    dir: Path
    pie: Path
    nopie: Path
    stripped: Path
    stripped_debug: Path
    nodebug: Path
    buildid: Path
    debug_root: Path
    lib: Path
    has_sdt: bool

    @property
    def variants(self) -> dict[str, Path]:
        return {
            "pie": self.pie,
            "nopie": self.nopie,
            "stripped": self.stripped,
            "nodebug": self.nodebug,
            "buildid": self.buildid,
        }


def have_sdt() -> bool:
    for inc in ("/usr/include/sys/sdt.h", "/usr/include/x86_64-linux-gnu/sys/sdt.h",
                "/usr/include/aarch64-linux-gnu/sys/sdt.h"):
        if os.path.exists(inc):
            return True
    try:
        r = subprocess.run(
            ["gcc", "-E", "-x", "c", "-", "-o", os.devnull],
            input="#include <sys/sdt.h>\n", capture_output=True, text=True, check=False,
        )
    except OSError:
        return False
    return r.returncode == 0


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")


def build_id(path: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    raise RuntimeError(f"{path} has no build-id note")


def build(out: Path) -> Targets:
    """Compile every variant into ``out`` (created if needed) and return their paths."""
    for tool in ("gcc", "objcopy", "strip", "readelf"):
        if shutil.which(tool) is None:
            raise BuildUnavailable(f"{tool} not found (install gcc and binutils)")
    out.mkdir(parents=True, exist_ok=True)
    sdt = have_sdt()
    defs = ["-DPW_HAVE_SDT"] if sdt else []
    srcs = [str(HERE / s) for s in SOURCES]
    lib = out / "libpw.so"
    _run(["gcc", "-O2", "-g", "-fPIC", "-shared", *defs, "-o", str(lib), str(HERE / "pw_lib.c")])
    link = ["-L", str(out), "-lpw", f"-Wl,-rpath,{out}", "-Wl,--build-id"]
    pie = out / "pw_pie"
    _run(["gcc", "-O2", "-g", "-fPIE", "-pie", *defs, "-I", str(HERE), "-o", str(pie), *srcs,
          *link])
    nopie = out / "pw_nopie"
    _run(["gcc", "-O0", "-g", "-fno-pie", "-no-pie", *defs, "-I", str(HERE), "-o", str(nopie),
          *srcs, *link])
    # stripped + separate debug file found through .gnu_debuglink
    stripped = out / "pw_stripped"
    dbg = out / "pw_stripped.debug"
    _run(["objcopy", "--only-keep-debug", str(pie), str(dbg)])
    shutil.copy2(pie, stripped)
    _run(["strip", "--strip-all", str(stripped)])
    _run(["objcopy", f"--add-gnu-debuglink={dbg}", str(stripped)])
    # stripped without any debug file
    nodebug = out / "pw_nodebug"
    shutil.copy2(pie, nodebug)
    _run(["strip", "--strip-all", str(nodebug)])
    # stripped, debug file only under a build-id tree
    buildid = out / "pw_buildid"
    shutil.copy2(pie, buildid)
    _run(["strip", "--strip-all", str(buildid)])
    bid = build_id(buildid)
    root = out / "debugroot"
    bdir = root / ".build-id" / bid[:2]
    bdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(dbg, bdir / (bid[2:] + ".debug"))
    return Targets(out, pie, nopie, stripped, dbg, nodebug, buildid, root, lib, sdt)


def build_for_tests(
    tmp_path_factory: Any,
    basename: str,
    *,
    skip_unavailable: bool = False,
    require_sdt: bool = False,
    x86_only: str | None = None,
) -> Targets:
    """The body of every test module's ``targets`` fixture.

    Builds into ``tmp_path_factory.mktemp(basename)``. ``x86_only``: skip with that
    reason on other machines. Without gcc/binutils: skip when ``skip_unavailable``
    (a failure all the same under PROBEWATCH_CI: tests/conftest.py ``missing``), else
    fail. ``require_sdt``: fail when <sys/sdt.h> is missing.
    """
    import pytest

    from conftest import missing  # tests/conftest.py

    if x86_only is not None and platform.machine() != "x86_64":
        pytest.skip(x86_only)
    try:
        t = build(tmp_path_factory.mktemp(basename))
    except BuildUnavailable as e:
        if skip_unavailable:
            missing(f"cannot build the test target (apt-get install gcc binutils): {e}")
        pytest.fail(f"cannot build the test target: {e}")
    if require_sdt and not t.has_sdt:
        pytest.fail("<sys/sdt.h> missing: apt-get install systemtap-sdt-dev")
    return t


if __name__ == "__main__":
    import sys
    import tempfile

    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="pwt-"))
    t = build(dest)
    for k, v in t.variants.items():
        print(k, v)
    print("sdt", t.has_sdt)
