"""SslSession: TLS plaintext (OpenSSL, GnuTLS, Go crypto/tls) on the BPF backend.

A :class:`~probewatch.bpf_session.BpfSession` running ``sslsniff.bpf.c``: uprobes on
the TLS API functions of every TLS library found (:mod:`probewatch.elf.tlslibs`),
the syscall tracepoints that give each TLS object its socket, and the fork
tracepoint that keeps children in the pid filter. Events are ``tls:write`` and
``tls:read`` (fields in :mod:`probewatch.collect.bpf.ssl`).

Libraries are found at start (the ld.so cache, the executables and maps of ``-p``
processes, the command's executable, ``binaries``) and again every ``rescan_s``
seconds in the maps of the traced processes (all processes without a pid filter):
a library a process dlopen()s later, from a path not probed yet, is probed then
(one already probed is caught by its existing uprobes: uprobes belong to the file).

Example::

    with SslSession() as s:
        s.trace_command(["curl", "-sk", "https://127.0.0.1:8443/"])
        for ev in s.events():
            print(ev.event, ev.fields["len"], ev.fields["data"][:60])
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .bpf_session import BpfSession
from .collect.bpf import libbpf
from .collect.bpf.ssl import (
    CHUNK,
    EV_SSL,
    FUNC_IDS,
    MAX_CHUNKS,
    STAT_SSL_BYTES,
    STAT_SSL_CUT,
    SslDecoder,
)
from .errors import NotFound, ProbewatchError
from .event import Event

__all__ = ["SslSession", "FD_SYSCALLS"]


class _Dispatch:
    """A decoder for a ring shared by the syscalls and sslsniff objects: TLS records
    to the TLS decoder, everything else to the syscalls decoder."""

    def __init__(self, main: Any, tls: SslDecoder) -> None:
        self.main = main
        self.tls = tls
        self.table = getattr(main, "table", None)

    def decode(self, rec: bytes) -> Event | None:
        if rec[:2] == _SSL_KIND:
            return self.tls.decode(rec)
        ev: Event | None = self.main.decode(rec)
        return ev

    def __getattr__(self, name: str) -> Any:
        return getattr(self.main, name)

_SSL_KIND = struct.pack("<H", EV_SSL)

#: syscalls whose entry gives the socket of a TLS call in progress (fd is argument 0)
FD_SYSCALLS = ("write", "read", "sendto", "recvfrom", "sendmsg", "recvmsg", "writev",
               "readv")


class SslSession(BpfSession):
    """TLS plaintext capture. ``data_max``: bytes copied per call (the rest counted);
    ``binaries``: more files to probe (a Go program, a static OpenSSL);
    ``system_libs``: probe the ld.so cache's libssl/libgnutls (default True);
    ``rescan_s``: look for newly mapped TLS libraries this often (0: never; None: 1 s
    with a pid filter or command, 5 s for the whole machine, where reading every
    process's maps costs ~40-100 ms). Other options: those of
    :class:`~probewatch.bpf_session.BpfSession` (``pids``, ``comm``, ...).
    ``probewatch.Session(tool="sslsniff", ...)`` returns one."""

    def __init__(self, tool: str = "sslsniff", *, data_max: int = 16384,
                 binaries: Sequence[str] = (), system_libs: bool = True,
                 rescan_s: float | None = None, tls: bool = True, **kw: Any) -> None:
        if tool != "sslsniff":
            raise ProbewatchError(f"SslSession is the sslsniff tool, not {tool!r}")
        super().__init__("sslsniff", **kw)
        self._tls = tls
        self.data_max = max(0, min(int(data_max), CHUNK * MAX_CHUNKS))
        self._binaries = list(binaries)
        self._system_libs = system_libs
        self._rescan_s = rescan_s
        self._seen: dict[tuple[int, int], int] = {}  # inode -> lib index (0: none)
        self._exes: set[tuple[int, int, int]] = set()
        self._scanned: dict[int, bytes] = {}  # pid -> its start time and size, scanned
        self._scan_next = 0  # the pid the next rescan starts at (over budget)
        self.libs: dict[int, tuple[str, str]] = {}
        self.decoder = SslDecoder(self.libs)  # type: ignore[assignment]
        self.notes: list[str] = []  # what a person should know (nothing found, ...)
        self.probed: list[str] = []  # "path (library: functions)" per probed file
        self._cmd_exe: str | None = None
        self._last_scan = 0.0
        self._share: BpfSession | None = None
        self._readline: str | None = None

    # -- beside another session (probewatch watch's user-space layer)
    def share_with(self, primary: BpfSession, bash_path: str | None = None) -> None:
        """Run beside ``primary`` (a syscalls BpfSession, not started yet): this object
        uses its ring buffer, pid set and counters, is armed in its start() before a
        gated command runs, and its records come out of ``primary.events()`` (the
        primary's decoder learns the TLS records). ``bash_path``: also arm bash's
        readline() (``bash:readline`` events)."""
        self._share = primary
        self._readline = bash_path
        self._signals.restore()  # the primary's handlers rule: one run, one signal policy
        primary.before_release.append(self._start_shared)
        tls: Any = self.decoder
        primary.decoder = _Dispatch(primary.decoder, tls)  # type: ignore[assignment]

    def _start_shared(self) -> None:
        from .collect.bpf.loader import object_bytes

        primary = self._share
        assert primary is not None and primary._obj is not None
        self._started = True
        self._pids = list(primary._pids)
        self._follow = primary._follow
        obj = libbpf.BpfObject.open(object_bytes("sslsniff"), "sslsniff")
        self._obj = obj
        self._configure(obj)
        for m in ("events", "pids", "stats"):
            obj.reuse_map(m, primary._obj.map(m).fd)
        obj.load()
        self._attach(obj)
        if self._readline:
            from .elf.symbols import resolve_symbol

            try:
                sym = resolve_symbol(self._readline, "readline")[0]
            except ProbewatchError as e:
                self.notes.append(f"typed lines not captured: {e}")
            else:
                obj.attach_uprobe("pw_readline", self._readline, sym.offset, retprobe=True)
                self.probed.append(f"{self._readline} (readline)")
        self._t0 = time.monotonic()

    def trace_command(self, argv: Sequence[str]) -> int:
        from .collect.command import resolve_command

        self._cmd_exe = os.path.realpath(resolve_command(argv[0]))
        return super().trace_command(argv)

    # -- setup
    def _configure(self, obj: libbpf.BpfObject) -> None:
        super()._configure(obj)
        obj.rodata["data_max"] = self.data_max

    def _attach(self, obj: libbpf.BpfObject) -> None:
        from .kernel.tracefs import tracefs_root

        if self._share is None:
            obj.attach_tracepoint("pw_fork", "sched", "sched_process_fork")
        if not self._tls:
            return
        base = os.path.join(tracefs_root(), "events", "syscalls")
        for sc in FD_SYSCALLS:
            if os.path.isdir(os.path.join(base, f"sys_enter_{sc}")):
                obj.attach_tracepoint("pw_ssl_sys", "syscalls", f"sys_enter_{sc}")
        if self._system_libs:
            from .elf.tlslibs import system_tls_libraries

            for p in system_tls_libraries():
                self._add_file(p)
        for b in self._binaries:
            self._add_file(b, explicit=True)
        if self._cmd_exe:
            self._add_file(self._cmd_exe, explicit=True)
        for pid in self._pids:
            if pid == self._command.pid:
                continue
            self._scan_pid(pid, explicit=True)
        self._last_scan = time.monotonic()

    def _add_file(self, path: str, explicit: bool = False) -> bool:
        """Probe the TLS functions of ``path``; False when it has none."""
        from .elf.tlslibs import searched_text, tls_dependencies, tls_target

        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self._seen:
            return self._seen[key] != 0
        self._seen[key] = 0
        try:
            t = tls_target(path)
        except (NotFound, ProbewatchError) as e:
            if explicit:
                self.notes.append(str(e))
            return False
        if t is None:
            if explicit and not tls_dependencies(path):
                self.notes.append(searched_text(path))
            return False
        self.notes.extend(t.warnings)
        if not t.functions:
            return False
        assert self._obj is not None
        idx = len(self.libs) + 1
        self.libs[idx] = (path, t.library)
        self._seen[key] = idx
        obj = self._obj
        try:
            for fn in t.functions:
                cookie = idx << 8 | FUNC_IDS[fn.name]
                if fn.kind == "go":
                    obj.attach_uprobe("pw_go_enter", path, fn.offset, cookie=cookie)
                    for r in fn.rets:
                        obj.attach_uprobe("pw_go_exit", path, r, cookie=cookie)
                    continue
                enter = "pw_ssl_enter_ex" if fn.kind == "ssl_ex" else "pw_ssl_enter"
                obj.attach_uprobe(enter, path, fn.offset, cookie=cookie)
                obj.attach_uprobe("pw_ssl_exit", path, fn.offset, retprobe=True,
                                  cookie=cookie)
        except libbpf.BpfLibError as e:
            # a process that exited between the scan and the attach (/proc/PID/exe is
            # gone): nothing to probe any more. Anything else is said, and the session
            # goes on without this file (a rescan must never end a watch).
            if not (path.startswith("/proc/") and e.errno in (errno.ENOENT, errno.ESRCH)):
                self.notes.append(f"TLS functions of {path} not probed: {e}")
            return False
        self.probed.append(f"{path} ({t.library}: {', '.join(f.name for f in t.functions)})")
        return True

    def _scan_pid(self, pid: int, explicit: bool = False, exe: bool = True) -> bool:
        """Probe the TLS libraries ``pid`` maps and (``exe``) its executable's own TLS
        functions (static OpenSSL, Go): parsing executables is kept to the processes
        traced by pid, the command's and --binary (not every program on the machine)."""
        from .elf.tlslibs import process_tls_files

        found = False
        for f in process_tls_files(pid):
            found = self._add_file(f) or found
        if not exe:
            return found
        if len(self._exes) > 65536:
            self._exes.clear()
        try:
            path = os.readlink(f"/proc/{pid}/exe")
            st = os.stat(f"/proc/{pid}/exe")
        except OSError:
            return found
        k = (pid, st.st_dev, st.st_ino)
        if k not in self._exes:
            self._exes.add(k)
            if self._add_file(f"/proc/{pid}/exe", explicit=explicit and not found):
                found = True
            elif explicit and not found and self.notes and "/proc/" in self.notes[-1]:
                self.notes[-1] = self.notes[-1].replace(f"/proc/{pid}/exe", path) + (
                    f" and /proc/{pid}/maps")
        return found

    @property
    def rescan_interval(self) -> float:
        if self._rescan_s is not None:
            return self._rescan_s
        return 1.0 if self._pids else 5.0

    def rescan(self) -> None:
        """Probe TLS libraries mapped since the last look (dlopen, new processes)."""
        if self._obj is None or self._closed:
            return
        with self._signals.deferred():
            me = os.getpid()
            if self._pids:  # the traced processes only: few, each looked at every time
                for pid in [struct.unpack("<I", k)[0] for k in self._obj.map("pids").keys()]:
                    if pid != me:
                        self._scan_pid(pid, exe=True)
                self._last_scan = time.monotonic()
                return
            pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
            # every process, with bounded work: a process with 65,530 mappings costs
            # ~60 ms to read, and dozens of them must not keep the event loop here
            # (the ring buffer would overflow: a blinded monitor). A process whose
            # start time and size have not changed since its last scan is skipped; at
            # most RESCAN_BUDGET_S of scanning per call, the next going on from there.
            seen = self._scanned
            if len(seen) > 65536:
                seen.clear()
            pids.sort()
            start = self._scan_next
            order = [p for p in pids if p >= start] + [p for p in pids if p < start]
            end = time.monotonic() + RESCAN_BUDGET_S
            self._scan_next = 0
            n = 0
            for pid in order:
                if pid == me:
                    continue
                key = _stat_key(pid)
                if key is None or seen.get(pid) == key:
                    continue
                if n and time.monotonic() > end:
                    self._scan_next = pid
                    break
                seen[pid] = key
                self._scan_pid(pid, exe=False)
                n += 1
        self._last_scan = time.monotonic()

    def _drain(self) -> Iterator[Event]:
        every = self.rescan_interval
        if every and time.monotonic() - self._last_scan >= every:
            self.rescan()
        yield from super()._drain()
        stale = self.decoder.take_stale()  # type: ignore[attr-defined]
        for ev in stale:
            self.counts[ev.event] = self.counts.get(ev.event, 0) + 1
            yield ev

    # -- results
    def byte_counts(self) -> tuple[int, int]:
        """(plaintext bytes copied, plaintext bytes cut at data_max), from the kernel."""
        if self._obj is None or self._obj.closed:
            return getattr(self, "_last_bytes", (0, 0))
        m = self._obj.map("stats")
        out = []
        for slot in (STAT_SSL_BYTES, STAT_SSL_CUT):
            v = m.lookup(struct.pack("<I", slot), percpu=True) or b""
            out.append(sum(struct.unpack_from("<Q", v, 8 * c)[0] for c in range(len(v) // 8)))
        self._last_bytes = (out[0], out[1])
        return self._last_bytes

    def close(self) -> None:
        if not self._closed and self._obj is not None and not self._obj.closed:
            try:
                self.byte_counts()
            except ProbewatchError:
                pass
        super().close()


#: seconds of /proc/PID/maps scanning one rescan() may take (the rest: the next one)
RESCAN_BUDGET_S = 0.25


def _stat_key(pid: int) -> bytes | None:
    """A process's start time and virtual size (/proc/PID/stat fields 22-23): what
    changes when a library is mapped (dlopen) or the pid is a new process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    rest = raw[raw.rfind(b")") + 2:].split()
    return b" ".join(rest[19:21]) if len(rest) > 21 else None
