"""``probewatch list`` on the live kernel and on built ELF targets, checked against the
kernel's own tracefs tree and binutils; ``list probes`` while probes are armed."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from targets.build import build_for_tests

from .helpers import CLI, run_cli, wait_for

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_for_tests(tmp_path_factory, "listtargets", require_sdt=True)


def list_json(*args: str) -> Any:
    r = run_cli("list", *args, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {f[2]: int(f[0], 16) for f in (ln.split() for ln in out.splitlines()) if len(f) == 3}


def objdump_offset(path: Path, name: str) -> int:
    out = subprocess.run(["objdump", "-d", "-F", f"--disassemble={name}", str(path)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(rf"<{re.escape(name)}> \(File Offset: 0x([0-9a-f]+)\):", out)
    assert m, out[:500]
    return int(m.group(1), 16)


# ------------------------------------------------------------------ tracefs lists


def _events_tree(tracefs: str) -> list[str]:
    ev = os.path.join(tracefs, "events")
    return [f"{s}:{n}" for s, n in sorted(
        (s, n) for s in os.listdir(ev) if os.path.isdir(os.path.join(ev, s))
        for n in os.listdir(os.path.join(ev, s)) if os.path.isdir(os.path.join(ev, s, n))
    )]


def test_tracepoints_are_the_kernels(tracefs: str) -> None:
    # others' dynamic events come and go while the suite runs: compare with the tree
    # as it was just before and just after the listing
    for _ in range(5):
        before = _events_tree(tracefs)
        got = [r["event"] for r in list_json("tracepoints")]
        after = _events_tree(tracefs)
        if got in (before, after):
            break
    assert got in (before, after)
    assert "sched:sched_switch" in got and "syscalls:sys_enter_openat" in got
    r = run_cli("list", "tracepoints", "sched:sched_process_ex*")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sched:sched_process_exec\nsched:sched_process_exit\n"


def test_tracepoint_glob_without_match(tracefs: str) -> None:
    r = run_cli("list", "tracepoints", "sched:sched_swich")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith(
        "probewatch: error: no tracepoint matches 'sched:sched_swich' (nearest:"
        " sched:sched_switch")
    assert r.stderr.count("\n") == 1


def test_syscalls_from_formats(tracefs: str) -> None:
    base = os.path.join(tracefs, "events", "syscalls")
    names = sorted(d[len("sys_enter_"):] for d in os.listdir(base)
                   if d.startswith("sys_enter_"))
    rows = list_json("syscalls")
    assert [r["name"] for r in rows] == names
    by = {r["name"]: r for r in rows}
    assert by["openat"]["signature"] == (
        "openat(int dfd, const char *filename, int flags, umode_t mode)")
    assert by["openat"]["ret"] == "long"
    assert by["getppid"]["args"] == []
    with open(os.path.join(base, "sys_enter_openat", "id")) as f:
        assert by["openat"]["id"] == int(f.read())
    r = run_cli("list", "syscalls", "execve")
    assert r.stdout == (
        "execve(const char *filename, const char *const *argv, const char *const *envp)\n")


# --------------------------------------------------------------------- ELF lists


@pytest.mark.parametrize("variant", ["pie", "nopie", "stripped"])
def test_symbols_match_binutils(targets: Any, variant: str) -> None:
    path = targets.variants[variant]
    rows = list_json("symbols", str(path), "pw_*")
    symfile = targets.stripped_debug if variant == "stripped" else path
    addrs = nm(symfile)
    pw = {r["name"]: r for r in rows if r["name"] != "pw_local"}
    known = {"pw_add", "pw_greet", "pw_ifunc", "pw_ifunc_resolver", "pw_many", "pw_sem_fire",
             "pw_sem_local_call"}
    # at -O0 (nopie) the static pw_round is not inlined: one more function
    assert set(pw) == (known | {"pw_round"} if variant == "nopie" else known)
    for name, r in pw.items():
        assert r["address"] == addrs[name], name
    dis = targets.pie if variant == "stripped" else path
    assert pw["pw_add"]["offset"] == objdump_offset(dis, "pw_add")
    assert [r["file"] for r in rows if r["name"] == "pw_local"] == ["pw_target.c", "pw_sem.c"]
    assert {r["from"] for r in rows} == ({"debug"} if variant == "stripped" else {"-"})
    # the text table: a header, then rows whose columns line up with it
    r = run_cli("list", "symbols", str(path), "pw_add")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ADDRESS", "OFFSET", "SIZE", "BIND", "TYPE", "NAME", "FROM"]
    assert lines[1].split()[:2] == [f"0x{pw['pw_add']['address']:x}",
                                    f"0x{pw['pw_add']['offset']:x}"]
    assert lines[1].split()[3:6] == ["GLOBAL", "FUNC", "pw_add"]
    assert lines[0].index("NAME") == lines[1].index("pw_add")
    assert r.stderr.endswith(f"1 function in {path}\n")


def test_symbols_of_libc_by_short_name() -> None:
    from probewatch.elf.libs import find_library

    libc = os.path.realpath(find_library("libc"))
    rows = list_json("symbols", "libc", "getpid")
    # glibc's first symbol version on this architecture (arm64's glibc starts at 2.17)
    base = {"aarch64": "GLIBC_2.17"}.get(platform.machine(), "GLIBC_2.2.5")
    assert [r["name"] for r in rows] == [f"getpid@@{base}"]
    assert rows[0]["path"] == libc
    out = subprocess.run(["readelf", "-sW", "--dyn-syms", libc], capture_output=True,
                         text=True, check=True).stdout
    want = {int(f[1], 16) for f in (ln.split() for ln in out.splitlines())
            if len(f) >= 8 and f[7].split("@")[0] == "getpid"}
    assert want == {rows[0]["address"]}


def test_symbols_of_running_process(targets: Any) -> None:
    q = subprocess.Popen([str(targets.pie), "wait"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert q.stdout and q.stdout.readline() == "ready\n"
        rows = list_json("symbols", "-p", str(q.pid), "libpw", "pw_lib_*")
        assert [r["name"] for r in rows] == ["pw_lib_mul"]
        assert rows[0]["path"] == f"/proc/{q.pid}/root{targets.lib}"
    finally:
        q.kill()
        q.wait()


def test_symbols_errors() -> None:
    r = run_cli("list", "symbols", "/nonexistent/binary")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "probewatch: error: /nonexistent/binary: no such file\n"
    r = run_cli("list", "symbols", "libc", "mallocc")
    assert r.returncode == 1
    assert "no function in" in r.stderr and "nearest: malloc" in r.stderr


def test_usdt_lists_notes(targets: Any) -> None:
    rows = list_json("usdt", str(targets.pie))
    assert [(r["provider"], r["name"]) for r in rows] == [
        ("pwother", "add"), ("pwtest", "add"), ("pwtest", "global"), ("pwtest", "konst"),
        ("pwtest", "twice"), ("pwtest", "twice"), ("pwtest", "withsem")]
    sem = rows[-1]
    assert sem["semaphore"] == nm(targets.pie)["pwtest_withsem_semaphore"]
    assert sem["args"] == ["-4@%edi"]
    out = subprocess.run(["readelf", "-n", str(targets.pie)], capture_output=True, text=True,
                         check=True).stdout
    locs = sorted(int(m, 16) for m in re.findall(r"Location: (0x[0-9a-f]+)", out))
    assert sorted(r["address"] for r in rows) == locs
    r = run_cli("list", "usdt", str(targets.pie), "withsem")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "NAME", "ADDRESS", "SEMAPHORE", "ARGS"]
    assert lines[1].split() == ["pwtest", "withsem", f"0x{sem['address']:x}",
                                f"0x{sem['semaphore']:x}", "-4@%edi"]
    r = run_cli("list", "usdt", str(targets.lib))
    assert r.returncode == 1
    assert r.stderr == (f"probewatch: error: {targets.lib} has no USDT probes"
                        " (no .note.stapsdt section)\n")


# ------------------------------------------------------------------ list probes


def _append(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # never O_TRUNC: it would wipe all
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _armed(tracefs: str, pid: int) -> bool:
    for n in os.listdir(os.path.join(tracefs, "instances")):
        if n.startswith(f"probewatch-{pid}-"):
            try:
                with open(os.path.join(tracefs, "instances", n, "tracing_on")) as f:
                    return f.read().strip() == "1"
            except OSError:
                return False
    return False


def test_probes_shows_owners_targets_and_hits(tracefs: str, targets: Any) -> None:
    ctrl = os.path.join(tracefs, "uprobe_events")
    if not os.path.exists(ctrl):
        pytest.skip("kernel without uprobe_events")
    t = targets.pie
    add_off = objdump_offset(t, "pw_add")
    foreign = f"pwlisttest_{os.getpid()}/foreign_add"
    specs = [f"u:{t}:pw_add a=arg0:s32", f"ur:{t}:pw_greet s=+0(retval):string",
             f"U:{t}:pwtest:withsem"]
    p = subprocess.Popen([*CLI, "trace", "--json", *specs, "-d", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"probewatch_{dead.pid}/stale_add"
    try:
        assert wait_for(lambda: p.poll() is not None or _armed(tracefs, p.pid))
        assert p.poll() is None, p.communicate()
        _append(ctrl, f"p:{foreign} {t}:0x{add_off:x}\n")
        _append(ctrl, f"p:{stale} {t}:0x{add_off:x}\n")
        subprocess.run([str(t), "2"], check=True, capture_output=True)
        rows = list_json("probes")
        text = run_cli("list", "probes").stdout
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)
        for ev in (foreign, stale):
            try:
                _append(ctrl, f"-:{ev}\n")
            except OSError:
                pass  # the stale one may have been swept by a concurrent probewatch run
    assert p.returncode == 0
    by = {r["event"]: r for r in rows}
    mine = [r for r in rows if r["group"] == f"probewatch_{p.pid}"]
    assert sorted(r["kind"] for r in mine) == ["uprobe", "uprobe", "uretprobe"]
    for r in mine:
        assert (r["owner_pid"], r["owner_alive"]) == (p.pid, True)
        assert r["owner_comm"] and r["owner"] == f"{p.pid} ({r['owner_comm']})"
        assert r["path"] == str(t)
    [add] = [r for r in mine if r["name"].startswith("pw_add_")]
    assert (add["offset"], add["args"], add["hits"]) == (add_off, ["a=%di:s32"], 2)
    [greet] = [r for r in mine if r["name"].startswith("pw_greet_")]
    assert greet["args"] == ["s=+0($retval):string"] and greet["hits"] == 2
    [sem] = [r for r in mine if r["name"].startswith("pwtest_withsem_")]
    [note] = [n for n in list_json("usdt", str(t)) if n["name"] == "withsem"]
    assert (sem["offset"], sem["ref_ctr_offset"]) == (note["offset"], note["semaphore_offset"])
    f = by[foreign]
    assert (f["kind"], f["owner"], f["owner_pid"], f["hits"]) == ("uprobe", "unknown", None, 0)
    if stale in by:  # unless a concurrent probewatch run swept it first
        assert (by[stale]["owner_alive"], by[stale]["owner"]) == (False, f"{dead.pid} (dead)")
    # the text table has the same rows
    assert text.splitlines()[0].split() == ["KIND", "EVENT", "TARGET", "HITS", "OWNER", "ARGS"]
    assert any(ln.split()[:4] == ["uprobe", foreign, f"{t}:0x{add_off:x}", "0"]
               and "unknown" in ln for ln in text.splitlines())
    # after the run: nothing of that probewatch process is listed
    assert not [r for r in list_json("probes") if r["group"] == f"probewatch_{p.pid}"]
