"""probewatch on arm64: the set in tests/arm64/guest/ run inside a stock Debian 12 arm64
kernel (6.1 cloud, kprobes and BTF) under QEMU, in one boot.

The runner is ``run-in-arm64-kernel.sh`` from the shared tools: by default
``<repository's parent>/shared/tools/`` (where CI lays shared/ beside the clone), else
/work/shared/tools/; ``PROBEWATCH_ARM64_RUNNER`` names another. About 25 s of one-time
setup (packages, image), then about 50 s a run on a quiet machine (the guest set itself
~43 s; several times that when the host is loaded). The test target is cross-compiled here
(gcc-aarch64-linux-gnu); pySigma, which Debian does not package, is copied in as source.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .build import CrossUnavailable, build_apk_set, build_pw_arm, copy_site

REPO = Path(__file__).resolve().parents[2]
_DEFAULT = REPO.parent / "shared/tools/run-in-arm64-kernel.sh"
RUNNER = Path(os.environ.get("PROBEWATCH_ARM64_RUNNER") or (
    _DEFAULT if _DEFAULT.exists() else Path("/work/shared/tools/run-in-arm64-kernel.sh")))
# Debian arm64 packages for the guest (one cached image per set: keep it stable)
GUEST_PKGS = ("python3-pytest python3-pyelftools python3-hypothesis binutils python3-yaml "
              "python3-pyparsing python3-packaging python3-jinja2 python3-requests "
              "python3-diskcache")
# run-in-arm64-kernel.sh: 124 = the guest timed out, 125 = guest/setup failure; those
# say nothing about probewatch, so the run gets one more guest
INFRA_FAILURES = (124, 125)

EXPECTED = {
    "test_machine_and_objects",
    "test_doctor",
    "test_tracepoint_exact_count",
    "test_uprobe_uretprobe_arguments[ftrace]",
    "test_uprobe_uretprobe_arguments[bpf]",
    "test_usdt_memory_and_register_operands",
    "test_kprobe_kretprobe",
    "test_syscalls_string_arguments_bpf",
    "test_execsnoop_bpf",
    "test_watch_raises_shipped_rule",
    "test_library_inside_apk_bpf",
    "test_nothing_left",
}

pytestmark = pytest.mark.arm64


def test_arm64_guest_set() -> None:
    if not RUNNER.exists():
        pytest.skip(f"arm64 runner {RUNNER} is not on this machine (PROBEWATCH_ARM64_RUNNER"
                    " names another)")
    if os.geteuid() != 0:
        pytest.skip("the arm64 runner needs root (QEMU, its image)")
    out = REPO / "tests" / "targets" / "bin" / "arm64"
    out.mkdir(parents=True, exist_ok=True)
    try:
        exe = build_pw_arm(out)
        site = copy_site(out)
        apk = build_apk_set(out)
    except CrossUnavailable as e:
        pytest.fail(str(e))
    if sys.version_info[:2] == (3, 11):
        # the guest's python3 is Debian 12's 3.11: byte-compile here, where it is 8x
        # faster, so the guest's many starts do not each compile probewatch and pySigma
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src"), str(site)],
                       check=False, capture_output=True)
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'src'}:{site}",
        PW_ARM=str(exe),
        PW_APK=json.dumps(apk),
        A64_PKGS=GUEST_PKGS,
        A64_CWD_RW="0",  # the guest's writes to the checkout are thrown away
        A64_TIMEOUT="480",  # ~40 s on a quiet machine; a loaded one is much slower
    )
    cmd = "python3 -m pytest -p no:cacheprovider -q -rA --durations=0 tests/arm64/guest"
    r: subprocess.CompletedProcess[str] | None = None
    for _ in range(2):
        r = subprocess.run(["bash", str(RUNNER), cmd], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=540)
        if r.returncode not in INFRA_FAILURES:
            break
    assert r is not None
    print(r.stdout)  # the guest's own report, with its --durations
    report = r.stdout + "\n--- stderr ---\n" + r.stderr[-4000:]
    status = {m.group(2): m.group(1) for m in re.finditer(
        r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) tests/arm64/guest/test_in_guest\.py::(\S+)",
        r.stdout, re.M)}
    assert r.returncode == 0, report
    assert status == dict.fromkeys(EXPECTED, "PASSED"), report
    assert re.search(rf"^{len(EXPECTED)} passed\b", r.stdout, re.M), report
