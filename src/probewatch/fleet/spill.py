"""The agent's disk spill: batches the server has not acknowledged yet, and the sequence.

One file per batch (``<seq>.pwb``: a JSON header line, then the message body), written
to a temporary name and renamed, so a batch file is whole or absent; deleted when the
server acknowledges the batch. The directory is locked (``flock``) by one agent at a
time; what it holds is sent by the next agent that opens it, before anything new.
``state.json`` keeps the boot id and the next batch sequence (reserved in blocks),
so an agent that restarts in the same boot never reuses a message id.

``max_bytes`` bounds the directory: a batch that does not fit is dropped and counted
(:attr:`Spill.dropped_batches`, :attr:`Spill.dropped_events`) — the only place the
exporter loses data.

Example::

    sp = Spill("/var/lib/probewatch/spill", boot="ab12", max_bytes=1 << 30)
    seq = sp.next_seq()
    sp.put(Pending(seq, "probewatch.web1.events", "web1:ab12:7", body, 500, "events"))
    for p in sp.pending():
        ...                                  # publish p.body, then:
        sp.remove(p.seq)
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ProbewatchError

__all__ = ["Pending", "Spill", "SpillError"]

_SEQ_BLOCK = 4096


class SpillError(ProbewatchError):
    """The spill directory cannot be used."""


@dataclass
class Pending:
    """One batch waiting for its PubAck."""

    seq: int
    subject: str
    msg_id: str
    body: bytes
    count: int          # records in it
    kind: str
    spilled: bool = False


class Spill:
    """A locked spill directory (see the module docs)."""

    def __init__(self, path: str, boot: str, max_bytes: int = 1 << 30) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.dropped_batches = 0
        self.dropped_events = 0
        self._lock = threading.Lock()
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            self._lock_fd = os.open(os.path.join(path, "lock"),
                                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise SpillError(f"spill directory {path}: {e.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SpillError(f"spill directory {path} is in use by another probewatch "
                             "agent: give this one its own with --spill-dir") from None
        self._files: dict[int, int] = {}  # seq -> bytes
        for name in os.listdir(path):
            if name.endswith(".pwb") and name[:-4].isdigit():
                try:
                    self._files[int(name[:-4])] = os.path.getsize(os.path.join(path, name))
                except OSError:
                    pass
            elif name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(path, name))
                except OSError:
                    pass
        self.bytes = sum(self._files.values())
        self.boot = boot
        self._seq = 0
        self._reserved = 0
        st = self._read_state()
        if st.get("boot") == boot and isinstance(st.get("next_seq"), int):
            self._seq = st["next_seq"]
        else:
            # a new boot (or no state): a fresh sequence space; the time keeps it unique
            # even if the state file was lost
            self._seq = time.time_ns() // 1000
        self._seq = max([self._seq, *(s + 1 for s in self._files)])
        self._reserved = self._seq
        self.dropped_batches = int(st.get("dropped_batches", 0)) if st.get("boot") else 0
        self.dropped_events = int(st.get("dropped_events", 0)) if st.get("boot") else 0

    # -- sequence
    def _read_state(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.path, "state.json")) as f:
                d = json.load(f)
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_state(self) -> None:
        tmp = os.path.join(self.path, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"boot": self.boot, "next_seq": self._reserved,
                       "dropped_batches": self.dropped_batches,
                       "dropped_events": self.dropped_events}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.path, "state.json"))

    def next_seq(self) -> int:
        """A batch sequence number never handed out before in this boot."""
        with self._lock:
            s = self._seq
            self._seq += 1
            if self._seq > self._reserved:
                self._reserved = self._seq + _SEQ_BLOCK
                self._write_state()
            return s

    # -- batches
    def _file(self, seq: int) -> str:
        return os.path.join(self.path, f"{seq:020d}.pwb")

    def put(self, p: Pending) -> bool:
        """Write a batch; False (and counted as dropped) when the spill is full."""
        head = json.dumps({"subject": p.subject, "msg_id": p.msg_id, "count": p.count,
                           "kind": p.kind}).encode() + b"\n"
        size = len(head) + len(p.body)
        with self._lock:
            if p.seq in self._files:
                p.spilled = True
                return True
            if self.bytes + size > self.max_bytes:
                self.dropped_batches += 1
                self.dropped_events += p.count
                self._write_state()
                return False
            self.bytes += size
            self._files[p.seq] = size
        tmp = self._file(p.seq) + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(head)
                f.write(p.body)
            os.replace(tmp, self._file(p.seq))
        except OSError:
            with self._lock:
                self.bytes -= size
                self._files.pop(p.seq, None)
                self.dropped_batches += 1
                self.dropped_events += p.count
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        p.spilled = True
        return True

    def seqs(self) -> list[int]:
        with self._lock:
            return sorted(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def load(self, seq: int) -> Pending | None:
        """The spilled batch ``seq`` (None: gone, or a damaged file, which is dropped)."""
        path = self._file(seq)
        try:
            with open(path, "rb") as f:
                data = f.read()
            nl = data.index(b"\n")
            h = json.loads(data[:nl])
            return Pending(seq, str(h["subject"]), str(h["msg_id"]), data[nl + 1:],
                           int(h["count"]), str(h["kind"]), spilled=True)
        except FileNotFoundError:
            with self._lock:
                self.bytes -= self._files.pop(seq, 0)
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.remove(seq)
            return None

    def remove(self, seq: int) -> None:
        """The batch was acknowledged: delete its file."""
        with self._lock:
            size = self._files.pop(seq, None)
            if size is None:
                return
            self.bytes -= size
        try:
            os.unlink(self._file(seq))
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            try:
                self._reserved = self._seq
                self._write_state()
            except OSError:
                pass
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
