"""probewatch mallocs on a target that allocates known sizes from known call sites."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.conftest import build_c
from tests.integration.helpers import CLI, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target() -> Path:
    return build_c("mallocs_target", "-O0", "-fno-omit-frame-pointer", "-fno-builtin")


def _bucket(snap: dict, lo: int) -> int:
    return next((b["count"] for b in snap["hist"] if b["lo"] == lo), 0)


def _check_exact(snap: dict, pid: int, alone: bool = True) -> None:
    """``alone``: the target made every allocation (not a shell before it exec'd it)."""
    # histogram: each size's log2 bucket counted exactly (see mallocs_target.c)
    assert _bucket(snap, 4096) == 1000            # churn: 5000
    assert _bucket(snap, 32768) == 3              # aligned: 40000
    assert _bucket(snap, 65536) == 10             # grow: 100000
    assert _bucket(snap, 262144) == 7             # arrays: calloc(300, 1000)
    assert _bucket(snap, 1 << 21) == 1            # resize: 3000000
    assert _bucket(snap, 1 << 22) == 1            # resize: 5000000
    if alone:
        assert snap["outstanding"] == {"bytes": 7_620_000, "count": 19}
    top = [(s["bytes"], s["count"], s["pid"], [f["symbol"] for f in s["stack"][:2]],
            s["stack"][0]["module"]) for s in snap["top"]
           if s["stack"] and s["stack"][0]["module"] == "mallocs_target"]
    assert top == [
        (5_000_000, 1, pid, ["resize", "main"], "mallocs_target"),
        (1_500_000, 5, pid, ["arrays", "main"], "mallocs_target"),
        (1_000_000, 10, pid, ["grow", "main"], "mallocs_target"),
        (120_000, 3, pid, ["aligned", "main"], "mallocs_target"),
    ]
    assert snap["stats"]["failed"] == 0 and snap["stats"]["full"] == 0


def test_exact_sizes_and_call_sites(bpf: None, target: Path) -> None:
    p = run_cli("mallocs", "--json", "--", str(target))
    assert p.returncode == 0, p.stderr
    [snap] = [json.loads(line) for line in p.stdout.splitlines()]
    assert snap["final"] is True
    # the command's pid: the only pid in the sites
    pid = snap["top"][0]["pid"]
    _check_exact(snap, pid)
    assert snap["stats"]["frees"] == 1003  # churn 1000, arrays 2, realloc's old block


def test_attach_by_pid_and_interval(bpf: None, target: Path) -> None:
    """Attached to a running process (a shell that execs the target when told to):
    what it allocates from then on counts, reported every interval."""
    proc = subprocess.Popen(["sh", "-c", f"read x; exec {target} wait"],
                            stdin=subprocess.PIPE)
    try:
        mon = subprocess.Popen(
            [*CLI, "mallocs",
             "-p", str(proc.pid), "--json", "-i", "0.5", "-d", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert mon.stdout is not None
        first = json.loads(mon.stdout.readline())  # the first interval: armed by now
        assert first["final"] is False and first["stats"]["calls"] == 0
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        out, err = mon.communicate(timeout=60)
        assert mon.returncode == 0, err
        snaps = [first] + [json.loads(line) for line in out.splitlines()]
        assert snaps[-1]["final"] is True and len(snaps) >= 4
        _check_exact(snaps[-1], proc.pid, alone=False)
        assert proc.poll() is None  # still paused: watching did not disturb it
    finally:
        proc.kill()
        proc.wait()


def test_text_report_and_errors(bpf: None, target: Path) -> None:
    p = run_cli("mallocs", "--top", "2", "--", str(target))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].endswith("1022 allocation calls (0 failed), 1003 frees of tracked blocks")
    assert any(line.split() == ["4096", "->", "8191", ":", "1000",
                                "|****************************************|"]
               for line in lines)
    assert "7620000 bytes in 19 allocations not freed before the end; top 2 call sites:" \
        in p.stdout
    assert "\t5000000 bytes in 1 allocations from pid" in p.stdout
    assert "\t\tresize+0x" in p.stdout
    p = run_cli("mallocs")
    assert p.returncode == 1 and "give either -p PID or -- COMMAND" in p.stderr
    p = run_cli("mallocs", "--backend", "ftrace", "--", str(target))
    assert p.returncode == 2  # not a choice: the aggregation needs BPF


def test_program_mmaps_with_mmap_option(bpf: None, target: Path) -> None:
    """--mmap: the program's own anonymous mmaps count, munmap frees them, and the
    allocator's internal mmaps (glibc maps the 3 and 5 MB blocks) are not counted twice."""
    p = run_cli("mallocs", "--json", "--mmap", "1048576", "--", str(target))
    assert p.returncode == 0, p.stderr
    [snap] = [json.loads(line) for line in p.stdout.splitlines()]
    assert snap["outstanding"] == {"bytes": 7_620_000 + 2 * (8 << 20), "count": 21}
    top = snap["top"][0]
    assert (top["bytes"], top["count"]) == (2 * (8 << 20), 2)
    # taken in the syscall: the innermost frame is libc's mmap wrapper, which keeps no
    # frame pointer, so the walk goes from it to main (maps's own frame is skipped)
    assert top["stack"][0]["module"] == "libc.so.6"
    assert "main" in [f["symbol"] for f in top["stack"][:3]]
    assert _bucket(snap, 8 << 20) == 3  # three mmap calls of 8 MiB
