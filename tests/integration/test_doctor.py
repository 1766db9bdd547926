"""probewatch doctor / kernel.features on the live kernel of this machine.

This machine (Linux 6.18, a restricted build) has tracepoints, uprobes, perf_event_open
and BPF, but no kprobes (CONFIG_KPROBES off), no usable function tracer, no hist
triggers and no eprobes. The asserts below are that truth.
"""

from __future__ import annotations

import json
import os

import pytest

from probewatch.errors import FeatureUnavailable
from probewatch.kernel import features
from probewatch.kernel.features import FEATURE_NAMES, has_kprobes, has_uprobes, probe_features

from .helpers import our_instances, run_cli

pytestmark = pytest.mark.integration

AVAILABLE_HERE = [
    "tracefs",
    "tracefs instances",
    "tracepoints",
    "syscall tracepoints",
    "uprobe_events",
    "dynamic_events",
    "perf_event_open",
    "perf uprobe PMU",
    "BPF",
    "BPF tracepoint programs",
    "BPF kprobe programs",
    "BPF raw_tracepoint programs",
    "BPF ring buffer map",
    "BTF",
]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _dynamic_groups(tracefs: str) -> list[str]:
    text = _read(os.path.join(tracefs, "dynamic_events"))
    return [line for line in text.splitlines() if "probewatch_" in line]


@pytest.fixture(scope="module")
def live(tracefs: str) -> dict[str, features.Feature]:
    before = _read(os.path.join(tracefs, "current_tracer"))
    fs = probe_features()
    assert _read(os.path.join(tracefs, "current_tracer")) == before
    return {f.name: f for f in fs}


def test_all_rows_in_order(live: dict[str, features.Feature]) -> None:
    assert list(live) == list(FEATURE_NAMES)


@pytest.mark.parametrize("name", AVAILABLE_HERE)
def test_available_here(live: dict[str, features.Feature], name: str) -> None:
    f = live[name]
    assert f.available, f"{name}: {f.reason}"
    assert f.reason == ""


def test_kprobe_events_unavailable(live: dict[str, features.Feature], tracefs: str) -> None:
    assert not os.path.exists(os.path.join(tracefs, "kprobe_events"))
    f = live["kprobe_events"]
    assert not f.available
    assert f.reason.startswith("kprobe_events missing: kernel built without CONFIG_KPROBES")
    assert "CONFIG_KPROBE_EVENTS" in f.reason and "CONFIG_KPROBES=y" in f.reason
    assert not has_kprobes()
    assert has_uprobes()
    with pytest.raises(FeatureUnavailable, match="^kprobe_events missing"):
        features.require("kprobe_events")
    assert features.require("uprobe_events").available


def test_function_tracer_unavailable(live: dict[str, features.Feature], tracefs: str) -> None:
    f = live["function tracer"]
    assert not f.available
    tracers = _read(os.path.join(tracefs, "available_tracers")).split()
    if "function" in tracers:
        # listed, but this kernel refuses the write (EPERM) even in a private instance
        assert f.reason.startswith(
            "function tracer listed in available_tracers but the kernel refuses to select it"
        )
        assert "(EPERM writing 'function' to current_tracer in a private instance)" in f.reason
    else:
        assert f.reason.startswith(
            "function tracer not in available_tracers: kernel built without "
            "CONFIG_FUNCTION_TRACER"
        )
    assert _read(os.path.join(tracefs, "current_tracer")).strip() == "nop"


def test_hist_and_eprobes_unavailable(live: dict[str, features.Feature]) -> None:
    assert not live["hist triggers"].available
    assert "CONFIG_HIST_TRIGGERS" in live["hist triggers"].reason
    assert not live["eprobes"].available
    assert "CONFIG_EPROBE_EVENTS" in live["eprobes"].reason


def test_bpf_kprobe_detail(live: dict[str, features.Feature]) -> None:
    assert live["BPF kprobe programs"].detail.endswith("(uprobes; kprobes need CONFIG_KPROBES)")


def test_eprobe_trial_without_kconfig(tracefs: str) -> None:
    # with the config unknown, the eprobe answer comes from a real (refused) trial write
    f = features.check("eprobes", kconfig={})
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


def test_cli_json(tracefs: str) -> None:
    r = run_cli("doctor", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == list(FEATURE_NAMES)
    for row in rows:
        assert set(row) == {"name", "available", "reason", "detail"}
        assert isinstance(row["available"], bool)
        assert row["available"] or row["reason"]
    by = {row["name"]: row for row in rows}
    assert by["kprobe_events"]["available"] is False
    assert by["function tracer"]["available"] is False
    assert all(by[n]["available"] for n in AVAILABLE_HERE)


def test_cli_table_and_no_leftovers(tracefs: str) -> None:
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
        assert row[col : col + 3] in ("yes", "no ")
    assert lines[-1] == f"{len(AVAILABLE_HERE)} of {len(FEATURE_NAMES)} features available"
    after = set(os.listdir(os.path.join(tracefs, "instances")))
    new = [n for n in after - before if n.startswith("probewatch")]
    assert new == []
    assert _dynamic_groups(tracefs) == []
