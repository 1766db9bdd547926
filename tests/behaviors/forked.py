"""What every behaviour driver does with its list: run each named behaviour in a forked
child of its own and log "NAME PID EXIT-STATUS", so the test can give each alert to the
behaviour whose pid is in its ancestry."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


def run_each(names: list[str], run: Callable[[str], None], log_path: str | Path) -> None:
    """``run(name)`` in a forked child per name, one after another; an exception is
    reported on stderr and gives exit status 1 (never hangs the run)."""
    with open(log_path, "w") as log:
        for name in names:
            pid = os.fork()
            if pid == 0:
                rc = 0
                try:
                    run(name)
                except Exception as e:  # report, never hang the run
                    print(f"{name}: {e!r}", file=sys.stderr)
                    rc = 1
                sys.stdout.flush()
                os._exit(rc)
            _, status = os.waitpid(pid, 0)
            log.write(f"{name} {pid} {os.waitstatus_to_exitcode(status)}\n")
            log.flush()
