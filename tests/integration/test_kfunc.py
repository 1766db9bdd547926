"""funccount / functrace on a kernel without kprobes: one clear line (exit 1) that says
so and names the tracepoints that can answer instead; nothing is left armed. On a
kernel with kprobes tests/stockkernel/test_kfunc_stock.py runs them for real."""

from __future__ import annotations

import pytest

from .helpers import run_cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("cmd,pattern,verb,alt", [
    ("funccount", "tcp_*", "count", "t:tcp:*"),
    ("functrace", "do_sys_openat2", "trace", "t:syscalls:sys_enter_openat2"),
])
def test_without_kprobes_one_line_names_alternatives(tracefs: str, cmd: str, pattern: str,
                                                     verb: str, alt: str) -> None:
    from probewatch.kernel.features import check

    if check("kprobe_events", tracefs).available:
        pytest.skip("this kernel has kprobes: the stockkernel tests run funccount for real")
    r = run_cli(cmd, pattern, "-d", "1", timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"probewatch: error: cannot {verb} kernel function "
                           f"'{pattern}': this kernel has no kprobes (CONFIG_KPROBES off)")
    assert f"tracepoints that can answer instead: {alt}" in line
    assert "uprobes (u:BINARY:FUNC)" in line
