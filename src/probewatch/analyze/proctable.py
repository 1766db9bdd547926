"""The process table: every process on the machine, its exec context and its lineage.

Seeded from /proc at start (every live process), then kept current from the process
lifecycle Events (``sched:sched_process_fork`` / ``exec`` / ``exit``) of the BPF
``syscalls`` program. With ``BpfSession(lifecycle=True, exec_info=True)`` the exec
record carries what the kernel knew at exec — argv, cwd, the interesting environment
variables, real/effective/saved ids, the login uid, start times, the cgroup's name —
so a process that lives under a millisecond is still known right.

Where only the plain lifecycle records exist (BPF without exec info, or tracefs
``sched`` events), the exec gives the path alone; argv, cwd, environment, creds and
login uid are then read from /proc/PID at the moment the event is handled (right only
for processes still running that program; ``Process.late`` is set) and a later
``syscalls:execve`` record fills argv when it has one.

Exited processes stay for ``grace_ns`` of event time (default 30 s), so alerts on
their children still show the lineage; then they are dropped. Beyond ``max_entries``
records, or beyond ``max_exited_bytes`` (an estimate of what the exited records hold:
argv, environment, cwd, fd paths; a storm of short-lived processes with 8 KiB command
lines must not grow the monitor by gigabytes), exited ones are dropped oldest first
and counted in ``dropped``; live ones whose pid has left /proc (an exit record lost)
are swept at most once a second; live processes are never dropped (the kernel bounds
them).

Where BPF is missing (tracefs ``sched`` events, see detect/pipeline.py) these are
unavailable for a process that has exited or exec'd again before its event is
handled: argv, cwd, environment, effective ids, login uid, cgroup/container id (the
exec gives the path only, fork and exit no start times, so a reused pid is told
apart only while /proc/PID/stat can be read); forks of threads are told from
processes by /proc/PID/status while the thread lives.

A pid is one process between its fork and its exit; reuse is recognised by the start
time (CLOCK_BOOTTIME ns, the clock of /proc/PID/stat). An orphan keeps its forking
parent as its lineage. chdir/fchdir move the cwd and the setuid/setgid family the
ids. After restore() (replay) /proc is never read; ``on_lookup`` / process_event()
let a capture store the processes read from /proc mid-run. Malformed Events are
counted in ``errors`` and skipped.

Example::

    table = ProcessTable()
    table.seed()                     # every live process, from /proc
    for ev in session.events():      # BpfSession(lifecycle=True, exec_info=True)
        table.on_event(ev)
    table.render_ancestry(4502)      # 'systemd(1) > sshd(812) > bash(4410) > python3(4502)'
"""

from __future__ import annotations

import os
import pwd
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .. import android
from ..collect.bpf.loader import EXEC_ENV_KEEP, pick_env, split_argv
from ..event import Event

__all__ = [
    "Process",
    "ProcessTable",
    "container_id",
    "read_proc_process",
    "INTERESTING_ENV",
    "NO_AUID",
    "PROCESS_EVENT",
]

#: environment variables kept per exec (see loader.EXEC_ENV_KEEP)
INTERESTING_ENV = EXEC_ENV_KEEP
#: the login uid of a process no login set (audit's "unset")
NO_AUID = 4294967295
#: the Event name of a process record (ProcessTable.process_event) in a capture
PROCESS_EVENT = "probewatch:process"

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_TICK_NS = 1_000_000_000 // _CLK_TCK

# docker (cgroupfs and systemd drivers), containerd/CRI, CRI-O, podman/libpod, k8s
_CONTAINER_RE = re.compile(
    r"(?:^|/|-|:)([0-9a-f]{64})(?:\.scope)?(?:/|$)"
)

FD_MAX = 64  # fds remembered per process
#: bytes of long fd paths remembered per process (64 paths of 4 KiB in each of
#: thousands of live processes would be gigabytes): the oldest fds go first
FD_BYTES_MAX = 16384
#: the start of a cwd the kernel gave cut (its first components missing): not "/"
CWD_CUT = "\u2026"


def container_id(cgroup: str) -> str | None:
    """The 64-hex container id in a cgroup path or name, else None.

    >>> container_id("/system.slice/docker-" + "ab" * 32 + ".scope")
    'abababababababababababababababababababababababababababababababab'
    >>> container_id("/user.slice/user-0.slice/session-3.scope") is None
    True
    """
    if not cgroup:
        return None
    found = None
    for m in _CONTAINER_RE.finditer(cgroup):
        found = m.group(1)
    return found


class Process:
    """One process: identity, image, context, lineage, a few of its fds.

    ``start``: start time (CLOCK_BOOTTIME ns; 0 unknown), ``pstart`` the parent's;
    ``exe``: the exec'd path (absolute), ``exe_name``: the executable file's own name
    (a symlink's target, a script's interpreter), ``argv``, ``cwd`` (at exec, chdir),
    ``env``: the kept environment variables; ids: ``uid``, ``euid``, ``gid``, ``egid``,
    ``auid`` (login uid, 4294967295 unset); ``cgroup`` (path or name), ``container``;
    ``exec_ts``/``exit_ts``: event times (ns), ``source``: "proc" (seeded), "fork",
    "exec" (kernel exec info), "exec-late" (read from /proc after the exec).
    """

    __slots__ = ("pid", "ppid", "start", "pstart", "exe", "exe_name", "argv", "cwd", "comm", "uid",
                 "euid", "gid", "egid", "auid", "cgroup", "cgroup_id", "container", "env",
                 "exec_ts", "exit_ts", "exit_code", "source", "late", "truncated", "fds")

    def __init__(self, pid: int, ppid: int = 0, start: int = 0) -> None:
        self.pid = pid
        self.ppid = ppid
        self.start = start
        self.pstart = 0
        self.exe = ""
        self.exe_name = ""  # the executable file's own name (symlinks resolved)
        self.argv: list[str] = []
        self.cwd = ""
        self.comm = ""
        self.uid = -1
        self.euid = -1
        self.gid = -1
        self.egid = -1
        self.auid = NO_AUID
        self.cgroup = ""
        self.cgroup_id = 0
        self.container: str | None = None
        self.env: dict[str, str] = {}
        self.exec_ts = 0
        self.exit_ts: int | None = None
        self.exit_code: int | None = None
        self.source = ""
        self.late = False
        self.truncated: tuple[str, ...] = ()
        self.fds: dict[int, str] | None = None

    @property
    def alive(self) -> bool:
        return self.exit_ts is None

    @property
    def name(self) -> str:
        """Short name for lineages: the exe's basename, else comm."""
        if self.exe:
            return self.exe.rsplit("/", 1)[-1] or self.exe
        return self.comm or "?"

    @property
    def command_line(self) -> str:
        return " ".join(self.argv)

    def inherit(self, parent: Process) -> None:
        """What a fork copies: image, context, creds, fds."""
        self.exe = parent.exe
        self.exe_name = parent.exe_name
        self.argv = parent.argv
        self.cwd = parent.cwd
        self.comm = parent.comm
        self.uid, self.euid, self.gid, self.egid = (parent.uid, parent.euid, parent.gid,
                                                    parent.egid)
        self.auid = parent.auid
        self.cgroup, self.cgroup_id, self.container = (parent.cgroup, parent.cgroup_id,
                                                       parent.container)
        self.env = parent.env
        self.exec_ts = parent.exec_ts
        self.late = parent.late
        self.truncated = parent.truncated
        if parent.fds:
            self.fds = dict(parent.fds)

    # -- fds
    def set_fd(self, fd: int, what: str) -> None:
        fds = self.fds
        if fds is None:
            fds = self.fds = {}
        elif fd not in fds and len(fds) >= FD_MAX:
            del fds[next(iter(fds))]
        fds.pop(fd, None)
        fds[fd] = what
        if len(what) > 256:  # only long paths can push past the byte bound
            total = sum(len(v) for v in fds.values())
            while total > FD_BYTES_MAX and len(fds) > 1:
                total -= len(fds.pop(next(iter(fds))))

    def fd(self, fd: int) -> str | None:
        return self.fds.get(fd) if self.fds else None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["fds"] = {str(k): v for k, v in (self.fds or {}).items()}
        d["truncated"] = list(self.truncated)
        d["argv"] = list(self.argv)
        d["env"] = dict(self.env)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Process:
        """The inverse of to_dict() (values of the wrong type are left at defaults)."""
        p = cls(_id(d.get("pid"), 0))
        for k in cls.__slots__:
            if k in d and k not in ("pid", "fds", "truncated", "argv", "env"):
                v, cur = d[k], getattr(p, k)
                want = _OPTIONAL.get(k) if cur is None else type(cur)
                if v is None and cur is None or want is not None and type(v) is want:
                    setattr(p, k, v)
        fds, env, argv = d.get("fds"), d.get("env"), d.get("argv")
        if isinstance(fds, dict):
            p.fds = {int(k): str(v) for k, v in fds.items() if str(k).lstrip("-").isdigit()
                     } or None
        if isinstance(env, dict):
            p.env = {str(k): str(v) for k, v in env.items()}
        if isinstance(argv, list):
            p.argv = [str(a) for a in argv]
        tr = d.get("truncated")
        p.truncated = tuple(str(x) for x in tr) if isinstance(tr, list) else ()
        return p

    def __repr__(self) -> str:
        state = "" if self.exit_ts is None else f", exited at {self.exit_ts}"
        return f"Process({self.pid}, ppid={self.ppid}, exe={self.exe!r}, argv={self.argv!r}{state})"


# ------------------------------------------------------------------ /proc


def _read(path: str, limit: int = 65536) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def read_proc_process(pid: int, root: str = "/proc") -> Process | None:
    """A Process from /proc/PID (None when it is gone or a thread's tid)."""
    base = f"{root}/{pid}"
    stat = _read(f"{base}/stat", 4096)
    if not stat:
        return None
    try:
        rp = stat.rindex(b")")
        comm = stat[stat.index(b"(") + 1 : rp].decode("utf-8", "surrogateescape")
        rest = stat[rp + 2 :].split()
        ppid = int(rest[1])
        start = int(rest[19]) * _TICK_NS
    except (ValueError, IndexError):
        return None
    p = Process(pid, ppid, start)
    p.comm = comm
    p.source = "proc"
    status = _read(f"{base}/status", 8192) or b""
    for line in status.splitlines():
        if line.startswith(b"Tgid:"):
            try:
                if int(line[5:]) != pid:
                    return None  # a thread
            except ValueError:
                pass
        elif line.startswith(b"Uid:"):
            ids = line.split()[1:]
            if len(ids) >= 2:
                p.uid, p.euid = int(ids[0]), int(ids[1])
        elif line.startswith(b"Gid:"):
            ids = line.split()[1:]
            if len(ids) >= 2:
                p.gid, p.egid = int(ids[0]), int(ids[1])
    p.argv = split_argv(_read(f"{base}/cmdline", 65536) or b"")
    exe = _readlink(f"{base}/exe")
    p.exe = exe.removesuffix(" (deleted)")
    p.exe_name = os.path.basename(p.exe)
    p.cwd = _readlink(f"{base}/cwd")
    auid = _read(f"{base}/loginuid", 64)
    if auid:
        try:
            p.auid = int(auid)
        except ValueError:
            pass
    cg = _read(f"{base}/cgroup", 4096) or b""
    for line in cg.splitlines():
        if line.startswith(b"0::"):
            p.cgroup = line[3:].decode("utf-8", "surrogateescape")
            break
    else:
        for line in cg.splitlines():
            parts = line.split(b":", 2)
            if len(parts) == 3 and container_id(parts[2].decode("utf-8", "replace")):
                p.cgroup = parts[2].decode("utf-8", "surrogateescape")
                break
    p.container = container_id(p.cgroup)
    env = _read(f"{base}/environ", 65536)
    if env:
        p.env = pick_env(env)
    return p


# ------------------------------------------------------------------ the table


class ProcessTable:
    """pid -> Process, kept current from lifecycle Events (see the module docstring).

    ``grace_ns``: how long exited processes stay (event time); ``max_entries``: the
    hard cap on records; ``max_exited_bytes``: the cap on the (estimated) bytes the
    exited records hold; ``proc_root``: where /proc is (tests).
    """

    def __init__(self, grace_ns: int = 30_000_000_000, max_entries: int = 32768,
                 proc_root: str = "/proc", max_exited_bytes: int = 64 << 20) -> None:
        self.grace_ns = grace_ns
        self.max_entries = max(16, max_entries)
        self.max_exited_bytes = max(1 << 16, max_exited_bytes)
        self.exited_bytes = 0  # estimated bytes held by the records in _exited
        self.proc_root = proc_root
        self.procs: dict[int, Process] = {}
        # replaced incarnations still in their grace period: (pid, start) -> Process
        self._gone: dict[tuple[int, int], Process] = {}
        # (exit_ts, pid, start, estimated bytes)
        self._exited: deque[tuple[int, int, int, int]] = deque()
        self._users: dict[int, str] = {}
        self._cg_paths: dict[int, str] = {}
        self._last: Event | None = None
        self._now = 0
        self._missing: dict[int, int] = {}  # pid -> ts of a failed /proc look-up
        self.dropped = 0  # records dropped by the cap (not by the grace period)
        self.errors = 0  # malformed lifecycle Events skipped
        self._last_sweep = 0
        self.lookups = 0  # /proc look-ups for pids seen before their fork
        # live: /proc describes the events' machine (False after restore(): a replay
        # must not mix in the processes of the machine it runs on)
        self.live = True
        # called with each process read from /proc after seeding (one whose fork was
        # not seen): a capture can store process_event(p) so a replay knows it too
        self.on_lookup: Callable[[Process], None] | None = None

    # -- seeding
    def seed(self) -> int:
        """Read every live process from /proc; returns how many."""
        n = 0
        try:
            names = os.listdir(self.proc_root)
        except OSError:
            return 0
        for name in names:
            if not name.isdigit():
                continue
            p = read_proc_process(int(name), self.proc_root)
            if p is None:
                continue
            self.procs[p.pid] = p
            n += 1
        for p in self.procs.values():
            par = self.procs.get(p.ppid)
            if par is not None:
                p.pstart = par.start
        return n

    def snapshot(self) -> list[dict[str, Any]]:
        """Every record as a JSON-ready dict (for a capture; see restore())."""
        out = [p.to_dict() for p in self.procs.values()]
        out.extend(p.to_dict() for p in self._gone.values())
        return out

    def restore(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Seed from snapshot() records instead of /proc (replay: /proc is not read
        from then on)."""
        self.live = False
        for d in records:
            p = Process.from_dict(d)
            cur = self.procs.get(p.pid)
            if cur is None or (p.exit_ts is None and cur.exit_ts is not None):
                self.procs[p.pid] = p
            if p.exit_ts is not None:
                self._note_exit(p.exit_ts, p)

    # -- look-ups
    def __len__(self) -> int:
        return len(self.procs) + len(self._gone)

    def __contains__(self, pid: object) -> bool:
        return pid in self.procs

    def __iter__(self) -> Iterator[Process]:
        return iter(list(self.procs.values()))

    def get(self, pid: int, start: int = 0) -> Process | None:
        """The process with this pid (and start time, when given and known).

        A pid never seen is looked up in /proc (a process that started before the
        table or whose fork was not seen)."""
        p = self.procs.get(pid)
        if p is not None:
            if not start or not p.start or _same_start(p.start, start):
                return p
            return self._gone.get((pid, start)) or _find_gone(self._gone, pid, start)
        if start:
            g = self._gone.get((pid, start)) or _find_gone(self._gone, pid, start)
            if g is not None:
                return g
        if pid <= 0 or not self.live:
            return None
        miss = self._missing.get(pid)
        if miss is not None and self._now - miss < 1_000_000_000:
            return None
        p = read_proc_process(pid, self.proc_root)
        self.lookups += 1
        if p is None:
            if len(self._missing) > 4096:
                self._missing.clear()
            self._missing[pid] = self._now
            return None
        self.procs[pid] = p
        self._cap()
        if self.on_lookup is not None:
            self.on_lookup(p)
        return p

    def process_event(self, p: Process, ts: int | None = None) -> Event:
        """An Event that makes a table learn ``p`` (``PROCESS_EVENT``; for captures)."""
        return Event(self._now if ts is None else ts, 0, p.pid, p.pid, p.comm,
                     PROCESS_EVENT, "probewatch:proctable", p.to_dict())

    def parent(self, p: Process) -> Process | None:
        if not p.ppid or p.ppid == p.pid:
            return None
        return self.get(p.ppid, p.pstart)

    def ancestry(self, pid: int, limit: int = 64) -> list[Process]:
        """The process and its ancestors, self first, up to pid 1 (or the oldest known)."""
        out: list[Process] = []
        p = self.get(pid)
        seen: set[int] = set()
        while p is not None and p.pid not in seen and len(out) < limit:
            out.append(p)
            seen.add(p.pid)
            if p.pid == 1:
                break
            p = self.parent(p)
        return out

    def render_ancestry(self, pid: int, limit: int = 64) -> str:
        """'systemd(1) > sshd(812) > bash(4410) > python3(4502)' (oldest first)."""
        return " > ".join(f"{p.name}({p.pid})" for p in reversed(self.ancestry(pid, limit)))

    def user_name(self, uid: int) -> str:
        """The user name of a uid ('root'); the number as text when unknown."""
        if uid < 0:
            return ""
        name = self._users.get(uid)
        if name is None:
            # Android: an app's uid is named by its package (/data/system/packages.list)
            name = android.app_name(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                name = str(uid)
            if len(self._users) > 4096:
                self._users.clear()
            self._users[uid] = name
        return name

    # -- events
    def on_event(self, ev: Event) -> Process | None:
        """Apply one Event (lifecycle ones change the table; others only advance time).

        Applying the same Event object twice in a row is a no-op."""
        if ev is self._last:
            return None
        self._last = ev
        ts = ev.ts
        if ts > self._now:
            self._now = ts
            if self._exited and self._exited[0][0] + self.grace_ns <= ts:
                self.expire(ts)
        name = ev.event
        try:
            if name == "sched:sched_process_fork":
                return self._fork(ev)
            if name == "sched:sched_process_exec":
                return self._exec(ev)
            if name == "sched:sched_process_exit":
                return self._exit(ev)
            if name == PROCESS_EVENT:
                return self._learn(ev)
            if name == "syscalls:execve" or name == "syscalls:execveat":
                self._execve_syscall(ev)
            elif name == "syscalls:chdir" or name == "syscalls:fchdir":
                self._chdir(ev)
            elif name in _ID_SYSCALLS:
                self._setid(ev, name[9:])
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError):
            self.errors += 1  # a malformed record (corrupt capture): counted, skipped
        return None

    def _setid(self, ev: Event, name: str) -> None:
        """setuid/setgid family returning 0: the ids change (as credentials(7) says)."""
        f = ev.fields
        if f.get("ret") != 0:
            return
        p = self.procs.get(ev.pid)
        if p is None:
            return

        def arg(n: str) -> int | None:
            v = f.get(n)
            if not isinstance(v, int):
                return None
            v &= 0xFFFFFFFF
            return None if v == 0xFFFFFFFF else v

        if name == "setuid":
            u = arg("uid")
            if u is not None:
                if p.euid == 0:
                    p.uid = u
                p.euid = u
        elif name == "setgid":
            g = arg("gid")
            if g is not None:
                if p.euid == 0:
                    p.gid = g
                p.egid = g
        elif name in ("setreuid", "setresuid"):
            r, e = arg("ruid"), arg("euid")
            p.uid = p.uid if r is None else r
            p.euid = p.euid if e is None else e
        elif name in ("setregid", "setresgid"):
            r, e = arg("rgid"), arg("egid")
            p.gid = p.gid if r is None else r
            p.egid = p.egid if e is None else e

    def _learn(self, ev: Event) -> Process | None:
        """A process record stored by a live run (process_event): known from now on,
        unless the table already has that pid from events."""
        p = Process.from_dict(ev.fields)
        if p.pid <= 0 or p.pid in self.procs:
            return None
        self.procs[p.pid] = p
        return p

    def _fork(self, ev: Event) -> Process | None:
        f = ev.fields
        child = f.get("child_pid")
        if not isinstance(child, int) or child <= 0:
            return None
        start = f.get("child_start_boottime")
        if not isinstance(start, int):
            # plain fork records also report new threads: only a new tgid is a process
            status = _read(f"{self.proc_root}/{child}/status", 512) if self.live else None
            if status:
                m = re.search(rb"\nTgid:\s*(\d+)", status)
                if m and int(m.group(1)) != child:
                    return None
            start = 0
        parent = self.get(ev.pid, f.get("parent_start_boottime") or 0)
        p = Process(child, ev.pid, start)
        if parent is not None:
            p.inherit(parent)
            p.pstart = parent.start
        else:
            p.comm = ev.comm
            _ids_from_hdr(p, f)
        if isinstance(f.get("parent_start_boottime"), int):
            p.pstart = f["parent_start_boottime"]
        p.source = "fork"
        p.cgroup_id = f.get("cgroup", p.cgroup_id) or p.cgroup_id
        self._replace(p)
        return p

    def _replace(self, p: Process) -> None:
        old = self.procs.get(p.pid)
        if old is not None and old is not p:
            if old.exit_ts is not None and self.grace_ns > 0:
                self._gone[(old.pid, old.start)] = old
        self.procs[p.pid] = p
        self._missing.pop(p.pid, None)
        if len(self.procs) + len(self._gone) > self.max_entries:
            self._cap()

    def _exec(self, ev: Event) -> Process | None:
        f = ev.fields
        pid = ev.pid
        start = f.get("start_boottime")
        p = self.procs.get(pid)
        if p is None or (isinstance(start, int) and p.start and not _same_start(p.start, start)):
            p = Process(pid, _id(f.get("ppid"), 0), start if isinstance(start, int) else 0)
            self._replace(p)
        elif isinstance(start, int) and not p.start:
            p.start = start
        ppid = f.get("ppid")
        # the kernel's parent, unless the forking parent has exited since (then the
        # kernel reparented to a reaper; the forker is the lineage that matters)
        cur = self.procs.get(p.ppid) if p.ppid else None
        if isinstance(ppid, int) and ppid > 0 and (cur is None or cur.exit_ts is None):
            p.ppid = ppid
            if isinstance(f.get("parent_start_boottime"), int):
                p.pstart = f["parent_start_boottime"]
        p.exit_ts = None
        p.exec_ts = ev.ts
        p.comm = ev.comm
        fn = f.get("filename") or ""
        if "argv" in f and "cwd" in f:
            # kernel exec info: everything as it was at exec
            cwd = f.get("cwd")
            tr = f.get("truncated")
            if isinstance(cwd, str) and cwd:
                if isinstance(tr, list) and "cwd" in tr:
                    # the kernel gave the last components only (deeper than
                    # PW_CWD_DEPTH or longer than PW_CWD_MAX): the cwd this table
                    # followed (fork, chdir) when it ends so, else a path that cannot
                    # pass for an absolute one (a nest of directories under /tmp must
                    # not read as "/etc/...")
                    p.cwd = p.cwd if p.cwd.endswith(cwd) else CWD_CUT + cwd
                else:
                    p.cwd = cwd
            argv = f.get("argv")
            p.argv = [str(a) for a in argv] if isinstance(argv, list) else []
            env = f.get("env")
            p.env = ({str(k): str(v) for k, v in env.items()} if isinstance(env, dict)
                     else {})
            if isinstance(tr, list) and "env" in tr and self.live:
                # the kernel walked only part of a huge environment (more strings than
                # its loop takes): the rest from /proc while the program runs, so an
                # LD_PRELOAD behind 200,000 empty variables is still seen
                more = _read(f"{self.proc_root}/{pid}/environ", 8 << 20)
                if more and _same_image(_readlink(f"{self.proc_root}/{pid}/exe"),
                                        fn if isinstance(fn, str) else ""):
                    p.env = {**pick_env(more), **p.env}
            p.exe = _exe_path(p, fn if isinstance(fn, str) else str(fn))
            xn = f.get("exe_name")
            p.exe_name = xn if isinstance(xn, str) else ""
            p.uid = _id(f.get("uid"), p.uid)
            p.gid = _id(f.get("gid"), p.gid)
            p.euid = _id(f.get("euid"), p.euid)
            p.egid = _id(f.get("egid"), p.egid)
            p.auid = _id(f.get("loginuid"), p.auid)
            p.truncated = tuple(str(x) for x in tr) if isinstance(tr, list) else ()
            p.late = False
            p.source = "exec"
            cg = f.get("cgroup_name") or ""
            cid = f.get("cgroup")
            if isinstance(cid, int) and cid and (cid != p.cgroup_id or not p.cgroup):
                # moved to another (v2) cgroup: its path names the container, if any
                p.cgroup = self._cgroup_path(cid) or cg or p.cgroup
                p.cgroup_id = cid
                p.container = container_id(p.cgroup) or container_id(cg) or (
                    p.container if not cg and not p.cgroup.strip("/") else None)
        else:
            # path only: the rest from /proc now (right while it runs that program)
            info = read_proc_process(pid, self.proc_root) if self.live else None
            p.late = True
            p.source = "exec-late"
            p.argv = []
            p.exe_name = ""
            if info is not None and _same_image(info.exe, fn):
                p.argv, p.env = info.argv, info.env
                p.exe_name = info.exe_name
                p.cwd = info.cwd or p.cwd
                p.uid, p.euid, p.gid, p.egid = info.uid, info.euid, info.gid, info.egid
                p.auid = info.auid
                p.cgroup, p.container = info.cgroup, info.container
            else:
                _ids_from_hdr(p, f)
                p.env = {}
            p.exe = _exe_path(p, fn)
            p.truncated = ()
        return p

    def _execve_syscall(self, ev: Event) -> None:
        f = ev.fields
        if f.get("ret") != 0:
            return
        p = self.procs.get(ev.pid)
        argv = f.get("argv")
        if p is not None and p.late and isinstance(argv, list) and not p.argv:
            p.argv = [str(a) for a in argv]

    def _chdir(self, ev: Event) -> None:
        f = ev.fields
        if f.get("ret") != 0:
            return
        p = self.procs.get(ev.pid)
        if p is None:
            return
        if ev.event == "syscalls:chdir":
            path = f.get("filename")
            if isinstance(path, str) and path:
                p.cwd = _abspath(path, p.cwd)
        else:
            fd = f.get("fd")
            target = p.fd(fd) if isinstance(fd, int) else None
            if target and target.startswith("/"):
                p.cwd = target

    def _exit(self, ev: Event) -> Process | None:
        f = ev.fields
        if "group_dead" in f and not f.get("group_dead"):
            return None
        p = self.procs.get(ev.pid)
        start = f.get("start_boottime")
        if p is None:
            return None
        if isinstance(start, int) and start and p.start and not _same_start(p.start, start):
            return None
        if p.exit_ts is None:
            p.exit_ts = ev.ts
            p.exit_code = f.get("exit_code")
            self._note_exit(ev.ts, p)
        return p

    def _note_exit(self, ts: int, p: Process) -> None:
        size = _footprint(p)
        self._exited.append((ts, p.pid, p.start, size))
        self.exited_bytes += size
        if self.exited_bytes > self.max_exited_bytes:
            # oldest first, to 7/8 of the budget (not one record per exit)
            q = self._exited
            low = self.max_exited_bytes * 7 // 8
            while self.exited_bytes > low and q:
                _, pid, start, n = q.popleft()
                self.exited_bytes -= n
                self.dropped += self._drop(pid, start)

    # -- bounds
    def expire(self, now_ts: int | None = None) -> int:
        """Drop processes that exited more than grace_ns before now_ts; returns how many."""
        now = self._now if now_ts is None else now_ts
        q = self._exited
        n = 0
        while q and q[0][0] + self.grace_ns <= now:
            _, pid, start, size = q.popleft()
            self.exited_bytes -= size
            n += self._drop(pid, start)
        return n

    def _drop(self, pid: int, start: int) -> int:
        p = self.procs.get(pid)
        if p is not None and p.exit_ts is not None and p.start == start:
            del self.procs[pid]
            return 1
        if self._gone.pop((pid, start), None) is not None:
            return 1
        return 0

    def _cap(self) -> None:
        """Over max_entries: drop exited records oldest first; then (at most once a
        second of event time) drop live records whose pid is gone from /proc (their
        exit was lost). Live processes are never dropped: the kernel bounds them."""
        limit = self.max_entries
        q = self._exited
        while len(self.procs) + len(self._gone) > limit * 7 // 8 and q:
            _, pid, start, size = q.popleft()
            self.exited_bytes -= size
            self.dropped += self._drop(pid, start)
        if len(self.procs) + len(self._gone) <= limit:
            return
        if not self.live or (self._last_sweep and
                             self._now - self._last_sweep < 1_000_000_000):
            return
        self._last_sweep = self._now or 1
        for pid in list(self.procs):
            p = self.procs[pid]
            if p.exit_ts is None and not os.path.exists(f"{self.proc_root}/{pid}"):
                del self.procs[pid]
                self.dropped += 1

    def _cgroup_path(self, cid: int) -> str:
        """cgroup v2 id (the directory's inode) -> its path, from the cgroup2 mount."""
        path = self._cg_paths.get(cid)
        if path is not None or not self.live:
            return path or ""
        base = _cgroup2_mount()
        if not base:
            return ""
        found = ""
        if len(self._cg_paths) > 4096:
            self._cg_paths.clear()
        try:
            for d, _dirs, _files in os.walk(base):
                try:
                    ino = os.stat(d).st_ino
                except OSError:
                    continue
                rel = d[len(base):] or "/"
                self._cg_paths[ino] = rel
                if ino == cid:
                    found = rel
        except OSError:
            pass
        self._cg_paths.setdefault(cid, found)
        return found


_ID_SYSCALLS = frozenset(f"syscalls:{n}" for n in (
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid"))


_OPTIONAL = {"exit_ts": int, "exit_code": int, "container": str}


def _id(v: Any, default: int) -> int:
    return v if type(v) is int else default


def _cgroup2_mount() -> str:
    """Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
    systems); '' when it is not."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return ""


def _same_start(a: int, b: int) -> bool:
    """Start times equal (a /proc start is a whole number of clock ticks: then the
    kernel's ns value rounded down to a tick matches it)."""
    if a == b:
        return True
    if a % _TICK_NS == 0:
        return b - b % _TICK_NS == a
    if b % _TICK_NS == 0:
        return a - a % _TICK_NS == b
    return False


def _find_gone(gone: dict[tuple[int, int], Process], pid: int, start: int) -> Process | None:
    for (gp, gs), p in gone.items():
        if gp == pid and _same_start(gs, start):
            return p
    return None


def _ids_from_hdr(p: Process, f: Mapping[str, Any]) -> None:
    uid, gid = f.get("uid"), f.get("gid")
    if isinstance(uid, int):
        p.uid = uid if p.euid < 0 or p.uid < 0 else p.uid
        if p.euid < 0:
            p.euid = uid
    if isinstance(gid, int):
        p.gid = gid if p.egid < 0 or p.gid < 0 else p.gid
        if p.egid < 0:
            p.egid = gid


def _footprint(p: Process) -> int:
    """An estimate of the bytes a record holds of its own (CPython object overheads
    included, roughly): argv and environment when it exec'd (a fork shares its
    parent's), the cwd, the remembered fd paths."""
    n = 600 + len(p.cwd) + len(p.exe) + len(p.exe_name)
    if p.source != "fork":
        n += sum(len(a) for a in p.argv) + 64 * len(p.argv)
        n += sum(len(k) + len(v) for k, v in p.env.items()) + 160 * len(p.env)
    if p.fds:
        n += sum(len(v) for v in p.fds.values()) + 120 * len(p.fds)
    return n


def _abspath(path: str, cwd: str) -> str:
    """path made absolute against cwd, '.' and '..' folded (no symlinks followed)."""
    if not path:
        return ""
    if path[0] != "/":
        if not cwd:
            return path
        path = f"{cwd.rstrip('/')}/{path}"
    if "/." not in path and "//" not in path and path[-1] != "/":
        return path  # already normal (the common case)
    out = os.path.normpath(path)
    return "/" + out.lstrip("/") if out.startswith("//") else out


def _exe_path(p: Process, filename: str) -> str:
    """The exec'd path, absolute; /dev/fd/N of a memfd becomes '/memfd:NAME (deleted)'
    (what /proc/PID/exe shows) when the fd table knows N."""
    if filename.startswith("/dev/fd/") and p.fds:
        num = filename[8:].split("/", 1)[0]
        t = p.fds.get(int(num)) if num.isdigit() else None
        if t is not None and t.startswith("memfd:"):
            return f"/{t} (deleted)"
        if t is not None and t.startswith("/") and "/" not in filename[8:]:
            return t
    return _abspath(filename, p.cwd)


def _same_image(exe: str, filename: str) -> bool:
    if not exe or not filename:
        return False
    return os.path.basename(exe) == os.path.basename(filename) or os.path.realpath(
        filename) == exe
