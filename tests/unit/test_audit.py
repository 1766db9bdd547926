"""probewatch audit without the kernel: BTF enum parsing (fuzzed), owner and target
inference, the diff of two audits, findings as Sigma events and the shipped audit
rules against example findings."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.audit.diff import diff, diff_lines, table
from probewatch.audit.events import AUDIT_RULES_DIR, alerts_for, audit_ruleset, sigma_fields
from probewatch.audit.scan import Finding, Report, dynamic_owner, target_class
from probewatch.kernel.btf import parse_enums

# --- BTF ---------------------------------------------------------------------------


def _btf(types: list[bytes], strings: bytes) -> bytes:
    body = b"".join(types)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return hdr + body + strings


def test_parse_enums_reads_names_and_values_and_skips_other_types() -> None:
    strings = b"\0int\0color\0RED\0GREEN\0big\0HUGE\0"
    i_int, i_color, i_red, i_green, i_big, i_huge = 1, 5, 11, 15, 21, 25
    t_int = struct.pack("<III", i_int, 1 << 24, 4) + struct.pack("<I", 32)
    t_enum = struct.pack("<III", i_color, (6 << 24) | 2, 4) + struct.pack(
        "<IiIi", i_red, 0, i_green, 7)
    t_struct = struct.pack("<III", 0, (4 << 24) | 1, 4) + struct.pack("<III", i_int, 1, 0)
    t_enum64 = struct.pack("<III", i_big, (19 << 24) | 1, 8) + struct.pack(
        "<III", i_huge, 1, 2)
    got = parse_enums(_btf([t_int, t_struct, t_enum, t_enum64], strings))
    assert got == {"color": {0: "RED", 7: "GREEN"}, "big": {(2 << 32) | 1: "HUGE"}}


def test_parse_enums_names_funcs_by_type_id() -> None:
    strings = b"\0int\0bpf_lsm_file_open\0"
    t_int = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 32)
    t_proto = struct.pack("<III", 0, (13 << 24) | 1, 1) + struct.pack("<II", 0, 1)
    t_func = struct.pack("<III", 5, 12 << 24, 2)
    funcs: dict[int, str] = {}
    assert parse_enums(_btf([t_int, t_proto, t_func], strings), funcs) == {}
    assert funcs == {3: "bpf_lsm_file_open"}


def test_parse_enums_rejects_what_is_not_btf() -> None:
    with pytest.raises(ValueError, match="bad magic"):
        parse_enums(b"\x7fELF" + bytes(40))
    with pytest.raises(ValueError, match="too short"):
        parse_enums(b"")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_enums_fuzz(tail: bytes) -> None:
    data = struct.pack("<HBBI", 0xEB9F, 1, 0, 24) + tail
    try:
        got = parse_enums(data)
    except ValueError:
        return
    for name, vals in got.items():
        assert isinstance(name, str)
        assert all(isinstance(k, int) and isinstance(v, str) for k, v in vals.items())


def test_the_running_kernels_btf_names_bpf_enums() -> None:
    from probewatch.kernel.btf import enum_name, enum_values

    if not enum_values("bpf_prog_type"):
        pytest.skip("kernel without BTF (/sys/kernel/btf/vmlinux)")
    assert enum_name("bpf_prog_type", 5, "BPF_PROG_TYPE_") == "tracepoint"
    assert enum_name("bpf_link_type", 7, "BPF_LINK_TYPE_") == "perf_event"
    assert enum_name("bpf_attach_type", 27, "BPF_") == "lsm_mac"
    assert enum_name("bpf_prog_type", 99999) == "99999"


# --- owners and targets ------------------------------------------------------------


@pytest.mark.parametrize("group,name,want", [
    ("probewatch_42", "readline_0", ("probewatch", 42)),
    ("probewatch_42_x", "r", ("probewatch", 42)),
    ("uprobes", "p__usr_lib_libssl_so_3_0x35980_bcc_812", ("bcc", 812)),
    ("uprobes", "libbpf_77_SSL_read_0x35980_0", ("libbpf", 77)),
    ("probe_libc", "malloc", ("perf", None)),
    ("probe", "do_sys_open", ("perf", None)),
    ("sniff", "ssl", ("unknown", None)),
])
def test_dynamic_owner(group: str, name: str, want: tuple[str, int | None]) -> None:
    assert dynamic_owner(group, name) == want


@pytest.mark.parametrize("path,want", [
    ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "tls"),
    ("/usr/lib/x86_64-linux-gnu/libgnutls.so.30", "tls"),
    ("/usr/lib/x86_64-linux-gnu/libnss3.so", "tls"),
    ("/lib/x86_64-linux-gnu/libpam.so.0", "pam"),
    ("/lib/x86_64-linux-gnu/security/pam_unix.so", "pam"),
    ("/usr/sbin/sshd", "auth"),
    ("/usr/bin/sudo", "auth"),
    ("/usr/bin/bash", "shell"),
    ("/lib/x86_64-linux-gnu/libc.so.6", ""),
    ("/usr/bin/sudoedit-not", ""),
    ("/usr/lib/libsslx.so", ""),
    (None, ""),
])
def test_target_class(path: str | None, want: str) -> None:
    assert target_class(path) == want


# --- diff ----------------------------------------------------------------------------


def _f(key: str, **kw: Any) -> Finding:
    return Finding(kind=kw.pop("kind", "bpf_prog"), key=key, what=kw.pop("what", key), **kw)


def test_diff_names_exactly_what_changed() -> None:
    old = Report([_f("a", pids=[1]), _f("b", detail={"count": 2, "holders": ["x(1)"]}),
                  _f("c")])
    new = Report([_f("a", pids=[1, 5]), _f("b", detail={"count": 3, "holders": ["y(2)"]}),
                  _f("d", kind="ptrace", what="sleep(9) is traced by strace(10)",
                     owner="strace", pids=[9, 10])])
    ch = diff(old, new)
    assert [(c.change, c.finding.key, c.fields) for c in ch] == [
        ("removed", "c", []),
        ("changed", "a", ["pids: [1] -> [1, 5]"]),
        ("changed", "b", ["count: 2 -> 3"]),   # holders are not identity
        ("added", "d", []),
    ]
    assert diff_lines(ch).splitlines() == [
        "- bpf_prog c (owner unknown, pids -)",
        "~ bpf_prog a (owner unknown, pids 1,5) [pids: [1] -> [1, 5]]",
        "~ bpf_prog b (owner unknown, pids -) [count: 2 -> 3]",
        "+ ptrace sleep(9) is traced by strace(10) (owner strace, pids 9,10)",
    ]
    assert diff(new, new) == [] and diff_lines([]) == "no changes"


def test_report_round_trip_and_table_escapes() -> None:
    f = _f("k", what="evil\nline\x1b[31m", owner="to\tol", pids=[3], where="inst",
           detail={"a": [1, 2]})
    rep = Report([f], notes=["n"], time=12.5, host="h")
    back = Report.from_dict(rep.to_dict())
    assert back.findings == [f] and back.notes == ["n"] and back.time == 12.5
    lines = table([f], ["a note"]).splitlines()
    assert lines[0].split() == ["KIND", "OWNER", "PIDS", "WHAT"]
    assert lines[1].split() == ["bpf_prog", "to\\tol", "3", "evil\\nline\\x1b[31m"]
    assert lines[2] == "note: a note"
    assert table([], []) == "no observers or hooks found besides this run's own"


# --- Sigma events and the shipped rules ------------------------------------------------

PROCS = {
    50: {"pid": 50, "comm": "sniffer", "exe": "/tmp/sniffer", "cmdline": "/tmp/sniffer -q",
         "uid": 0, "ppid": 1},
    60: {"pid": 60, "comm": "bpftrace", "exe": "/usr/bin/bpftrace",
         "cmdline": "bpftrace -e x", "uid": 0, "ppid": 1},
    70: {"pid": 70, "comm": "sleep", "exe": "/usr/bin/sleep", "cmdline": "sleep 30",
         "uid": 1000, "ppid": 1},
    71: {"pid": 71, "comm": "gdb", "exe": "/usr/bin/gdb", "cmdline": "gdb -p 70",
         "uid": 1000, "ppid": 1},
}


def _uprobe(owner: str, pids: list[int], path: str, kind: str = "bpf_prog") -> Finding:
    return Finding(kind, f"{kind}:1:{path}", f"prog at uprobe {path}:SSL_read", owner, pids,
                   "", {"prog_type": "kprobe", "probe_type": "uprobe", "path": path,
                        "symbol": "SSL_read", "target_class": target_class(path),
                        "attached": True, "attach": [f"uprobe {path}:SSL_read"],
                        "name": "SSL_read", "prog_id": 1, "tag": "00" * 8})


CASES: dict[str, tuple[list[Finding], list[Finding]]] = {
    "uprobe_on_credential_library": (
        [_uprobe("sniffer", [50], "/usr/lib/libssl.so.3"),
         _uprobe("bpftrace", [60], "/lib/x86_64-linux-gnu/libpam.so.0"),
         Finding("dynamic_event", "dynamic_event:x/y", "uprobe x/y", "unknown", [], "",
                 {"probe_type": "uprobe", "path": "/usr/sbin/sshd", "target_class": "auth",
                  "group": "x", "event": "x/y"})],
        [_uprobe("probewatch", [60], "/usr/lib/libssl.so.3"),
         _uprobe("sniffer", [50], "/lib/x86_64-linux-gnu/libc.so.6")]),
    "bpf_prog_unexpected_holder": (
        [_uprobe("sniffer", [50], "/lib/x86_64-linux-gnu/libc.so.6")],
        [_uprobe("bpftrace", [60], "/lib/x86_64-linux-gnu/libc.so.6"),
         Finding("bpf_prog", "bpf_prog:2", "not attached", "sniffer", [50], "",
                 {"attached": False, "prog_type": "socket_filter"})]),
    "process_ptraced": (
        [Finding("ptrace", "ptrace:70:1:71", "sleep(70) is traced by gdb(71)", "gdb",
                 [70, 71], "", {"tracee": PROCS[70], "tracer": PROCS[71]})],
        [Finding("perf_event", "perf_event:70:1", "sleep(70) holds 1 perf event(s)",
                 "sleep", [70], "", {"count": 1})]),
    "process_preload": (
        [Finding("preload", "preload:70:1:LD_PRELOAD", "x", "sleep", [70], "",
                 {"variable": "LD_PRELOAD", "value": "/tmp/hook.so"}),
         Finding("preload", "preload:70:1:LD_AUDIT", "x", "sleep", [70], "",
                 {"variable": "LD_AUDIT", "value": "/tmp/audit.so"})],
        [Finding("preload", "preload:70:1:LD_PRELOAD", "x", "sleep", [70], "",
                 {"variable": "LD_PRELOAD",
                  "value": "/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so"})]),
    "ld_so_preload_entry": (
        [Finding("ld_so_preload", "ld_so_preload:/lib/libhide.so", "x", "unknown", [], "",
                 {"value": "/lib/libhide.so"})],
        [Finding("ld_so_preload", "ld_so_preload:/lib/libsnoopy.so", "x", "unknown", [],
                 "", {"value": "/usr/lib/libsnoopy.so"})]),
    "tainting_module": (
        [Finding("module", "module:diamorphine", "x", "kernel", [], "",
                 {"module": "diamorphine", "flags": "OE"})],
        [Finding("taint", "taint", "x", "kernel", [], "", {"value": 512, "flags": "W"})]),
}


def test_every_audit_rule_loads_and_has_cases() -> None:
    stems = sorted(p.stem for p in AUDIT_RULES_DIR.glob("*.yml"))
    assert stems == sorted(CASES)
    rs = audit_ruleset()
    assert rs.report == [] and len(rs.rules) == len(stems)
    for p in AUDIT_RULES_DIR.glob("*.yml"):
        doc = yaml.safe_load(p.read_text())
        assert doc["logsource"] == {"product": "linux", "category": "audit"}
        assert doc["author"] == "probewatch" and len(doc["description"]) >= 80
        assert any(t.startswith("attack.t") for t in doc["tags"])
        assert doc["level"] in ("low", "medium", "high", "critical") and doc["falsepositives"]


@pytest.mark.parametrize("stem", sorted(CASES))
def test_audit_rule_cases(stem: str) -> None:
    title = yaml.safe_load((AUDIT_RULES_DIR / f"{stem}.yml").read_text())["title"]
    match, nomatch = CASES[stem]
    for f in match:
        got = [a["rule"]["title"] for a in alerts_for(Report([f], processes=PROCS))]
        assert title in got, (stem, f)
    for f in nomatch:
        got = [a["rule"]["title"] for a in alerts_for(Report([f], processes=PROCS))]
        assert title not in got, (stem, f)


def test_sigma_fields_of_a_ptrace_are_the_tracers() -> None:
    f = CASES["process_ptraced"][0][0]
    fields = sigma_fields(f, PROCS, "new")
    assert fields["Finding"] == "ptrace" and fields["Change"] == "new"
    assert fields["ProcessId"] == 71 and fields["Image"] == "/usr/bin/gdb"
    assert fields["TracedPid"] == 70 and fields["TracedImage"] == "/usr/bin/sleep"
    assert fields["User"] and fields["Uid"] == 1000


def test_audit_fields_are_known_to_the_engine() -> None:
    from probewatch.detect.sigma import known_field

    fs: set[str] = set()
    for match, nomatch in CASES.values():
        for f in match + nomatch:
            fs |= set(sigma_fields(f, PROCS))
    unknown = sorted(x for x in fs if not known_field("audit", x))
    assert unknown == []


def test_rules_dir_is_packaged() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"audit/rules/*.yml"' in text
