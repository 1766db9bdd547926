"""kernel.features / bpfsys / perf on fake tracefs trees built in tmp_path (no kernel needed)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from pathlib import Path

import pytest

from probewatch.errors import FeatureUnavailable
from probewatch.kernel import bpfsys, features, perf
from probewatch.kernel.features import (
    FEATURE_NAMES,
    Feature,
    check,
    has_kprobes,
    has_uprobes,
    parse_available_tracers,
    parse_kconfig,
    parse_lockdown,
    probe_features,
    readme_lists_eprobes,
    readme_lists_hist,
    require,
)

EPROBE_README = """\
  dynamic_events\t\t- Create/append/remove/show the generic dynamic events
\t  accepts: event-definitions (one definition per line)
\t   Format: p[:[<group>/][<event>]] <place> [<args>]
\t           r[maxactive][:[<group>/][<event>]] <place> [<args>]
\t           e[:[<group>/][<event>]] <attached-group>.<attached-event> [<args>] [if <filter>]
\t           -:[<group>/][<event>]
"""

OLD_README = """\
  uprobe_events\t\t- Add/remove/show the userspace dynamic events
\t  accepts: event-definitions (one definition per line)
\t   Format: p[:[<group>/]<event>] <place> [<args>]
\t           r[maxactive][:[<group>/]<event>] <place> [<args>]
\t           -:[<group>/]<event>
"""

HIST_README = """\
\t   trigger: traceon, traceoff
\t            enable_event:<system>:<event>
\t\t    stacktrace
\t\t    hist (see below)
"""

EXPECTED_NAMES = [
    "tracefs",
    "tracefs instances",
    "tracepoints",
    "syscall tracepoints",
    "uprobe_events",
    "kprobe_events",
    "dynamic_events",
    "function tracer",
    "hist triggers",
    "eprobes",
    "perf_event_open",
    "perf uprobe PMU",
    "BPF",
    "BPF tracepoint programs",
    "BPF kprobe programs",
    "BPF raw_tracepoint programs",
    "BPF ring buffer map",
    "BTF",
]


def fake_tracefs(
    tmp: Path,
    *,
    tracers: str = "nop",
    readme: str = OLD_README,
    files: tuple[str, ...] = (),
    events: tuple[str, ...] = ("sched/sched_switch", "syscalls/sys_enter_openat"),
    hist: bool = False,
    instances: bool = False,
) -> str:
    root = tmp / "tracing"
    (root / "events").mkdir(parents=True)
    (root / "trace").write_text("")
    (root / "available_tracers").write_text(tracers + "\n")
    (root / "README").write_text(readme)
    (root / "error_log").write_text("")
    for f in files:
        (root / f).write_text("")
    for ev in events:
        d = root / "events" / ev
        d.mkdir(parents=True)
        (d / "format").write_text("name: x\n")
        (d / "id").write_text("1\n")
        if hist:
            (d / "hist").write_text("")
    (root / "available_events").write_text("\n".join(e.replace("/", ":") for e in events) + "\n")
    if instances:
        (root / "instances").mkdir()
    return str(root)


def by_name(fs: list[Feature]) -> dict[str, Feature]:
    return {f.name: f for f in fs}


def tracefs_rows(root: str, kconfig: dict[str, str] | None = None) -> dict[str, Feature]:
    """The tracefs-only rows (no syscalls to the kernel)."""
    kc = {} if kconfig is None else kconfig
    names = FEATURE_NAMES[: FEATURE_NAMES.index("perf_event_open")]
    return {n: check(n, root, kconfig=kc) for n in names}


# ---------------------------------------------------------------- parsers


def test_feature_names_order() -> None:
    assert list(FEATURE_NAMES) == EXPECTED_NAMES


def test_parse_available_tracers() -> None:
    assert parse_available_tracers("blk function nop\n") == ["blk", "function", "nop"]
    assert parse_available_tracers("nop\n") == ["nop"]
    assert parse_available_tracers("") == []
    # 'function' is a word, not a substring of function_graph
    assert "function" not in parse_available_tracers("function_graph nop")


def test_readme_eprobes() -> None:
    assert readme_lists_eprobes(EPROBE_README)
    assert not readme_lists_eprobes(OLD_README)
    assert not readme_lists_eprobes("")


def test_readme_hist() -> None:
    assert readme_lists_hist(HIST_README)
    assert not readme_lists_hist(OLD_README)
    assert not readme_lists_hist(EPROBE_README)


def test_parse_kconfig() -> None:
    kc = parse_kconfig(
        "#\n# comment\nCONFIG_KPROBES=y\n# CONFIG_HIST_TRIGGERS is not set\n"
        'CONFIG_LOCALVERSION="-fc"\nCONFIG_NR_CPUS=64\n'
    )
    assert kc == {"KPROBES": "y", "HIST_TRIGGERS": "n", "LOCALVERSION": "-fc", "NR_CPUS": "64"}


def test_parse_lockdown() -> None:
    assert parse_lockdown("none [integrity] confidentiality\n") == "integrity"
    assert parse_lockdown("[none] integrity confidentiality\n") == "none"
    assert parse_lockdown("") is None


def test_lockdown_from_kconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(features, "LOCKDOWN_FILE", str(tmp_path / "nope"))
    assert features.lockdown_mode({"LOCK_DOWN_KERNEL_FORCE_INTEGRITY": "y"}) == "integrity"
    assert features.lockdown_mode({}) is None
    (tmp_path / "lockdown").write_text("[none] integrity confidentiality\n")
    monkeypatch.setattr(features, "LOCKDOWN_FILE", str(tmp_path / "lockdown"))
    assert features.lockdown_mode({"LOCK_DOWN_KERNEL_FORCE_INTEGRITY": "y"}) == "none"


def test_feature_to_dict_is_json() -> None:
    f = Feature("BTF", False, "missing")
    assert json.loads(json.dumps(f.to_dict())) == {
        "name": "BTF",
        "available": False,
        "reason": "missing",
        "detail": "",
    }


# ---------------------------------------------------------------- fake tracefs trees


def test_kprobe_events_missing_names_config(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, files=("uprobe_events",))
    f = check("kprobe_events", root, kconfig={})
    assert not f.available
    assert f.reason.startswith("kprobe_events missing: kernel built without CONFIG_KPROBE_EVENTS")
    assert "CONFIG_KPROBES=y" in f.reason  # the fix
    f = check("kprobe_events", root, kconfig={"KPROBES": "n", "UPROBES": "y"})
    assert "without CONFIG_KPROBES" in f.reason
    assert check("uprobe_events", root, kconfig={}).available


def test_probes_present(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, files=("kprobe_events", "uprobe_events", "dynamic_events"))
    rows = tracefs_rows(root)
    for n in ("tracefs", "tracepoints", "syscall tracepoints", "kprobe_events", "uprobe_events",
              "dynamic_events"):
        assert rows[n].available, rows[n]
    assert rows["tracepoints"].detail == "2 events in 2 systems"
    assert has_kprobes(root) and has_uprobes(root)


def test_has_probes_absent(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path)
    assert not has_kprobes(root)
    assert not has_uprobes(root)
    f = check("uprobe_events", root, kconfig={})
    assert "CONFIG_UPROBE_EVENTS" in f.reason
    f = check("dynamic_events", root, kconfig={})
    assert "CONFIG_DYNAMIC_EVENTS" in f.reason


def test_function_tracer_not_listed(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, tracers="blk nop", instances=True)
    f = check("function tracer", root, kconfig={})
    assert not f.available
    assert f.reason.startswith(
        "function tracer not in available_tracers: kernel built without CONFIG_FUNCTION_TRACER"
    )
    assert f.detail == "available_tracers: blk nop"
    assert os.listdir(os.path.join(root, "instances")) == []


def test_function_tracer_listed_but_disabled(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, tracers="nop")
    f = check("function tracer", root, kconfig={"FUNCTION_TRACER": "y"})
    assert "CONFIG_FUNCTION_TRACER=y" in f.reason and "dmesg" in f.reason


def test_function_tracer_listed_no_instances(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, tracers="function_graph function nop")
    f = check("function tracer", root, kconfig={})
    assert f.available
    assert "not trial-selected" in f.detail


def test_function_tracer_refused_in_private_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_tracefs(tmp_path, tracers="blk function nop", instances=True)
    seen: list[str] = []

    def refuse(inst_path: str) -> tuple[bool, int]:
        seen.append(inst_path)
        assert os.path.isdir(inst_path)
        return False, errno.EPERM

    monkeypatch.setattr(features, "_try_function_tracer", refuse)
    monkeypatch.setattr(features, "LOCKDOWN_FILE", str(tmp_path / "nope"))
    f = check("function tracer", root, kconfig={"FUNCTION_TRACER": "y"})
    assert not f.available
    assert "refuses to select it (EPERM" in f.reason
    assert "CONFIG_FUNCTION_TRACER=y" in f.reason
    # the trial ran in a private, owned instance that is gone again
    assert len(seen) == 1
    assert os.path.basename(seen[0]).startswith(f"probewatch-{os.getpid()}-")
    assert os.listdir(os.path.join(root, "instances")) == []


def test_function_tracer_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_tracefs(tmp_path, tracers="function nop", instances=True)
    monkeypatch.setattr(features, "_try_function_tracer", lambda p: (True, 0))
    rows = tracefs_rows(root)
    assert rows["function tracer"].available
    assert rows["tracefs instances"].available
    assert os.listdir(os.path.join(root, "instances")) == []


def test_try_function_tracer_restores_nop(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    inst.mkdir()
    for f in ("current_tracer", "tracing_on", "set_ftrace_filter"):
        (inst / f).write_text("")
    # regular files take appends, so every write the trial makes is visible in order
    assert features._try_function_tracer(str(inst)) == (True, 0)
    assert (inst / "current_tracer").read_text() == "function\nnop\n"  # reset to nop
    assert (inst / "tracing_on").read_text() == "0"
    assert (inst / "set_ftrace_filter").read_text() == "vfs_read\n"


def test_no_instances_dir(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path)
    f = check("tracefs instances", root, kconfig={})
    assert not f.available and "instances/" in f.reason


def test_hist_triggers(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path / "a", hist=True)
    f = check("hist triggers", root, kconfig={})
    assert f.available and f.detail == "events/sched/sched_switch/hist present"
    root = fake_tracefs(tmp_path / "b")
    f = check("hist triggers", root, kconfig={})
    assert not f.available
    assert "no 'hist' file under events/" in f.reason
    assert "CONFIG_HIST_TRIGGERS" in f.reason


def test_eprobes_readme_absent(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, readme=OLD_README, files=("dynamic_events",))
    f = check("eprobes", root, kconfig={})
    assert not f.available
    assert "README does not list" in f.reason and "CONFIG_EPROBE_EVENTS" in f.reason


def test_eprobes_config_off_wins_over_readme(tmp_path: Path) -> None:
    # recent kernels print the e[...] line even without CONFIG_EPROBE_EVENTS
    root = fake_tracefs(tmp_path, readme=EPROBE_README, files=("dynamic_events",))
    f = check("eprobes", root, kconfig={"EPROBE_EVENTS": "n"})
    assert not f.available
    assert f.reason.startswith("kernel built without CONFIG_EPROBE_EVENTS")
    assert (Path(root) / "dynamic_events").read_text() == ""  # no trial write


def test_eprobes_config_without_the_option_tries(tmp_path: Path) -> None:
    # Debian 12's 6.1 config has no CONFIG_EPROBE_EVENTS line at all (the option came
    # later; eprobes are built with CONFIG_PROBE_EVENTS): the trial decides, and it works
    root = fake_tracefs(tmp_path, readme=EPROBE_README, files=("dynamic_events",))
    f = check("eprobes", root, kconfig={"PROBE_EVENTS": "y", "KPROBES": "y"})
    assert f.available, f
    assert f.detail == "trial eprobe on sched.sched_switch created and removed"


def test_eprobes_trial_creates_and_removes(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, readme=EPROBE_README, files=("dynamic_events",))
    f = check("eprobes", root, kconfig={})
    assert f.available, f
    group = f"probewatch_{os.getpid()}_doctor"
    assert (Path(root) / "dynamic_events").read_text() == (
        f"e:{group}/eprobe sched.sched_switch\n-:{group}/eprobe\n"
    )


def test_eprobes_trial_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_tracefs(tmp_path, readme=EPROBE_README, files=("dynamic_events",))
    monkeypatch.setattr(features, "_write", lambda path, text: errno.EINVAL)
    f = check("eprobes", root, kconfig={})
    assert not f.available
    assert "refused a trial eprobe on sched.sched_switch (EINVAL" in f.reason


def test_syscall_tracepoints_missing(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, events=("sched/sched_switch", "raw_syscalls/sys_enter"))
    f = check("syscall tracepoints", root, kconfig={})
    assert not f.available
    assert "CONFIG_FTRACE_SYSCALLS" in f.reason and "raw_syscalls" in f.reason


def test_not_tracefs(tmp_path: Path) -> None:
    rows = tracefs_rows(str(tmp_path))
    assert not rows["tracefs"].available
    assert "is not a tracefs mount" in rows["tracefs"].reason
    for n, f in rows.items():
        assert not f.available
        if n != "tracefs":
            assert f.reason.startswith("needs tracefs: ")


def test_probe_features_all_rows(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, files=("uprobe_events",))
    fs = probe_features(root, kconfig={})
    assert [f.name for f in fs] == EXPECTED_NAMES
    for f in fs:
        assert isinstance(f.available, bool)
        assert f.available or f.reason, f  # every "no" says why


def test_require_and_unknown(tmp_path: Path) -> None:
    root = fake_tracefs(tmp_path, files=("uprobe_events",))
    with pytest.raises(FeatureUnavailable, match="^kprobe_events missing: kernel built without"):
        require("kprobe_events", root)
    assert require("uprobe_events", root).available
    with pytest.raises(ValueError, match="unknown feature"):
        check("kprobes", root)


def test_btf_and_pmu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "BTF_VMLINUX", str(tmp_path / "vmlinux"))
    monkeypatch.setattr(features, "EVENT_SOURCE_DIR", str(tmp_path / "devices"))
    f = check("BTF", kconfig={})
    assert not f.available and "CONFIG_DEBUG_INFO_BTF" in f.reason
    (tmp_path / "vmlinux").write_bytes(b"\x9f\xeb\x01\x00" + bytes(2048))
    assert check("BTF", kconfig={}).available
    (tmp_path / "vmlinux").write_bytes(b"ELF!")
    assert "magic" in check("BTF", kconfig={}).reason
    f = check("perf uprobe PMU", kconfig={})
    assert not f.available and "uprobe" in f.reason
    (tmp_path / "devices" / "uprobe").mkdir(parents=True)
    (tmp_path / "devices" / "uprobe" / "type").write_text("8\n")
    f = check("perf uprobe PMU", kconfig={})
    assert f.available and f.detail.startswith("PMU type 8")


def test_bpf_errno_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert features._bpf_reason(errno.EPERM) == (
        "not permitted: needs CAP_BPF/CAP_SYS_ADMIN (run as root)"
    )
    assert "CONFIG_BPF_SYSCALL" in features._bpf_reason(errno.ENOSYS)
    assert "CONFIG_PERF_EVENTS" in features._perf_reason(errno.ENOSYS)


def test_bpf_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: object, **k: object) -> int:
        raise bpfsys.BpfError(errno.EPERM, "BPF_MAP_CREATE")

    monkeypatch.setattr(bpfsys, "map_create", fail)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    f = check("BPF", kconfig={})
    assert not f.available
    assert "EPERM" in f.reason and "CAP_BPF" in f.reason
    f = check("BPF ring buffer map", kconfig={})
    assert f.reason.startswith("needs BPF: ")


# ---------------------------------------------------------------- bpfsys / perf structs


def test_kernel_version_code() -> None:
    assert bpfsys.kernel_version_code("6.1.0-18-amd64") == 0x060100
    assert bpfsys.kernel_version_code("4.19.300-foo") == (4 << 16) + (19 << 8) + 255
    assert bpfsys.kernel_version_code("5.4") == 0x050400
    assert bpfsys.kernel_version_code("garbage") == 0


def test_trivial_prog_and_syscall_numbers() -> None:
    assert len(bpfsys.TRIVIAL_PROG) == 16
    assert bpfsys.TRIVIAL_PROG[0] == 0xB7 and bpfsys.TRIVIAL_PROG[8] == 0x95
    assert bpfsys.sys_bpf_nr("x86_64") == 321
    assert bpfsys.sys_bpf_nr("aarch64") == 280
    with pytest.raises(bpfsys.BpfError):
        bpfsys.sys_bpf_nr("vax")
    assert perf.sys_perf_event_open_nr("x86_64") == 298
    assert perf.sys_perf_event_open_nr("aarch64") == 241


def test_bpf_attr_layouts() -> None:
    P = bpfsys._ProgLoadAttr
    assert P.insns.offset == 8 and P.license.offset == 16 and P.log_buf.offset == 32
    assert P.kern_version.offset == 40 and P.prog_name.offset == 48
    assert P.expected_attach_type.offset == 68
    M = bpfsys._MapCreateAttr
    assert M.max_entries.offset == 12 and M.map_name.offset == 28 and M.map_extra.offset == 64


def test_perf_event_attr_layout() -> None:
    A = perf.PerfEventAttr
    # offsets from linux/perf_event.h; each PERF_ATTR_SIZE_VERn ends after one field
    assert ctypes.sizeof(A) == perf.PERF_ATTR_SIZE_VER8 == 136
    assert A.config.offset == 8
    assert A.flags.offset == 40
    assert A.config1.offset == 56
    assert A.config2.offset + 8 == 72  # VER1
    assert A.branch_sample_type.offset + 8 == 80  # VER2
    assert A.clockid.offset + 4 == 96  # VER3
    assert A.sample_regs_intr.offset + 8 == 104  # VER4
    assert A.reserved_2.offset + 2 == perf.PERF_ATTR_SIZE_VER5
    assert A.reserved_3.offset + 4 == 120  # VER6
    assert A.sig_data.offset + 8 == perf.PERF_ATTR_SIZE_VER7
    a = perf.tracepoint_attr(372)
    assert (a.type, a.size, a.config, a.flags) == (perf.PERF_TYPE_TRACEPOINT, 136, 372, 1)


# ---------------------------------------------------------------- doctor formatting


def test_doctor_table_aligned() -> None:
    from probewatch.cli.doctor import format_table

    fs = [
        Feature("tracefs", True, "", "mounted at /x"),
        Feature("BPF ring buffer map", False, "needs Linux 5.8+"),
    ]
    lines = format_table(fs).splitlines()
    assert lines[0].split() == ["FEATURE", "OK", "DETAILS"]
    col = lines[0].index("OK")
    assert [ln[col : col + 3] for ln in lines[1:]] == ["yes", "no "]
    assert lines[2].endswith("needs Linux 5.8+")
    assert lines[1].endswith("mounted at /x")


def test_doctor_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from probewatch.cli import doctor

    p = argparse.ArgumentParser(prog="probewatch")
    doctor.register(p.add_subparsers())
    with pytest.raises(SystemExit):
        p.parse_args(["doctor", "-h"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--json" in out
