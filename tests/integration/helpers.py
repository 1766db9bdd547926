"""Small helpers for integration tests: run the CLI, parse JSON lines, wait for files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

CLI = [sys.executable, "-m", "probewatch"]


class Result(subprocess.CompletedProcess):  # type: ignore[type-arg]
    pid: int


def run_cli(*args: str, timeout: float = 120, **kw: Any) -> Result:
    """Run ``python -m probewatch ARGS``; the result also carries the process's pid."""
    with subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        r = Result(p.args, p.returncode, out, err)
        r.pid = p.pid
        return r


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summary_of(stderr: str) -> dict[str, Any]:
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"summary"'):
            return json.loads(line)["summary"]
    raise AssertionError(f"no JSON summary in stderr: {stderr!r}")


def our_instances(tracefs: str, pid: int | None = None) -> list[str]:
    names = os.listdir(os.path.join(tracefs, "instances"))
    pre = "probewatch-" if pid is None else f"probewatch-{pid}-"
    return [n for n in names if n.startswith(pre)]


def wait_for(pred: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return False


def require_uprobe_events(tracefs: str) -> str:
    """The tracefs root, when this kernel has uprobe events; skip otherwise."""
    if not os.path.exists(os.path.join(tracefs, "uprobe_events")):
        pytest.skip("kernel without CONFIG_UPROBE_EVENTS (no uprobe_events)")
    return tracefs
