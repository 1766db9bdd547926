"""probewatch doctor / kernel.features on the live kernel, whichever it is.

The expectation for every row is derived here, independently of kernel.features, from
the running kernel's config (/proc/config.gz or /boot/config-$(uname -r)) and from
tracefs itself (which control files exist, a trial write of our own). So the same tests
pass on this machine (a restricted 6.18: no kprobes, function tracer refused, no hist
triggers, no eprobes) and on a stock distribution kernel that has all of them
(tests/stockkernel/test_doctor_stock.py runs this file there).
"""

from __future__ import annotations

import errno
import gzip
import json
import os

import pytest

from probewatch.errors import FeatureUnavailable
from probewatch.kernel import features
from probewatch.kernel.features import FEATURE_NAMES, has_kprobes, has_uprobes, probe_features

from .helpers import our_instances, run_cli

pytestmark = pytest.mark.integration


def _kconfig() -> dict[str, str]:
    """CONFIG_X -> y/m/n of the running kernel, parsed here (not with features.py).
    PROBEWATCH_KCONFIG names the file where the kernel's is elsewhere (the stock-kernel
    QEMU guest has no /boot of its own)."""
    release = os.uname().release
    for path in (os.environ.get("PROBEWATCH_KCONFIG", ""), "/proc/config.gz",
                 f"/boot/config-{release}", f"/lib/modules/{release}/config"):
        if not path:
            continue
        try:
            raw = gzip.open(path, "rt").read() if path.endswith(".gz") else open(path).read()
        except OSError:
            continue
        cfg: dict[str, str] = {}
        for line in raw.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                cfg[k] = v
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                cfg[line[2:].split()[0]] = "n"
        return cfg
    pytest.fail("no kernel config (/proc/config.gz, /boot/config-$(uname -r)): the "
                "doctor tests derive their expectations from it", pytrace=False)


def _on(cfg: dict[str, str], opt: str) -> bool:
    return cfg.get(f"CONFIG_{opt}", "n") in ("y", "m")


def _function_selectable(tracefs: str) -> bool:
    """Our own trial: can `function` be selected in a private instance of ours?"""
    if "function" not in _read(os.path.join(tracefs, "available_tracers")).split():
        return False
    inst = os.path.join(tracefs, "instances", f"pwdoctortest_{os.getpid()}")
    os.mkdir(inst)
    try:
        try:
            with open(os.path.join(inst, "current_tracer"), "w") as f:
                f.write("function")
        except OSError as e:
            assert e.errno in (errno.EPERM, errno.EINVAL, errno.EBUSY, errno.ENODEV), e
            return False
        with open(os.path.join(inst, "current_tracer"), "w") as f:
            f.write("nop")
        return True
    finally:
        os.rmdir(inst)


@pytest.fixture(scope="module")
def expected(tracefs: str) -> dict[str, bool]:
    """Feature name -> available?, from the kernel config and tracefs."""
    cfg = _kconfig()

    def has(rel: str) -> bool:
        return os.path.exists(os.path.join(tracefs, rel))

    hist = any(os.path.exists(os.path.join(tracefs, "events", s, e, "hist"))
               for s in os.listdir(os.path.join(tracefs, "events"))
               if os.path.isdir(os.path.join(tracefs, "events", s))
               for e in os.listdir(os.path.join(tracefs, "events", s)))
    bpf_events = _on(cfg, "BPF_SYSCALL") and _on(cfg, "BPF_EVENTS")
    exp = {
        "tracefs": True,
        "tracefs instances": has("instances"),
        "tracepoints": has("events/sched"),
        "syscall tracepoints": has("events/syscalls") and _on(cfg, "FTRACE_SYSCALLS"),
        "uprobe_events": has("uprobe_events") and _on(cfg, "UPROBE_EVENTS"),
        "kprobe_events": has("kprobe_events") and _on(cfg, "KPROBE_EVENTS"),
        "dynamic_events": has("dynamic_events"),
        "function tracer": _on(cfg, "FUNCTION_TRACER") and _function_selectable(tracefs),
        "hist triggers": _on(cfg, "HIST_TRIGGERS") and hist,
        # CONFIG_EPROBE_EVENTS exists since 6.2; before it (5.15+) eprobes came with
        # CONFIG_PROBE_EVENTS and tracefs' README documents the e[:...] syntax
        "eprobes": _on(cfg, "EPROBE_EVENTS") if "CONFIG_EPROBE_EVENTS" in cfg
        else _on(cfg, "PROBE_EVENTS") and "\te[:" in _read(os.path.join(tracefs, "README"))
        .replace(" ", ""),
        "perf_event_open": _on(cfg, "PERF_EVENTS")
        and os.path.exists("/proc/sys/kernel/perf_event_paranoid"),
        "perf uprobe PMU": os.path.isdir("/sys/bus/event_source/devices/uprobe"),
        "BPF": _on(cfg, "BPF_SYSCALL"),
        "BPF tracepoint programs": bpf_events,
        "BPF kprobe programs": bpf_events,
        "BPF raw_tracepoint programs": bpf_events,
        "BPF ring buffer map": _on(cfg, "BPF_SYSCALL"),  # Linux >= 5.8
        "BTF": _on(cfg, "DEBUG_INFO_BTF") and os.path.exists("/sys/kernel/btf/vmlinux"),
    }
    assert list(exp) == list(FEATURE_NAMES)  # the test knows every row
    return exp


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _dynamic_groups(tracefs: str, pid: int | None = None) -> list[str]:
    """Dynamic events of probewatch process PID (default: this one); other probewatch
    runs on the machine are not ours to judge."""
    text = _read(os.path.join(tracefs, "dynamic_events"))
    return [line for line in text.splitlines()
            if f"probewatch_{os.getpid() if pid is None else pid}_" in line]


@pytest.fixture(scope="module")
def live(tracefs: str) -> dict[str, features.Feature]:
    before = _read(os.path.join(tracefs, "current_tracer"))
    fs = probe_features()
    assert _read(os.path.join(tracefs, "current_tracer")) == before
    return {f.name: f for f in fs}


def test_all_rows_in_order(live: dict[str, features.Feature]) -> None:
    assert list(live) == list(FEATURE_NAMES)


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_row_matches_the_kernel(live: dict[str, features.Feature], expected: dict[str, bool],
                                name: str) -> None:
    f = live[name]
    assert f.available is expected[name], f"{name}: {f.reason or f.detail}"
    if f.available:
        assert f.reason == ""
    else:
        assert f.reason  # a no always says why


def test_kprobe_events(live: dict[str, features.Feature], tracefs: str) -> None:
    f = live["kprobe_events"]
    assert has_uprobes() is os.path.exists(os.path.join(tracefs, "uprobe_events"))
    assert has_kprobes() is os.path.exists(os.path.join(tracefs, "kprobe_events"))
    if os.path.exists(os.path.join(tracefs, "kprobe_events")):
        assert f.available
        assert features.require("kprobe_events").available
        return
    assert not f.available
    if not _on(_kconfig(), "KPROBES"):
        assert f.reason.startswith("kprobe_events missing: kernel built without CONFIG_KPROBES")
        assert "CONFIG_KPROBE_EVENTS" in f.reason and "CONFIG_KPROBES=y" in f.reason
    with pytest.raises(FeatureUnavailable, match="^kprobe_events missing"):
        features.require("kprobe_events")


def test_function_tracer_reason(live: dict[str, features.Feature], tracefs: str) -> None:
    f = live["function tracer"]
    tracers = _read(os.path.join(tracefs, "available_tracers")).split()
    if f.available:
        assert "function" in tracers
        assert f.detail == "selected and reset in a private instance"
    elif "function" in tracers:
        # listed, but this kernel refuses the write (EPERM) even in a private instance
        assert f.reason.startswith(
            "function tracer listed in available_tracers but the kernel refuses to select it"
        )
        assert "(EPERM writing 'function' to current_tracer in a private instance)" in f.reason
    else:
        assert f.reason.startswith("function tracer not in available_tracers: ")
        assert "CONFIG_FUNCTION_TRACER" in f.reason
    assert _read(os.path.join(tracefs, "current_tracer")).strip() == "nop"


def test_hist_and_eprobes_reasons(live: dict[str, features.Feature]) -> None:
    cfg = _kconfig()
    if not _on(cfg, "HIST_TRIGGERS"):
        assert "CONFIG_HIST_TRIGGERS" in live["hist triggers"].reason
    else:
        assert live["hist triggers"].detail.endswith("/hist present")
    if not live["eprobes"].available:
        assert "CONFIG_EPROBE_EVENTS" in live["eprobes"].reason
    else:
        assert live["eprobes"].detail.startswith("trial eprobe on ")
        assert live["eprobes"].detail.endswith(" created and removed")


def test_bpf_kprobe_detail(live: dict[str, features.Feature], tracefs: str) -> None:
    use = ("(kprobes and uprobes)" if os.path.exists(os.path.join(tracefs, "kprobe_events"))
           else "(uprobes; kprobes need CONFIG_KPROBES)")
    assert live["BPF kprobe programs"].detail.endswith(use)


def test_eprobe_trial_without_kconfig(tracefs: str, expected: dict[str, bool]) -> None:
    # with the config unknown, the eprobe answer comes from a real trial write
    f = features.check("eprobes", kconfig={})
    if expected["eprobes"]:
        assert f.available and f.detail.endswith(" created and removed")
    else:
        assert not f.available
        assert "refused a trial eprobe" in f.reason and "EINVAL" in f.reason
    assert _dynamic_groups(tracefs) == []


def test_probe_leaves_nothing(tracefs: str) -> None:
    probe_features(kconfig={})  # the variant that tries everything live
    assert our_instances(tracefs, os.getpid()) == []
    assert not [n for n in os.listdir(os.path.join(tracefs, "instances"))
                if n.startswith(f"probewatch-{os.getpid()}-")]
    assert _dynamic_groups(tracefs) == []
    assert _read(os.path.join(tracefs, "current_tracer")).strip() == "nop"


def test_cli_json(tracefs: str, expected: dict[str, bool]) -> None:
    r = run_cli("doctor", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == list(FEATURE_NAMES)
    for row in rows:
        assert set(row) == {"name", "available", "reason", "detail"}
        assert isinstance(row["available"], bool)
        assert row["available"] or row["reason"]
    assert {row["name"]: row["available"] for row in rows} == expected


def test_cli_table_and_no_leftovers(tracefs: str, expected: dict[str, bool]) -> None:
    before = set(os.listdir(os.path.join(tracefs, "instances")))
    r = run_cli("doctor", timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    release = os.uname().release
    assert lines[0] == f"probewatch doctor: kernel {release} ({os.uname().machine}), " \
        f"tracefs at {tracefs}"
    header = next(i for i, ln in enumerate(lines) if ln.startswith("FEATURE"))
    rows = lines[header + 1 : header + 1 + len(FEATURE_NAMES)]
    col = lines[header].index("OK")
    for name, row in zip(FEATURE_NAMES, rows, strict=True):
        assert row.startswith(name + " ")
        assert row[col : col + 3] == ("yes" if expected[name] else "no ")
    assert lines[-1] == f"{sum(expected.values())} of {len(FEATURE_NAMES)} features available"
    after = set(os.listdir(os.path.join(tracefs, "instances")))
    new = [n for n in after - before if n.startswith(f"probewatch-{r.pid}-")]
    assert new == []
    assert _dynamic_groups(tracefs, r.pid) == []
