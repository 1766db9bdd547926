"""Ordinary work that must raise no alert with the default rules.

Run under ``probewatch watch --json -- python benign.py --dir DIR --venv VENV --log LOG
NAME...``; each workload runs in its own forked child and ``NAME PID RC`` goes to LOG.
DIR is a scratch directory (under /tmp, as a developer's would be), VENV a virtual
environment made beforehand whose python can run pip.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forked import run_each  # noqa: E402

PY = sys.executable


def _run(argv: list[str], **kw: object) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120, **kw)  # type: ignore[call-overload]


def c_program(d: Path, venv: Path) -> None:
    src = d / "cprog"
    src.mkdir()
    (src / "hello.c").write_text(
        '#include <stdio.h>\n#include <string.h>\n'
        'int main(int c, char **v) { printf("%zu\\n", strlen(v[0])); return c - 1; }\n')
    (src / "Makefile").write_text("hello: hello.c\n\tcc -O2 -Wall -o hello hello.c\n")
    _run(["make", "-s"], cwd=src)
    _run(["./hello"], cwd=src)
    _run(["gcc", "-g", "-o", "hello2", "hello.c"], cwd=src)
    _run([str(src / "hello2")])


def git_commit(d: Path, venv: Path) -> None:
    repo = d / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "pw", "GIT_AUTHOR_EMAIL": "pw@example.com",
           "GIT_COMMITTER_NAME": "pw", "GIT_COMMITTER_EMAIL": "pw@example.com",
           "HOME": str(d)}
    _run(["git", "init", "-q"], cwd=repo, env=env)
    (repo / "README").write_text("hello\n")
    _run(["git", "add", "README"], cwd=repo, env=env)
    _run(["git", "commit", "-q", "-m", "first"], cwd=repo, env=env)
    (repo / "README").write_text("hello again\n")
    _run(["git", "commit", "-q", "-am", "second"], cwd=repo, env=env)
    _run(["git", "log", "--oneline"], cwd=repo, env=env)
    _run(["git", "status", "--short"], cwd=repo, env=env)


def git_shared_repo(d: Path, venv: Path) -> None:
    """A repository shared by a group: git makes its directories setgid."""
    env = {**os.environ, "HOME": str(d), "GIT_AUTHOR_NAME": "pw",
           "GIT_AUTHOR_EMAIL": "pw@example.com", "GIT_COMMITTER_NAME": "pw",
           "GIT_COMMITTER_EMAIL": "pw@example.com"}
    bare = d / "shared.git"
    _run(["git", "init", "-q", "--bare", "--shared=group", str(bare)], env=env)
    if not (bare / "objects").stat().st_mode & 0o2000:
        raise RuntimeError("git did not make the shared repository's directories setgid")
    work = d / "shared-work"
    _run(["git", "clone", "-q", str(bare), str(work)], env=env)
    (work / "README").write_text("shared\n")
    _run(["git", "add", "README"], cwd=work, env=env)
    _run(["git", "commit", "-q", "-m", "first"], cwd=work, env=env)
    _run(["git", "push", "-q", "origin", "HEAD"], cwd=work, env=env)
    _run(["git", "gc", "-q"], cwd=bare, env=env)


def project_in_tmp(d: Path, venv: Path) -> None:
    """A project checked out under /tmp, as CI does: its own .venv (uv's and poetry's
    default name) runs the tests, and a git pre-commit hook runs on commit."""
    proj = d / "ciproj"
    proj.mkdir()
    _run([PY, "-m", "venv", "--system-site-packages", "--without-pip", str(proj / ".venv")])
    # unittest: the .venv sees the base interpreter's packages, which may lack pytest
    (proj / "test_it.py").write_text("import unittest\n\n\nclass T(unittest.TestCase):\n"
                                     "    def test_it(self):\n"
                                     "        self.assertEqual(1 + 1, 2)\n")
    _run([str(proj / ".venv" / "bin" / "python"), "-m", "unittest", "-q", "test_it"],
         cwd=proj)
    env = {**os.environ, "HOME": str(d), "GIT_AUTHOR_NAME": "pw",
           "GIT_AUTHOR_EMAIL": "pw@example.com", "GIT_COMMITTER_NAME": "pw",
           "GIT_COMMITTER_EMAIL": "pw@example.com"}
    _run(["git", "init", "-q"], cwd=proj, env=env)
    hook = proj / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\necho ran > {d / 'hook-ran'}\n")
    hook.chmod(0o755)
    _run(["git", "add", "test_it.py"], cwd=proj, env=env)
    _run(["git", "commit", "-q", "-m", "tests"], cwd=proj, env=env)
    if not (d / "hook-ran").exists():
        raise RuntimeError("git did not run the pre-commit hook")


def _wheel(d: Path) -> Path:
    """A tiny pure-Python wheel that ships a .pth file, as many real packages do."""
    whl = d / "pwbenign-1.0-py3-none-any.whl"
    files = {
        "pwbenign/__init__.py": "VALUE = 42\n",
        "pwbenign-path.pth": "\n",
        "pwbenign-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pwbenign\nVersion: 1.0\n",
        "pwbenign-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: pw\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + "pwbenign-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for n, t in files.items():
            z.writestr(n, t)
        z.writestr("pwbenign-1.0.dist-info/RECORD", record)
    return whl


def pip_install(d: Path, venv: Path) -> None:
    whl = _wheel(d)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
          str(whl)], env=env)
    if not list(venv.glob("lib/python*/site-packages/pwbenign-path.pth")):
        raise RuntimeError("pip did not install into the venv")
    _run([str(venv / "bin" / "python"), "-c", "import pwbenign; assert pwbenign.VALUE == 42"])
    _run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "pwbenign"],
         env=env)


def pip_private_index(d: Path, venv: Path) -> None:
    """pip downloads from a (local) package index with ~/.netrc holding the index's login,
    as pip documents for private indexes; HOME is a directory under /home like a user's."""
    import shutil

    index = d / "index"
    (index / "pwbenign").mkdir(parents=True)
    shutil.copy(_wheel(d), index / "pwbenign")
    home = Path(f"/home/pw-benign-{os.getpid()}")
    home.mkdir(mode=0o700)
    srv = subprocess.Popen([PY, "-u", "-m", "http.server", "-b", "127.0.0.1", "0", "-d",
                            str(index)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        (home / ".netrc").write_text("machine 127.0.0.1 login pw password not-a-secret\n")
        (home / ".netrc").chmod(0o600)
        assert srv.stdout is not None
        port = srv.stdout.readline().split(" port ")[1].split()[0]
        env = {**os.environ, "HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_NO_INPUT": "1"}
        _run([str(venv / "bin" / "python"), "-m", "pip", "download", "-q", "--no-deps",
              "-d", str(d / "downloads"), "--index-url", f"http://127.0.0.1:{port}/",
              "pwbenign"], env=env)
        if not list((d / "downloads").glob("pwbenign-1.0-*.whl")):
            raise RuntimeError("pip did not download from the index")
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(home)


def credentials_setup(d: Path, venv: Path) -> None:
    """A provisioning script writes a user's Docker and git logins (HOME under /home), then
    git uses the stored login."""
    import json
    import shutil

    home = Path(f"/home/pw-benign-{os.getpid()}")
    home.mkdir(mode=0o700)
    try:
        (home / ".docker").mkdir()
        (home / ".docker" / "config.json").write_text(
            json.dumps({"auths": {"registry.example.invalid": {"auth": "cHc6eA=="}}}))
        (home / ".git-credentials").write_text("https://pw:x@git.example.invalid\n")
        env = {**os.environ, "HOME": str(home)}
        _run(["git", "config", "--global", "credential.helper", "store"], env=env)
        r = subprocess.run(["git", "credential", "fill"], env=env, capture_output=True,
                           text=True, timeout=60,
                           input="protocol=https\nhost=git.example.invalid\n\n")
        if "password=x" not in r.stdout:
            raise RuntimeError(f"git did not find the stored login: {r.stderr[-300:]}")
    finally:
        shutil.rmtree(home)


def tar_gzip(d: Path, venv: Path) -> None:
    src = d / "tree"
    for i in range(20):
        p = src / f"sub{i % 4}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("data\n" * (i + 1))
    _run(["tar", "czf", str(d / "tree.tgz"), "-C", str(d), "tree"])
    out = d / "untar"
    out.mkdir()
    _run(["tar", "xzf", str(d / "tree.tgz"), "-C", str(out)])
    _run(["gzip", "-k", str(src / "sub0" / "f0.txt")])
    _run(["gunzip", "-f", str(src / "sub0" / "f0.txt.gz")])
    _run(["cp", "-a", str(src), str(d / "tree-copy")])


def interactive_bash(d: Path, venv: Path) -> None:
    """bash -i on a pseudo-terminal, driven like a person would type."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["HOME"] = str(d)
        os.execv("/bin/bash", ["bash", "--norc", "-i"])
    script = (b"cd /tmp\nls > /dev/null\necho $((6*7))\nx=$(date +%s)\n"
              b"for i in 1 2 3; do echo $i; done\ncat /etc/hostname\nexit\n")
    os.write(fd, script)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                if not os.read(fd, 4096):
                    break
            except OSError:
                break
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("bash -i failed")


def python_tests(d: Path, venv: Path) -> None:
    t = d / "suite"
    t.mkdir()
    (t / "test_sample.py").write_text(
        "import subprocess, sys, tempfile, os\n"
        "def test_math():\n    assert sum(range(10)) == 45\n"
        "def test_tmp(tmp_path):\n    (tmp_path / 'x').write_text('y')\n"
        "    assert (tmp_path / 'x').read_text() == 'y'\n"
        "def test_subprocess():\n"
        "    assert subprocess.run([sys.executable, '-c', 'print(1)'],"
        " capture_output=True).stdout == b'1\\n'\n")
    # its own --basetemp: pytest's default one would prune other runs' temp directories
    _run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={t / 'tmp'}",
          str(t)], cwd=t)


_BACKEND = """\
import zipfile

FILES = {"pwsdist/__init__.py": "VALUE = 7\\n",
         "pwsdist-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: pwsdist\\n"
                                          "Version: 1.0\\n",
         "pwsdist-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: pw\\n"
                                       "Root-Is-Purelib: true\\nTag: py3-none-any\\n"}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "pwsdist-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel_directory + "/" + name, "w") as z:
        for n, t in FILES.items():
            z.writestr(n, t)
        z.writestr("pwsdist-1.0.dist-info/RECORD",
                   "".join(n + ",,\\n" for n in FILES) + "pwsdist-1.0.dist-info/RECORD,,\\n")
    return name
"""


def sdist_build(d: Path, venv: Path) -> None:
    """pip unpacks and builds a source distribution (a stdlib-only in-tree PEP 517 backend:
    offline, no setuptools/wheel version needed), run through a pip #! script."""
    import io
    import tarfile

    sdist = d / "pwsdist-1.0.tar.gz"
    files = {"pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                               'backend-path = ["."]\n',
             "backend.py": _BACKEND,
             "PKG-INFO": "Metadata-Version: 2.1\nName: pwsdist\nVersion: 1.0\n",
             "pwsdist/__init__.py": "VALUE = 7\n"}
    with tarfile.open(sdist, "w:gz") as t:
        for n, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"pwsdist-1.0/{n}")
            info.size, info.mtime = len(data), 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    # the venv's pip as a #! script, as people type it: Image is the script, not python
    pip = venv / "bin" / "pip"
    pip.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom pip._internal.cli.main "
                   "import main\nsys.exit(main())\n")
    pip.chmod(0o755)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    _run([str(pip), "install", "-q", "--no-index", "--no-build-isolation", str(sdist)],
         env=env, cwd=d)
    _run([str(venv / "bin" / "python"), "-c", "import pwsdist; assert pwsdist.VALUE == 7"],
         cwd=d)
    _run([str(pip), "uninstall", "-q", "-y", "pwsdist"], env=env)


def go_and_download(d: Path, venv: Path) -> None:
    """go build / vet (build cache in DIR), then wget and curl from a local web server."""
    g = d / "gohello"
    g.mkdir()
    (g / "main.go").write_text('package main\n\nimport "fmt"\n\n'
                               'func main() { fmt.Println("hi") }\n')
    (g / "go.mod").write_text("module hello\n\ngo 1.19\n")
    env = {**os.environ, "GOCACHE": str(d / "gocache"), "GOPATH": str(d / "gopath"),
           "HOME": str(d), "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    _run(["go", "build", "-o", "hello", "."], cwd=g, env=env)
    _run([str(g / "hello")])
    _run(["go", "vet", "."], cwd=g, env=env)
    www = d / "www"
    www.mkdir()
    (www / "notes.txt").write_text("release notes\n")
    srv = subprocess.Popen([PY, "-u", "-m", "http.server", "-b", "127.0.0.1", "0", "-d", str(www)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert srv.stdout is not None
        port = srv.stdout.readline().split(" port ")[1].split()[0]  # "Serving HTTP on ... port N"
        url = f"http://127.0.0.1:{port}/notes.txt"
        _run(["wget", "-q", "-O", str(d / "notes-wget.txt"), url])
        _run(["curl", "-fsS", "-R", "-o", str(d / "notes-curl.txt"), url])
        if (d / "notes-wget.txt").read_text() != "release notes\n":
            raise RuntimeError("wget did not download")
    finally:
        srv.terminate()
        srv.wait()


def ltrace_debug(d: Path, venv: Path) -> None:
    """Build a program and look at it with ltrace and strace."""
    src = d / "dbg"
    src.mkdir()
    (src / "t.c").write_text("#include <stdlib.h>\n#include <string.h>\n"
                             "int main(void) { char *p = malloc(16); strcpy(p, \"x\"); "
                             "free(p); return 0; }\n")
    _run(["gcc", "-g", "-O0", "-o", "t", "t.c"], cwd=src)
    _run(["ltrace", "-o", str(d / "ltrace.out"), "./t"], cwd=src)
    _run(["strace", "-f", "-o", str(d / "strace.out"), "./t"], cwd=src)
    if "malloc" not in (d / "ltrace.out").read_text():
        raise RuntimeError("ltrace saw no malloc")


def admin_tools(d: Path, venv: Path) -> None:
    _run(["systemctl", "--version"])
    _run(["apt-cache", "policy", "bash"])
    _run(["journalctl", "-n", "5", "--no-pager"])


WORKLOADS: dict[str, Callable[[Path, Path], None]] = {
    "c_program": c_program,
    "git_commit": git_commit,
    "git_shared_repo": git_shared_repo,
    "project_in_tmp": project_in_tmp,
    "pip_install": pip_install,
    "pip_private_index": pip_private_index,
    "credentials_setup": credentials_setup,
    "tar_gzip": tar_gzip,
    "interactive_bash": interactive_bash,
    "python_tests": python_tests,
    "admin_tools": admin_tools,
    "sdist_build": sdist_build,
    "go_and_download": go_and_download,
    "ltrace_debug": ltrace_debug,
}


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("names", nargs="+")
    a = ap.parse_args(argv)
    run_each(a.names, lambda n: WORKLOADS[n](Path(a.dir), Path(a.venv)), a.log)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
