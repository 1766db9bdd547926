"""tid -> (tgid, comm) for backends whose records carry only a thread id (ftrace).

Looks in /proc first, then in tracefs ``saved_tgids`` / ``saved_cmdlines`` (filled
by the ``record-tgid``/``record-cmd`` options) for tasks that have already exited.

Example::

    tasks = TaskCache("/sys/kernel/tracing")
    pid, comm = tasks[1234]
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


class TaskCache(dict[int, tuple[int, str]]):
    """A dict tid -> (tgid, comm) that fills itself on a miss."""

    def __init__(self, root: str | None = None) -> None:
        super().__init__()
        self.root = root
        self._saved_loaded = False
        self._saved_cmd: dict[int, str] = {}
        self._saved_tgid: dict[int, int] = {}
        self._saved_at = 0.0

    def __missing__(self, tid: int) -> tuple[int, str]:
        val = self._from_proc(tid)
        if val is None:
            val = self._from_saved(tid)
        self[tid] = val
        return val

    def _from_proc(self, tid: int) -> tuple[int, str] | None:
        if tid <= 0:
            return (tid, "<idle>") if tid == 0 else None
        try:
            with open(f"/proc/{tid}/status", "rb") as f:
                status = f.read(1024)
        except OSError:
            return None
        comm = ""
        tgid = tid
        for line in status.split(b"\n"):
            if line.startswith(b"Name:"):
                comm = line[5:].strip().decode(errors="replace")
            elif line.startswith(b"Tgid:"):
                try:
                    tgid = int(line[5:])
                except ValueError:
                    pass
                break
        return tgid, comm

    def _load_saved(self) -> None:
        if self._saved_loaded or not self.root:
            return
        self._saved_loaded = True
        self._saved_at = time.monotonic()
        for a, b in _pairs(os.path.join(self.root, "saved_cmdlines")):
            self._saved_cmd[a] = b
        for a, b in _pairs(os.path.join(self.root, "saved_tgids")):
            if b.isdigit():
                self._saved_tgid[a] = int(b)

    def _from_saved(self, tid: int) -> tuple[int, str]:
        if tid not in self._saved_cmd and time.monotonic() - self._saved_at > 0.2:
            self.refresh_saved()  # the task may be newer than our snapshot
        self._load_saved()
        return self._saved_tgid.get(tid, tid), self._saved_cmd.get(tid, "<...>")

    def refresh_saved(self) -> None:
        """Forget the saved_* snapshot (new tasks may have appeared since)."""
        self._saved_loaded = False
        self._saved_cmd.clear()
        self._saved_tgid.clear()

    def update_comm(self, tid: int, comm: str) -> None:
        """After exec/rename: keep the tgid, replace the comm."""
        old = self.get(tid)
        self[tid] = (old[0] if old else tid, comm)

    def forget(self, tid: int) -> None:
        self.pop(tid, None)


def _pairs(path: str) -> Iterator[tuple[int, str]]:
    """'<pid> <value>' lines of saved_cmdlines / saved_tgids."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                a, _, b = line.rstrip("\n").partition(" ")
                if a.isdigit() and b:
                    yield int(a), b
    except OSError:
        return
