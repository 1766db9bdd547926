"""probewatch ltrace against ltrace itself, on a small target that makes known calls."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import PROGS, build_c
from tests.integration.helpers import run_cli

pytestmark = pytest.mark.integration

# the calls compared with ltrace (every argument an input: ltrace shows output
# buffers after the return, a uretprobe cannot see them)
FUNCS = ("malloc+calloc+realloc+free+strlen+printf+puts+open+close+setenv+getenv+atoi"
         "+strcmp+memset+access+fflush+strcpy")
ADDR = re.compile(r"0x[0-9a-f]{5,}")


@pytest.fixture(scope="module")
def lcalls() -> Path:
    return build_c("lcalls", "-O0", "-fno-builtin")


def _norm(text: str) -> list[str]:
    """The program's own calls, with heap/stack/library addresses masked (they differ
    from run to run), a call interrupted by a nested one joined back into one line.

    libc's calls through its own PLT are left out: ltrace names some of them after
    the wrong stub (``calloc(0, 360)`` in setenv is realloc's stub, as objdump labels
    it; tests/unit/test_plt.py checks our names against objdump's).
    """
    out: list[str] = []
    opened: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("libc.so.6->"):
            continue
        line = ADDR.sub("ADDR", line)
        if line.endswith(" <unfinished ...>"):
            head = line[: -len(" <unfinished ...>")]
            opened[head.split("->", 1)[1].split("(", 1)[0]] = head
            continue
        if line.startswith("<... "):
            name = line[5:].split(" ", 1)[0]
            ret = line.split(" = ", 1)[1]
            head = opened.pop(name) + ")"
            line = f"{head:<48} = {ret}" if len(head) < 48 else f"{head} = {ret}"
        out.append(line)
    assert not opened
    return out


def test_same_lines_as_ltrace(tracefs: str, lcalls: Path, tmp_path: Path) -> None:
    ltrace = shutil.which("ltrace")
    if ltrace is None:
        pytest.fail("ltrace is needed (apt-get install ltrace; scripts/install.sh does)")
    ref = tmp_path / "ltrace.txt"
    r = subprocess.run([ltrace, "-e", FUNCS, "-o", str(ref), str(lcalls)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr  # ltrace does not pass the status on
    mine = tmp_path / "pw.txt"
    p = run_cli("ltrace", "-e", FUNCS, "-o", str(mine), "--", str(lcalls))
    assert p.returncode == 3, p.stderr
    want = _norm(ref.read_text())
    got = _norm(mine.read_text())
    assert got == want
    # and the values themselves, not only agreement
    assert 'lcalls->printf("%s %zu %d %c %x\\n", "hello", 5, -42, \'q\', 0x1000)' in got[3]
    assert got[-1] == "+++ exited (status 3) +++"
    assert any(line.startswith('lcalls->getenv("PW_LCALLS_UNSET_NAME")') and
               line.endswith("= nil") for line in got)


def test_json_and_attach_by_pid(tracefs: str, lcalls: Path) -> None:
    proc = subprocess.Popen([str(lcalls), "loop"])
    try:
        p = run_cli("ltrace", "-p", str(proc.pid), "-e", "getppid", "--json", "-d", "1.5")
        assert p.returncode == 0, p.stderr
        calls = [json.loads(line) for line in p.stdout.splitlines()]
        # ~100 calls a second; the first half second may go into arming
        assert len(calls) >= 20, p.stderr
        for c in calls:
            assert (c["function"], c["caller"], c["pid"]) == ("getppid", "lcalls", proc.pid)
            assert c["ret"] == os.getpid()  # the loop's parent is this test
            assert c["call"] == "getppid()" and c["return"] == str(os.getpid())
            assert 0 < c["duration_ns"] < 1_000_000_000
        assert proc.poll() is None  # attaching did not stop or kill it
        summ = json.loads(p.stderr.strip().splitlines()[-1])["summary"]
        assert summ["calls"] == len(calls) and summ["lost"] == 0
    finally:
        proc.kill()
        proc.wait()


def test_summary_counts_exact(tracefs: str, lcalls: Path) -> None:
    p = run_cli("ltrace", "-c", "-e", "malloc+free", "--", str(lcalls), "count", "1234")
    assert p.returncode == 0, p.stderr
    rows = {line.split()[-1]: line.split() for line in p.stdout.splitlines()
            if line[:1].isdigit() or line.startswith(" ")}
    assert rows["malloc"][3] == "1234" and rows["free"][3] == "1234"
    assert rows["total"][-2] == "2468"


def test_errors(tracefs: str, lcalls: Path) -> None:
    p = run_cli("ltrace", "-e", "no_such_function_xyz", "--", str(lcalls))
    assert p.returncode == 1
    assert "no_such_function_xyz" in p.stderr and "matches none" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_cli("ltrace", "--", "/nonexistent/prog")
    assert p.returncode != 0 and "/nonexistent/prog" in p.stderr
    p = run_cli("ltrace")
    assert p.returncode == 1 and "give either -p PID or -- COMMAND" in p.stderr
    # a statically linked program has no PLT: one line that says so
    static = build_c("lcalls_static", "-static", src=PROGS / "lcalls.c")
    p = run_cli("ltrace", "--", str(static))
    assert p.returncode == 1 and "no PLT stubs" in p.stderr, p.stderr


# bash's test builtin returns to a __sigsetjmp through longjmp on a syntax error
LONGJMP_LOOP = "for i in $(seq 300); do [ x -gt 1 ] 2>/dev/null; done; echo survived"


def test_every_bash_import_harms_no_bash(tracefs: str, tmp_path: Path) -> None:
    """Every import of a real program (bash: ~220, __sigsetjmp among them), while
    another bash, not traced, longjmps back into its setjmp hundreds of times: a
    uretprobe there would have it killed with SIGILL (uprobes are per file)."""
    stop = tmp_path / "stop"
    other = subprocess.Popen(
        ["bash", "-c", f"n=0; until [ -e {stop} ]; do [ x -gt 1 ] 2>/dev/null; "
         "n=$((n+1)); done; [ $n -gt 0 ] && echo survived"],
        stdout=subprocess.PIPE, text=True)
    try:
        p = run_cli("ltrace", "-c", "--", "/bin/bash", "-c",
                    f"echo hi; type ls >/dev/null; {LONGJMP_LOOP}")
    finally:
        stop.touch()
    out, _ = other.communicate(timeout=120)
    assert (other.returncode, out) == (0, "survived\n")
    assert p.returncode == 0, p.stderr
    assert "hi" in p.stdout and "survived" in p.stdout
    rows = [line.split() for line in p.stdout.splitlines() if line.split()[-1:] != ["total"]
            and line[:1] in " 0123456789"]
    assert {r[-1] for r in rows} >= {"strlen", "malloc", "__sigsetjmp"}
    assert f"probewatch_{p.pid}/" not in Path(tracefs, "uprobe_events").read_text()


def test_prototypes_from_dwarf(tracefs: str, tmp_path: Path) -> None:
    """A library built with -g: its functions' arguments typed from DWARF; the same
    program with the library stripped: ltrace's default rendering."""
    lib = tmp_path / "libpwl.so"
    subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", "-o", str(lib),
                    str(PROGS / "lcalls_lib.c")], check=True)
    main = tmp_path / "main"
    subprocess.run(["gcc", "-O0", "-o", str(main), str(PROGS / "lcalls_main.c"),
                    f"-L{tmp_path}", "-lpwl", f"-Wl,-rpath,{tmp_path}"], check=True)
    p = run_cli("ltrace", "-e", "pwl_*", "--", str(main))
    assert p.returncode == 0, p.stderr
    assert _norm(p.stdout) == [
        'main->pwl_greet("world", 3)                      = "world"',
        'main->pwl_greet("x", -2)                         = "none"',
        "main->pwl_sum('A', -5, -70000, 5000000000)       = 4999930060",
        "main->pwl_note(0, 7)                             = <void>",
        "main->pwl_vsum(2)                                = 2",
        "+++ exited (status 0) +++",
    ]
    subprocess.run(["strip", "--strip-debug", str(lib)], check=True)
    p = run_cli("ltrace", "-e", "pwl_greet", "--", str(main))
    assert p.returncode == 0, p.stderr
    assert _norm(p.stdout)[0].split() == ["main->pwl_greet(ADDR,", "3,", "ADDR,", "ADDR)",
                                          "=", "ADDR"]
