"""The README's install step works with only the system python3 (PEP 668), twice.

From a clean clone of this repository's HEAD: the install step of the README's first
command, with PATH limited to the system directories (no pyenv) and the venv and the
``probewatch`` symlink in a temporary directory; then that ``probewatch doctor``.
A second run, with this process's own PATH (where a pyenv python3 may come first),
must be quick and change nothing. Needs the package index (pip caches help).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from conftest import missing, need_root  # tests/conftest.py

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _readme_install_step(readme: str) -> list[str]:
    """The first '&&' part of the Quick start's command 1 (the install step)."""
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln.strip() for ln in block.splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    assert len(commands) == 2, f"Quick start must have two commands: {commands}"
    step = shlex.split(commands[0].split("&&", 1)[0])
    assert step[:2] == ["bash", "scripts/install.sh"], step
    return step


def _readme_main_job(readme: str) -> list[str]:
    """What command 1 runs after the install step (the main job)."""
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    first = next(ln.strip() for ln in block.splitlines()
                 if ln.strip() and not ln.strip().startswith("#"))
    return shlex.split(first.split("&&", 1)[1])


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (mtime_ns, size) of everything under root (symlinks not followed)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mtime_ns, st.st_size)
    return out


def _env(path: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV", "PIP_"))}
    env.update(PATH=path, PROBEWATCH_VENV=str(tmp / "venv"),
               PROBEWATCH_BIN=str(tmp / "bin" / "probewatch"))
    return env


def test_install_from_clean_clone_with_system_python(tmp_path: Path) -> None:
    need_root("scripts/install.sh installs Debian packages")
    if not os.access("/usr/bin/python3", os.X_OK):
        missing("no system /usr/bin/python3 here (.ci/run makes its venv from it)")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    step = _readme_install_step((clone / "README.md").read_text())
    assert "--break-system-packages" not in (clone / "scripts/install.sh").read_text()

    env = _env(SYSTEM_PATH, tmp_path)
    r = subprocess.run(step, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "externally-managed-environment" not in r.stderr

    venv, link = tmp_path / "venv", tmp_path / "bin" / "probewatch"
    assert os.readlink(link) == str(venv / "bin" / "probewatch")
    # the venv is the system python's, and probewatch is this clone's (editable)
    cfg = (venv / "pyvenv.cfg").read_text()
    assert re.search(r"^home = /usr/bin$", cfg, re.M), cfg
    r = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                        "import probewatch; print(probewatch.__file__)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == str(clone / "src" / "probewatch" / "__init__.py")

    # `probewatch doctor` from PATH, as the README's next command runs it
    env_bin = dict(env, PATH=f"{link.parent}:{SYSTEM_PATH}")
    r = subprocess.run(["probewatch", "doctor"], env=env_bin, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("probewatch doctor: kernel "), r.stdout
    rows = dict(re.findall(r"^(tracepoints|tracefs)\s+(yes|no)\b", r.stdout, re.M))
    assert rows == {"tracefs": "yes", "tracepoints": "yes"}, r.stdout
    # the README's main job from that install (bounded here by -d): the shipped rules
    # load in the venv's python (pySigma installed there) and watch runs and ends cleanly
    job = _readme_main_job((clone / "README.md").read_text())
    assert job[:2] == ["probewatch", "watch"], job
    r = subprocess.run([*job, "-d", "2"], env=env_bin, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.search(r"^watch: (\d+) events, (\d+) alerts .* lost (\d+), (\d+) rules", r.stderr,
                  re.M)
    assert m, r.stderr
    assert int(m.group(4)) >= 30, r.stderr  # the shipped rules

    # again, now with this process's PATH (a pyenv python3 may be first): nothing changes
    before = _snapshot(venv)
    link_before = os.lstat(link)
    t = time.monotonic()
    r = subprocess.run(step, cwd=clone, env=_env(os.environ.get("PATH", SYSTEM_PATH), tmp_path),
                       capture_output=True, text=True, timeout=600)
    took = time.monotonic() - t
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pip install" not in r.stderr and "recreating" not in r.stderr, r.stderr
    assert took < 10, f"second run took {took:.1f}s"
    assert _snapshot(venv) == before
    after = os.lstat(link)
    assert (after.st_ino, after.st_mtime_ns) == (link_before.st_ino, link_before.st_mtime_ns)
