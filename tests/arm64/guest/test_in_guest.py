"""The arm64 set: run INSIDE the arm64 guest (tests/arm64/test_arm64.py starts it).

Each test runs probewatch the way a user would (``python3 -m probewatch ...``) on the
arm64 kernel, against ``pw_arm`` (tests/arm64/pw_arm.c, cross-compiled on the host;
its path comes in ``PW_ARM``), and checks exact values. On other machines this
directory is not collected (tests/arm64/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.arm64

TRACEFS = "/sys/kernel/tracing"
MISSING = "/nonexistent/pw-arm"


def _target() -> str:
    p = os.environ.get("PW_ARM", "")
    if not p or not Path(p).is_file():
        pytest.fail(f"PW_ARM={p!r}: the cross-compiled target is missing")
    return p


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probewatch", *args], capture_output=True,
                          text=True, timeout=timeout)


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary(err: str) -> dict[str, Any]:
    for line in reversed(err.splitlines()):
        if line.startswith('{"summary"'):
            return dict(json.loads(line)["summary"])
    raise AssertionError(f"no summary line in:\n{err}")


def test_machine_and_objects() -> None:
    from probewatch.collect.bpf.loader import machine, object_bytes, syscall_table

    assert os.uname().machine == "aarch64"
    assert machine() == "arm64"
    assert object_bytes("syscalls")[:4] == b"\x7fELF"
    t = syscall_table()
    # the generic table: openat/newfstatat/clone, no open/stat/fork
    assert (t.by_name["openat"].nr, t.by_name["newfstatat"].nr, t.by_name["clone"].nr,
            t.by_name["getppid"].nr, t.by_name["execve"].nr) == (56, 79, 220, 173, 221)
    assert not {"open", "stat", "fork", "vfork"} & set(t.by_name)
    # every syscall tracepoint of this kernel has a number in the built table
    names = {d.name[len("sys_enter_"):] for d in os.scandir(f"{TRACEFS}/events/syscalls")
             if d.name.startswith("sys_enter_")}
    assert len(names) > 250
    from probewatch.decode.syscalls import _FORMAT_ALIAS

    assert names - set(t.by_name) - set(_FORMAT_ALIAS.values()) == set()
    # tracepoints under the kernel's own name, shown under the table's (as strace does)
    for name in ("fstat", "uname", "personality", "umount2", "sendfile", "fadvise64"):
        assert t.by_name[name].known and t.by_name[name].args, name


def test_doctor() -> None:
    r = cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    by = {row["name"]: row for row in json.loads(r.stdout)}
    for name in ("tracepoints", "syscall tracepoints", "uprobe_events", "kprobe_events",
                 "perf uprobe PMU", "BPF", "BPF tracepoint programs", "BPF kprobe programs",
                 "BPF ring buffer map", "BTF"):
        assert by[name]["available"], by[name]
    assert by["BPF kprobe programs"]["detail"].endswith("(kprobes and uprobes)")


def test_tracepoint_exact_count() -> None:
    # counted on raw tracepoints (collect/bpf/count.py): entries by ctx args, exits by
    # pt_regs->syscallno, a sched tracepoint by its own raw tracepoint
    r = cli("trace", "--count", "--json", "t:syscalls:sys_enter_getppid",
            "t:syscalls:sys_exit_getppid", "t:sched:sched_process_exit",
            "--", _target(), "getppid", "57")
    assert r.returncode == 0, r.stderr
    s = summary(r.stderr)
    assert s["events"] == {"t:syscalls:sys_enter_getppid": 57,
                           "t:syscalls:sys_exit_getppid": 57,
                           "t:sched:sched_process_exit": 1}, s
    assert s["lost"] == 0
    assert s["counted_by"] in ("tp_btf", "raw_tp"), s


@pytest.mark.parametrize("backend", ["ftrace", "bpf"])
def test_uprobe_uretprobe_arguments(backend: str) -> None:
    t = _target()
    entry = f"u:{t}:pw_arm_add a=arg0:s32 b=arg1:s64 s=arg2:string"
    ret = f"ur:{t}:pw_arm_add r=retval:s64"
    r = cli("trace", "--json", "--backend", backend, entry, ret, "--", t, "add", "3")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    got = [(e["probe"], {k: v for k, v in e["fields"].items() if not k.startswith("__")})
           for e in evs]
    want: list[tuple[str, dict[str, Any]]] = []
    for k in range(3):
        b = -k * 1000000007
        want.append((entry, {"a": k, "b": b, "s": f"arm-{k}"}))
        want.append((ret, {"r": k + b + len(f"arm-{k}")}))
    assert got == want
    assert "add 3 sum -3000000003" in r.stdout


def test_usdt_memory_and_register_operands() -> None:
    t = _target()
    from probewatch.elf.usdt import read_usdt_probes

    notes = {n.name: n for n in read_usdt_probes(t)}
    # gcc's arm64 operand forms: [sp, N] memory operands and a register
    hit = notes["hit"]
    assert [(a.kind, a.register, a.size, a.signed) for a in hit.args] == [
        ("mem", "sp", 4, True), ("mem", "sp", 8, True), ("mem", "sp", 8, False)], hit
    assert [re.sub(r"\d+\]$", "N]", a.text) for a in hit.args] == [
        "-4@[sp, N]", "-8@[sp, N]", "8@[sp, N]"], hit.args_text
    [total] = notes["total"].args
    assert (total.kind, total.size, total.signed) == ("reg", 8, True), total
    assert re.fullmatch(r"-8@x(19|2[0-8])", total.text), total
    hit_spec = f"U:{t}:pwarm:hit k=arg0:s32 big=arg1:s64 s=arg2:string"
    r = cli("trace", "--json", hit_spec, f"U:{t}:pwarm:total", "--", t, "add", "3")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    hits = [{k: v for k, v in e["fields"].items() if not k.startswith("__")}
            for e in evs if e["probe"] == hit_spec]
    assert hits == [{"k": k, "big": -k * 1000000007, "s": f"arm-{k}"} for k in range(3)]
    totals = [e["fields"]["arg0"] for e in evs if e["probe"] == f"U:{t}:pwarm:total"]
    assert totals == [-3000000003]


def test_kprobe_kretprobe() -> None:
    t = _target()
    entry = "k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring"
    ret = "kr:do_sys_openat2 ret=retval:s64"
    r = cli("trace", "--json", entry, ret, "--", t, "open", MISSING)
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    seq = [(e["probe"], e["fields"].get("dfd"), e["fields"].get("name"), e["fields"].get("ret"))
           for e in evs]
    i = seq.index((entry, -100, MISSING, None))
    assert seq[i + 1] == (ret, None, None, -2)  # ENOENT
    assert seq[i + 2] == (entry, -100, "/", None)
    assert seq[i + 3][0] == ret and seq[i + 3][3] >= 0


def test_syscalls_string_arguments_bpf() -> None:
    t = _target()
    r = cli("syscalls", "--", t, "open", MISSING)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines() + r.stderr.splitlines()
    assert (f'openat(AT_FDCWD, "{MISSING}", O_RDONLY|O_CLOEXEC) = -1 ENOENT '
            "(No such file or directory)") in lines, "\n".join(lines)
    # the open flags arm64 numbers differently from x86_64 (in strace's order)
    dirs = [ln for ln in lines if ln.startswith('openat(AT_FDCWD, "/", ')]
    assert len(dirs) == 1 and dirs[0].startswith(
        'openat(AT_FDCWD, "/", O_RDONLY|O_NOFOLLOW|O_CLOEXEC|O_DIRECTORY) = '), dirs
    stat = [ln for ln in lines if ln.startswith(f'newfstatat(AT_FDCWD, "{MISSING}", 0x')]
    assert len(stat) == 1 and stat[0].endswith(", 0) = -1 ENOENT (No such file or directory)")
    assert not [ln for ln in lines if ln.startswith(("open(", "stat(", "fork("))]


def test_execsnoop_bpf() -> None:
    r = cli("execsnoop", "--json", "--", "/bin/sh", "-c", "/bin/true pw-arm-exec 1; exit 0")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    got = [(e["fields"]["filename"], e["fields"]["argv"], e["fields"]["nr"], e["fields"]["ret"])
           for e in evs]
    assert got == [
        ("/bin/sh", ["/bin/sh", "-c", "/bin/true pw-arm-exec 1; exit 0"], 221, 0),
        ("/bin/true", ["/bin/true", "pw-arm-exec", "1"], 221, 0),
    ]
    assert evs[1]["fields"]["ppid"] == evs[0]["pid"]


def test_watch_raises_shipped_rule() -> None:
    # history_clear_command.yml: a process_creation rule on the exec record's argv (the
    # guest has no google-re2, which the rules with regular expressions need)
    import probewatch.detect

    rule = Path(probewatch.detect.__file__).parent / "rules" / "history_clear_command.yml"
    # the one shipped rule (loading all of them costs ~20 s of this emulated CPU)
    r = cli("watch", "--json", "--no-default-rules", "--rules", str(rule), "--",
            "/bin/sh", "-c", "unset HISTFILE; exit 0")
    assert r.returncode == 0, r.stderr
    alerts = [a for a in json_lines(r.stdout) if a.get("type") == "alert"]
    title = "Shell History Cleared, Disabled Or Shredded On A Command Line"
    assert [a["rule"]["title"] for a in alerts] == [title], r.stdout
    s = summary(r.stderr)
    assert (s["backend"], s["alerts"], s["lost"]) == ("bpf", 1, 0)


def test_library_inside_apk_bpf() -> None:
    # Android's layout: lib/arm64-v8a/libpwapk.so stored page-aligned in an APK that
    # the loader maps from (built on the host: tests/arm64/build.py, tests/android/)
    a = json.loads(os.environ.get("PW_APK") or "null") or pytest.fail("PW_APK is not set")
    from probewatch.cli.list import symbol_rows

    target = f"{a['apk']}!/{a['entry']}"
    path, [row], _ = symbol_rows(target, "pw_apk_add")  # what `list symbols` prints
    assert path == target
    assert (row["offset"], row["elf_offset"]) == (a["data_offset"] + a["elf_offset"],
                                                  a["elf_offset"])
    entry = f"u:{target}:pw_apk_add a=arg0:s32 b=arg1:s64 s=arg2:string"
    ret = f"ur:{target}:pw_apk_add r=retval:s64"
    r = cli("trace", "--json", "--backend", "bpf", entry, ret, "--", a["loader"], a["apk"],
            str(a["map_offset"]), str(a["map_len"]), str(a["func_delta"]), "2")
    assert r.returncode == 0, r.stderr
    got = [(e["probe"], {k: v for k, v in e["fields"].items() if not k.startswith("__")})
           for e in json_lines(r.stdout)]
    assert got == [(entry, {"a": 0, "b": 0, "s": "apk-0"}), (ret, {"r": 5}),
                   (entry, {"a": 1, "b": -1000000007, "s": "apk-1"}),
                   (ret, {"r": -1000000001})]


def test_nothing_left() -> None:
    dyn = Path(f"{TRACEFS}/dynamic_events").read_text()
    assert "probewatch" not in dyn
    assert not [n for n in os.listdir(f"{TRACEFS}/instances") if n.startswith("probewatch")]
