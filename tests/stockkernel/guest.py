"""Run a command in the stock-kernel QEMU guest, once more if the guest itself failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

# run-in-stock-kernel.sh: 124 = the guest timed out, 125 = guest/setup failure (a hung
# boot under software emulation has been seen about once in 12 runs); those say
# nothing about probewatch, so the command gets one more guest. Any other status is
# the command's own and is returned as it is.
INFRA_FAILURES = (124, 125)


def run_guest(
    script: Path, cmd: str, cwd: Path, env: dict[str, str], attempts: int = 2
) -> subprocess.CompletedProcess[str]:
    r: subprocess.CompletedProcess[str] | None = None
    for _ in range(attempts):
        r = subprocess.run([str(script), cmd], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=180)
        if r.returncode not in INFRA_FAILURES:
            break
    assert r is not None
    return r
