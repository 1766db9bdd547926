"""probewatch list: row builders on recorded tracefs text and on built ELF targets.

No root needed: tracefs is a directory tree made in tmp_path from recorded files
(tests/fixtures/formats), the ELF rows come from tests/targets/build.py.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from probewatch.cli import list as pwlist
from probewatch.cli.main import main
from probewatch.errors import FeatureUnavailable, NotFound
from targets.build import build_for_tests

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "formats"


# ------------------------------------------------------------------ fake tracefs


def _fake_tracefs(root: Path) -> Path:
    """events/ with the recorded formats, plus a few bare event directories."""
    ev = root / "events"
    for sysdir in FIXTURES.iterdir():
        for f in sysdir.glob("*.format"):
            d = ev / sysdir.name / f.stem
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, d / "format")
    (ev / "header_page").write_text("")  # files directly under events/ are not systems
    (ev / "enable").write_text("0\n")
    (ev / "syscalls" / "enable").write_text("0\n")
    (root / "trace").write_text("")
    return root


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return _fake_tracefs(tmp_path / "tracing")


def test_tracepoints_all_sorted(fake_root: Path) -> None:
    rows = pwlist.tracepoint_rows(str(fake_root))
    events = [r["event"] for r in rows]
    assert events == sorted(events)
    assert "sched:sched_switch" in events
    assert "syscalls:sys_enter_openat" in events
    assert not [e for e in events if e.endswith(":enable") or e.startswith("header")]
    r = rows[events.index("sched:sched_switch")]
    assert r == {"event": "sched:sched_switch", "system": "sched", "name": "sched_switch"}


@pytest.mark.parametrize(
    "glob, expected",
    [
        ("sched:sched_process_e*", ["sched:sched_process_exec", "sched:sched_process_exit"]),
        ("sched", ["sched:sched_process_exec", "sched:sched_process_exit",
                   "sched:sched_process_fork", "sched:sched_switch"]),
        ("*openat", ["syscalls:sys_enter_openat", "syscalls:sys_exit_openat"]),
        ("s*:sys_exit_*", ["syscalls:sys_exit_getppid", "syscalls:sys_exit_openat"]),
        ("ipi:ipi_send_cpumask", ["ipi:ipi_send_cpumask"]),
    ],
)
def test_tracepoint_globs(fake_root: Path, glob: str, expected: list[str]) -> None:
    assert [r["event"] for r in pwlist.tracepoint_rows(str(fake_root), glob)] == expected


def test_tracepoint_glob_without_match_names_nearest(fake_root: Path) -> None:
    with pytest.raises(NotFound) as ei:
        pwlist.tracepoint_rows(str(fake_root), "sched:sched_swich")
    assert str(ei.value).startswith(
        "no tracepoint matches 'sched:sched_swich' (nearest: sched:sched_switch")


# ---------------------------------------------------------------------- syscalls


def test_syscall_signature_from_formats() -> None:
    enter = (FIXTURES / "syscalls" / "sys_enter_openat.format").read_text()
    exit_ = (FIXTURES / "syscalls" / "sys_exit_openat.format").read_text()
    row = pwlist.syscall_signature(enter, exit_)
    assert row == {
        "name": "openat",
        "args": [
            {"name": "dfd", "type": "int"},
            {"name": "filename", "type": "const char *"},
            {"name": "flags", "type": "int"},
            {"name": "mode", "type": "umode_t"},
        ],
        "ret": "long",
        "signature": "openat(int dfd, const char *filename, int flags, umode_t mode)",
        "enter": "syscalls:sys_enter_openat",
        "exit": "syscalls:sys_exit_openat",
        "id": 782,
    }


def test_syscall_rows(fake_root: Path) -> None:
    rows = pwlist.syscall_rows(str(fake_root))
    assert [r["signature"] for r in rows] == [
        "getppid()",
        "lseek(unsigned int fd, off_t offset, unsigned int whence)",
        "openat(int dfd, const char *filename, int flags, umode_t mode)",
    ]
    assert [r["ret"] for r in rows] == ["long", None, "long"]  # no sys_exit_lseek recorded
    assert [r["name"] for r in pwlist.syscall_rows(str(fake_root), "*at")] == ["openat"]
    with pytest.raises(NotFound, match="no syscall matches 'opn'"):
        pwlist.syscall_rows(str(fake_root), "opn")


def test_syscalls_missing_says_why(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    with pytest.raises(FeatureUnavailable, match="CONFIG_FTRACE_SYSCALLS"):
        pwlist.syscall_rows(str(tmp_path))


# ---------------------------------------------------------------- probe lines


def test_parse_uprobe_with_semaphore() -> None:
    line = ("p:probewatch_42/pwtest_withsem_0 /tmp/t/pw_pie:0x0000000000001433(0x3068)"
            " arg0=%di:s32")
    r = pwlist.parse_probe_line(line, "uprobe_events")
    assert r == {
        "kind": "uprobe",
        "group": "probewatch_42",
        "name": "pwtest_withsem_0",
        "event": "probewatch_42/pwtest_withsem_0",
        "target": "/tmp/t/pw_pie:0x1433(0x3068)",
        "path": "/tmp/t/pw_pie",
        "offset": 0x1433,
        "ref_ctr_offset": 0x3068,
        "maxactive": None,
        "args": ["arg0=%di:s32"],
        "definition": line,
    }


def test_parse_uretprobe_in_dynamic_events() -> None:
    r = pwlist.parse_probe_line(
        "r:probewatch_7/readline_0 /usr/bin/bash:0x00000000000c6c20 line=+0($retval):string"
    )
    assert (r["kind"], r["path"], r["offset"], r["args"]) == (
        "uretprobe", "/usr/bin/bash", 0xC6C20, ["line=+0($retval):string"])


@pytest.mark.parametrize(
    "line, control, kind, target, maxactive, args",
    [
        ("p:kprobes/myopen do_sys_openat2+0 dfd=%di:s32", "kprobe_events", "kprobe",
         "do_sys_openat2+0", None, ["dfd=%di:s32"]),
        ("r10:kprobes/myret do_sys_openat2 ret=$retval:s64", "dynamic_events", "kretprobe",
         "do_sys_openat2", 10, ["ret=$retval:s64"]),
        ("p:g/ext ext4:ext4_sync_file+0", "dynamic_events", "kprobe", "ext4:ext4_sync_file+0",
         None, []),
        ("e:eprobes/open syscalls/sys_enter_openat file=+0($filename):ustring",
         "dynamic_events", "eprobe", "syscalls/sys_enter_openat", None,
         ["file=+0($filename):ustring"]),
        ("f:fprobes/vr vfs_read count=count", "dynamic_events", "fprobe", "vfs_read", None,
         ["count=count"]),
        ("f:fprobes/vr_exit vfs_read%return ret=$retval", "dynamic_events", "fexit",
         "vfs_read%return", None, ["ret=$retval"]),
        ("t:tracepoints/sw sched_switch", "dynamic_events", "tprobe", "sched_switch", None, []),
        ("s:synthetic/wakeup_lat u64 lat; pid_t pid", "dynamic_events", "synthetic", None,
         None, ["u64 lat", "pid_t pid"]),
    ],
)
def test_parse_other_dynamic_events(
    line: str, control: str, kind: str, target: str | None, maxactive: int | None,
    args: list[str],
) -> None:
    r = pwlist.parse_probe_line(line, control)
    assert (r["kind"], r["target"], r["maxactive"], r["args"]) == (kind, target, maxactive,
                                                                    args)
    assert r["event"] == line.split()[0].split(":", 1)[1]


def test_parse_rejects_non_definitions() -> None:
    for bad in ("", "   ", "hello world", "p:/x y"):
        with pytest.raises(ValueError):
            pwlist.parse_probe_line(bad)


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_probe_rows_owners_and_hits(tmp_path: Path) -> None:
    me = os.getpid()
    dead = _dead_pid()
    up = [
        f"p:probewatch_{me}/pw_add_0 /t/pw_pie:0x0000000000001380 a=%di:s32",
        f"r:probewatch_{dead}/getpid_0 /lib/libc.so.6:0x00000000000d54e0",
        "p:someone/probe /t/pw_pie:0x0000000000001380",
    ]
    kp = ["r16:kprobes/open_ret do_sys_openat2 ret=$retval:s64"]
    (tmp_path / "uprobe_events").write_text("\n".join(up) + "\n")
    (tmp_path / "kprobe_events").write_text("\n".join(kp) + "\n")
    (tmp_path / "dynamic_events").write_text(
        "\n".join(up + kp + ["s:synthetic/lat u64 lat"]) + "\n")
    (tmp_path / "uprobe_profile").write_text(
        "  /t/pw_pie pw_add_0                                      5\n"
        "  /lib/libc.so.6 getpid_0                                 0\n"
        "  /t/pw_pie probe                                         7\n")
    (tmp_path / "kprobe_profile").write_text("  open_ret   3   1\n")
    rows = pwlist.probe_rows(str(tmp_path))
    by = {r["event"]: r for r in rows}
    assert list(by) == [f"probewatch_{me}/pw_add_0", f"probewatch_{dead}/getpid_0",
                        "someone/probe", "kprobes/open_ret", "synthetic/lat"]
    mine = by[f"probewatch_{me}/pw_add_0"]
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    assert (mine["owner_pid"], mine["owner_alive"], mine["owner_comm"]) == (me, True, comm)
    assert mine["owner"] == f"{me} ({comm})"
    assert mine["hits"] == 5
    gone = by[f"probewatch_{dead}/getpid_0"]
    assert (gone["kind"], gone["owner_alive"], gone["owner"], gone["hits"]) == (
        "uretprobe", False, f"{dead} (dead)", 0)
    other = by["someone/probe"]
    assert (other["owner"], other["owner_pid"], other["hits"]) == ("unknown", None, 7)
    k = by["kprobes/open_ret"]
    assert (k["kind"], k["maxactive"], k["hits"], k["owner"]) == ("kretprobe", 16, 3, "unknown")
    assert by["synthetic/lat"]["kind"] == "synthetic"


def test_probe_rows_without_dynamic_events(tmp_path: Path) -> None:
    (tmp_path / "uprobe_events").write_text("p:g/a /bin/x:0x0000000000000010\n")
    (tmp_path / "kprobe_events").write_text("p:g/b vfs_read+0\n")
    rows = pwlist.probe_rows(str(tmp_path))
    assert [(r["kind"], r["event"]) for r in rows] == [("uprobe", "g/a"), ("kprobe", "g/b")]


def test_probe_rows_no_control_files(tmp_path: Path) -> None:
    with pytest.raises(FeatureUnavailable, match="no uprobe_events, kprobe_events"):
        pwlist.probe_rows(str(tmp_path))


def test_format_table_aligns_columns() -> None:
    rows: list[dict[str, Any]] = [
        {"kind": "uprobe", "event": "g/a", "offset": 0x10, "args": ["x=%di", "y=%si"]},
        {"kind": "kretprobe", "event": "grp/long_name", "offset": None, "args": []},
    ]
    text = pwlist.format_table(rows, [("KIND", "kind"), ("EVENT", "event"),
                                      ("OFFSET", "offset"), ("ARGS", "args")])
    assert text.splitlines() == [
        "KIND       EVENT          OFFSET  ARGS",
        "uprobe     g/a            0x10    x=%di y=%si",
        "kretprobe  grp/long_name  -",
    ]


# ------------------------------------------------------------------- the CLI


def test_list_without_what_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert "tracepoints" in err and "examples:" in err


@pytest.mark.parametrize("what", ["", "tracepoints", "syscalls", "symbols", "usdt", "probes"])
def test_help_has_examples(what: str) -> None:
    argv = [sys.executable, "-m", "probewatch", "list", *([what] if what else []), "-h"]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "examples:" in r.stdout
    assert "probewatch list " + what in r.stdout


def test_cli_json_and_text_on_fake_tracefs(
    fake_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pwlist, "_root", lambda: str(fake_root))
    assert main(["list", "tracepoints", "sched:sched_process_e*"]) == 0
    assert capsys.readouterr().out == "sched:sched_process_exec\nsched:sched_process_exit\n"
    assert main(["list", "tracepoints", "--json", "ipi:*"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"event": "ipi:ipi_send_cpumask", "system": "ipi", "name": "ipi_send_cpumask"}]
    assert main(["list", "syscalls", "open*"]) == 0
    assert capsys.readouterr().out == (
        "openat(int dfd, const char *filename, int flags, umode_t mode)\n")
    assert main(["list", "syscalls", "--json", "getppid"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["args"], row["ret"]) == ("getppid", [], "long")
    assert main(["list", "tracepoints", "nosuch:*"]) == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err == "probewatch: error: no tracepoint matches 'nosuch:*'\n"


def test_cli_probes_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "uprobe_events").write_text("")
    monkeypatch.setattr(pwlist, "_root", lambda: str(tmp_path))
    assert main(["list", "probes"]) == 0
    cap = capsys.readouterr()
    assert (cap.out, cap.err) == ("", "no dynamic probes are defined\n")
    assert main(["list", "probes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_probes_points_at_cleanup_for_dead_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = _dead_pid()
    (tmp_path / "uprobe_events").write_text(
        f"p:probewatch_{dead}/pw_add_0 /t/x:0x0000000000001380 a=%di:s32\n"
        "p:other/y /t/x:0x0000000000000010\n")
    monkeypatch.setattr(pwlist, "_root", lambda: str(tmp_path))
    assert main(["list", "probes"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert lines[0].split() == ["KIND", "EVENT", "TARGET", "HITS", "OWNER", "ARGS"]
    assert lines[1].split() == ["uprobe", f"probewatch_{dead}/pw_add_0", "/t/x:0x1380", "-",
                                str(dead), "(dead)", "a=%di:s32"]
    assert lines[2].split() == ["uprobe", "other/y", "/t/x:0x10", "-", "unknown"]
    assert cap.err == ("1 probe of dead probewatch processes: remove with"
                       " 'probewatch cleanup'\n")


# ---------------------------------------------------------------- ELF listings


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_for_tests(tmp_path_factory, "listtargets", skip_unavailable=True)


def _nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {f[2]: int(f[0], 16) for f in (ln.split() for ln in out.splitlines()) if len(f) == 3}


@pytest.mark.parametrize("variant", ["pie", "nopie", "stripped"])
def test_symbol_rows_match_nm(targets: Any, variant: str) -> None:
    path = targets.variants[variant]
    path_, rows, notes = pwlist.symbol_rows(str(path), "pw_[agm]*")
    assert path_ == str(path)
    nm = _nm(targets.stripped_debug if variant == "stripped" else path)
    by = {r["name"]: r for r in rows}
    assert sorted(by) == ["pw_add", "pw_greet", "pw_many"]
    for name, r in by.items():
        assert r["address"] == nm[name]
        assert (r["bind"], r["type"]) == ("GLOBAL", "FUNC")
        assert r["size"] > 0
    if variant == "nopie":
        assert by["pw_add"]["address"] - 0x400000 == by["pw_add"]["offset"]
    else:
        assert by["pw_add"]["address"] == by["pw_add"]["offset"]
    if variant == "stripped":
        assert {r["from"] for r in rows} == {"debug"}
        assert {r["debug_file"] for r in rows} == {str(targets.stripped_debug)}
        assert notes == [f"{path} is stripped: symbols read from its debug file"
                         f" {targets.stripped_debug}"]
    else:
        assert {r["from"] for r in rows} == {"-"} and notes == []


def test_symbol_rows_locals_ifunc_and_nearest(targets: Any) -> None:
    _, rows, _ = pwlist.symbol_rows(str(targets.pie), "pw_local")
    assert [(r["bind"], r["file"]) for r in rows] == [("LOCAL", "pw_target.c"),
                                                      ("LOCAL", "pw_sem.c")]
    _, rows, _ = pwlist.symbol_rows(str(targets.pie), "pw_ifunc")
    assert [r["type"] for r in rows] == ["IFUNC"]
    with pytest.raises(NotFound) as ei:
        pwlist.symbol_rows(str(targets.pie), "pw_ad")
    assert "nearest: pw_add" in str(ei.value)


def test_symbol_rows_stripped_without_debug(targets: Any, tmp_path: Path) -> None:
    _, rows, notes = pwlist.symbol_rows(str(targets.nodebug), debug_roots=[str(tmp_path)])
    assert not [r for r in rows if r["name"].startswith("pw_")]
    assert len(notes) == 1 and "no debug file was found" in notes[0]


def test_symbol_rows_versions_from_dynsym() -> None:
    from probewatch.elf.libs import find_library

    libc = find_library("libc")
    _, rows, _ = pwlist.symbol_rows("libc", "malloc")
    # glibc's first symbol version on this architecture (arm64's glibc starts at 2.17)
    base = {"aarch64": "GLIBC_2.17"}.get(platform.machine(), "GLIBC_2.2.5")
    assert [r["name"] for r in rows] == [f"malloc@@{base}"]
    assert rows[0]["path"] == os.path.realpath(libc)
    assert ".dynsym" in rows[0]["tables"]


def test_usdt_rows(targets: Any) -> None:
    if not targets.has_sdt:
        pytest.skip("<sys/sdt.h> missing")
    path, rows = pwlist.usdt_rows(str(targets.pie))
    names = [(r["provider"], r["name"]) for r in rows]
    assert names == [("pwother", "add"), ("pwtest", "add"), ("pwtest", "global"),
                     ("pwtest", "konst"), ("pwtest", "twice"), ("pwtest", "twice"),
                     ("pwtest", "withsem")]
    sem = rows[-1]
    assert sem["semaphore"] == _nm(targets.pie)["pwtest_withsem_semaphore"]
    assert sem["args"] == ["-4@%edi"] and sem["arg_types"] == ["s32"]
    assert all(r["semaphore"] is None for r in rows[:-1])
    _, rows = pwlist.usdt_rows(str(targets.pie), "pwtest:tw*")
    assert len(rows) == 2
    with pytest.raises(NotFound, match="has no USDT probes"):
        pwlist.usdt_rows(str(targets.lib))
