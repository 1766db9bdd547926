"""Gather every observer and hook on this machine that is not this run's own.

The kernel is asked directly: tracefs control files (``dynamic_events``, ``set_event``,
``events/*/*/filter`` and ``trigger``, ``current_tracer``, ``instances/``), bpf(2)
(BPF_PROG_GET_NEXT_ID, BPF_LINK_GET_NEXT_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_TASK_FD_QUERY),
and /proc (``fd``/``fdinfo``: which process holds which program, link or perf event;
``status``: TracerPid; ``environ``: LD_PRELOAD), /etc/ld.so.preload,
/proc/sys/kernel/tainted and /proc/modules.

Example::

    rep = Scanner().scan()
    [f.what for f in rep.findings if f.kind == "bpf_prog"]
    # ['tracepoint prog sys_enter_getpp (id 21326) at tracepoint syscalls/sys_enter_getppid']
"""

from __future__ import annotations

import glob
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: the kinds of finding, in the order a report lists them
KINDS = (
    "dynamic_event", "instance", "tracer", "enabled_event", "event_filter", "event_trigger",
    "bpf_prog", "bpf_link", "perf_event", "ptrace", "preload", "ld_so_preload", "taint",
    "module",
)

#: library / program names (file name prefixes) by what probing them can steal
TARGET_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tls", ("libssl", "libcrypto", "libgnutls", "libnss3", "libssl3", "libnspr4",
             "libwolfssl", "libmbedtls", "libmbedx509", "libboringssl", "libs2n",
             "libbotan", "libgnutls-openssl", "openssl")),
    ("pam", ("libpam", "pam_")),
    ("auth", ("sshd", "sudo", "su", "login", "passwd", "ssh-agent", "gpg-agent", "ssh",
              "libkrb5", "libsasl2", "libcrypt", "libshadow", "polkit-agent-helper-1",
              "unix_chkpwd")),
    ("shell", ("bash", "zsh", "libreadline", "sh", "dash")),
)

#: /proc/sys/kernel/tainted bits (Documentation/admin-guide/tainted-kernels.rst)
TAINT_FLAGS = (
    ("P", "proprietary module loaded"), ("F", "module force-loaded"),
    ("S", "out-of-spec system"), ("R", "module force-unloaded"),
    ("M", "machine check"), ("B", "bad page"), ("U", "taint requested by user space"),
    ("D", "kernel died (oops)"), ("A", "ACPI table overridden"), ("W", "kernel warning"),
    ("C", "staging driver loaded"), ("I", "firmware bug workaround"),
    ("O", "out-of-tree module loaded"), ("E", "unsigned module loaded"),
    ("L", "soft lockup"), ("K", "kernel live-patched"), ("X", "auxiliary taint"),
    ("T", "built with struct randomization"), ("N", "in-kernel test run"),
    ("J", "userspace used a mutating debug operation in fwctl"),
)


def target_class(path: str | None) -> str:
    """What a probe on ``path`` can see: 'tls', 'pam', 'auth', 'shell' or ''.

    >>> target_class("/usr/lib/x86_64-linux-gnu/libssl.so.3"), target_class("/bin/ls")
    ('tls', '')
    """
    if not path:
        return ""
    base = os.path.basename(path)
    for cls, names in TARGET_CLASSES:
        for n in names:
            if base == n or base.startswith(n + ".") or (
                    n.endswith("_") and base.startswith(n)) or (
                    n.startswith("lib") and base.startswith(n) and
                    base[len(n):len(n) + 1] in ("", ".", "-")):
                return cls
    return ""


@dataclass
class Finding:
    """One observer or hook.

    ``key`` identifies it across audits (``--baseline``/``--diff``); ``what`` is the
    one-line description; ``owner`` the tool or program that owns it (``probewatch``,
    ``bpftrace``, ``bcc``, ``perf``, an executable's name, or ``unknown``); ``pids`` the
    processes that hold or own it; ``where`` the tracefs instance ('' top level);
    ``detail`` the kind's own values (JSON-ready)."""

    kind: str
    key: str
    what: str
    owner: str = "unknown"
    pids: list[int] = field(default_factory=list)
    where: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(kind=str(d["kind"]), key=str(d["key"]), what=str(d.get("what", "")),
                   owner=str(d.get("owner", "unknown")),
                   pids=[int(p) for p in d.get("pids", [])], where=str(d.get("where", "")),
                   detail=dict(d.get("detail", {})))


@dataclass
class Report:
    """An audit: its findings, notes on what could not be looked at, and when."""

    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    time: float = 0.0
    host: str = ""
    processes: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "host": self.host, "notes": list(self.notes),
                "findings": [f.to_dict() for f in self.findings]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls(findings=[Finding.from_dict(x) for x in d.get("findings", [])],
                   notes=list(d.get("notes", [])), time=float(d.get("time", 0.0)),
                   host=str(d.get("host", "")))


# --- /proc -------------------------------------------------------------------------


def _read(path: str, mode: str = "r") -> Any:
    with open(path, mode) as f:
        return f.read()


@dataclass
class Proc:
    pid: int
    comm: str
    exe: str
    cmdline: list[str]
    uid: int
    ppid: int
    tracer: int
    start: int
    fds: dict[int, str]
    env: dict[str, str]

    @property
    def name(self) -> str:
        return os.path.basename(self.exe) if self.exe else self.comm

    @property
    def label(self) -> str:
        return f"{self.name}({self.pid})"

    def is_probewatch(self) -> bool:
        args = self.cmdline
        return bool(args) and (os.path.basename(args[0]) == "probewatch" or (
            len(args) > 2 and args[1] == "-m" and args[2].startswith("probewatch")))

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "comm": self.comm, "exe": self.exe,
                "cmdline": " ".join(self.cmdline), "uid": self.uid, "ppid": self.ppid}


_ENV_KEYS = (b"LD_PRELOAD=", b"LD_AUDIT=")


def read_proc(pid: int, env_cache: dict[tuple[int, int], dict[str, str]] | None = None,
              with_fds: bool = True) -> Proc | None:
    """One process as the audit needs it; None when it is gone or a kernel thread."""
    base = f"/proc/{pid}"
    try:
        stat = _read(f"{base}/stat")
        status = _read(f"{base}/status")
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[-1].split()
    try:
        flags, start, ppid = int(rest[6]), int(rest[19]), int(rest[1])
    except (IndexError, ValueError):
        return None
    if flags & 0x00200000:  # PF_KTHREAD
        return None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    tracer = uid = 0
    for ln in status.splitlines():
        if ln.startswith("TracerPid:"):
            tracer = int(ln.split()[1])
        elif ln.startswith("Uid:"):
            uid = int(ln.split()[1])
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = ""
    try:
        cmdline = [a.decode(errors="surrogateescape")
                   for a in _read(f"{base}/cmdline", "rb").split(b"\0")[:-1]]
    except OSError:
        cmdline = []
    env: dict[str, str] | None = None
    if env_cache is not None:
        env = env_cache.get((pid, start))
    if env is None:
        env = {}
        try:
            raw = _read(f"{base}/environ", "rb")
        except OSError:
            raw = b""
        if b"LD_" in raw:
            for e in raw.split(b"\0"):
                if e.startswith(_ENV_KEYS):
                    k, _, v = e.partition(b"=")
                    env[k.decode()] = v.decode(errors="surrogateescape")
        if env_cache is not None:
            env_cache[(pid, start)] = env
    fds: dict[int, str] = {}
    if with_fds:
        try:
            names = os.listdir(f"{base}/fd")
        except OSError:
            names = []
        for n in names:
            try:
                t = os.readlink(f"{base}/fd/{n}")
            except OSError:
                continue
            if t.startswith("anon_inode:") and ("bpf" in t or "perf_event" in t):
                fds[int(n)] = t[len("anon_inode:"):]
    return Proc(pid, comm, exe, cmdline, uid, ppid, tracer, start, fds, env)


def fdinfo_ids(pid: int, fd: int) -> dict[str, int]:
    """``prog_id`` / ``link_id`` / ``map_id`` from /proc/PID/fdinfo/FD."""
    out: dict[str, int] = {}
    try:
        text = _read(f"/proc/{pid}/fdinfo/{fd}")
    except OSError:
        return out
    for ln in text.splitlines():
        k, _, v = ln.partition(":")
        if k in ("prog_id", "link_id", "map_id"):
            try:
                out[k] = int(v.strip())
            except ValueError:
                pass
    return out


# --- owners of tracefs objects -------------------------------------------------------

_BCC = re.compile(r"_bcc_(\d+)$")
_LIBBPF = re.compile(r"^libbpf_(\d+)_")
_PW_GROUP = re.compile(r"^probewatch_(\d+)(?:_\w*)?$")
_PW_INSTANCE = re.compile(r"^probewatch-(\d+)-\d+$")


def dynamic_owner(group: str, name: str) -> tuple[str, int | None]:
    """(tool, pid) that created a dynamic event, from the naming conventions of
    probewatch (``probewatch_<PID>``), bcc (``..._bcc_<PID>``), libbpf
    (``libbpf_<PID>_...``) and perf probe (group ``probe`` / ``probe_<binary>``).

    >>> dynamic_owner("uprobes", "p__usr_lib_libssl_so_3_0x2f3a0_bcc_812")
    ('bcc', 812)
    """
    m = _PW_GROUP.match(group)
    if m:
        return "probewatch", int(m.group(1))
    m = _BCC.search(name)
    if m:
        return "bcc", int(m.group(1))
    m = _LIBBPF.match(name)
    if m:
        return "libbpf", int(m.group(1))
    if group == "probe" or group.startswith("probe_"):
        return "perf", None
    return "unknown", None


# --- the scanner -------------------------------------------------------------------


class Scanner:
    """Audits this machine. ``exclude_pids`` are this run's own processes (default:
    this one); their probes, instances, programs, links and perf events are left out.

    ``full`` reads the filter and trigger of every event of every instance (about
    2500 events: ~0.2 s each); otherwise only of the enabled events (the periodic
    poll of ``watch --audit``). One Scanner keeps caches between scans (environ of a
    process, symbol tables), so repeated scans are cheap."""

    def __init__(self, root: str | None = None, exclude_pids: set[int] | None = None,
                 full: bool = True) -> None:
        self._root = root
        self.exclude = set(exclude_pids) if exclude_pids is not None else {os.getpid()}
        self.full = full
        self._env_cache: dict[tuple[int, int], dict[str, str]] = {}
        self._sym_cache: dict[str, list[tuple[int, int, str]] | None] = {}
        self._tp_system: dict[str, str] = {}

    # -- entry point
    def scan(self) -> Report:
        notes: list[str] = []
        findings: list[Finding] = []
        procs = self._procs()
        root = self._tracefs(notes)
        if root:
            findings += self._dynamic_events(root, procs, notes)
            findings += self._tracefs_state(root, procs)
        findings += self._bpf(procs, notes)
        findings += self._perf(procs)
        findings += self._ptrace(procs)
        findings += self._preload(procs)
        findings += self._kernel(notes)
        order = {k: i for i, k in enumerate(KINDS)}
        findings.sort(key=lambda f: (order.get(f.kind, 99), f.where, f.key))
        live = {k for k in self._env_cache if k[0] in procs}
        for k in list(self._env_cache):
            if k not in live:
                del self._env_cache[k]
        return Report(findings=findings, notes=notes, time=time.time(),
                      host=os.uname().nodename,
                      processes={p.pid: p.info() for p in procs.values()})

    def _procs(self) -> dict[int, Proc]:
        out: dict[int, Proc] = {}
        for n in os.listdir("/proc"):
            if n.isdigit():
                p = read_proc(int(n), self._env_cache)
                if p is not None:
                    out[p.pid] = p
        return out

    def _tracefs(self, notes: list[str]) -> str | None:
        if self._root:
            return self._root
        from ..kernel.tracefs import tracefs_root

        try:
            self._root = tracefs_root()
        except Exception as e:  # no tracefs: say so, audit the rest
            notes.append(f"tracefs not available ({e}): dynamic events, enabled events "
                         "and instances not audited")
            return None
        return self._root

    def _own_group(self, group: str) -> bool:
        m = _PW_GROUP.match(group)
        return m is not None and int(m.group(1)) in self.exclude

    def _own_instance(self, name: str) -> bool:
        m = _PW_INSTANCE.match(name)
        return m is not None and int(m.group(1)) in self.exclude

    def _owner_of_pid(self, pid: int | None, procs: dict[int, Proc]) -> str | None:
        if pid is None or pid not in procs:
            return None
        p = procs[pid]
        return "probewatch" if p.is_probewatch() else p.name

    # -- tracefs
    def _dynamic_events(self, root: str, procs: dict[int, Proc],
                        notes: list[str]) -> list[Finding]:
        from ..kernel.dynevents import probe_rows

        try:
            rows = probe_rows(root)
        except Exception as e:
            notes.append(f"dynamic events not readable: {e}")
            return []
        out = []
        for r in rows:
            if self._own_group(r["group"]):
                continue
            tool, pid = dynamic_owner(r["group"], r["name"])
            alive = pid is not None and pid in procs
            owner = tool
            if tool == "unknown":
                owner = "unknown"
            detail = {
                "probe_type": r["kind"], "group": r["group"], "event": r["event"],
                "target": r["target"], "path": r["path"], "offset": r["offset"],
                "definition": r["definition"], "owner_pid": pid, "owner_alive": alive,
                "target_class": target_class(r["path"]),
            }
            if r["path"] and r["offset"] is not None:
                detail["symbol"] = self.symbol(r["path"], r["offset"])
            elif r["kind"] in ("kprobe", "kretprobe") and r["target"]:
                detail["symbol"] = r["target"]
            tgt = r["target"] or ""
            if detail.get("symbol") and r["path"]:
                tgt = f"{r['path']}:{detail['symbol']}"
            what = f"{r['kind']} {r['event']} on {tgt}" if tgt else f"{r['kind']} {r['event']}"
            out.append(Finding("dynamic_event", f"dynamic_event:{r['event']}", what, owner,
                               [pid] if alive and pid is not None else [], "", detail))
        return out

    def _tracefs_state(self, root: str, procs: dict[int, Proc]) -> list[Finding]:
        out: list[Finding] = []
        bases = [("", root)]
        try:
            names = sorted(os.listdir(os.path.join(root, "instances")))
        except OSError:
            names = []
        for n in names:
            if self._own_instance(n):
                continue
            m = _PW_INSTANCE.match(n)
            pid = int(m.group(1)) if m else None
            owner = ("probewatch" if m else
                     self._owner_of_pid(pid, procs) or _instance_tool(n))
            out.append(Finding("instance", f"instance:{n}", f"tracefs instance {n}", owner,
                               [pid] if pid is not None and pid in procs else [], n,
                               {"name": n}))
            bases.append((n, os.path.join(root, "instances", n)))
        for where, base in bases:
            owner = "unknown"
            pids: list[int] = []
            m = _PW_INSTANCE.match(where)
            if m:
                owner = "probewatch"
                if int(m.group(1)) in procs:
                    pids = [int(m.group(1))]
            elif where:
                owner = _instance_tool(where)
            label = f"instance {where}" if where else "top level"
            try:
                tracer = _read(os.path.join(base, "current_tracer")).strip()
            except OSError:
                tracer = "nop"
            if tracer and tracer != "nop":
                out.append(Finding("tracer", f"tracer:{where}", f"current_tracer {tracer} "
                                   f"({label})", owner, pids, where, {"tracer": tracer}))
            try:
                enabled = [ln.strip() for ln in
                           _read(os.path.join(base, "set_event")).splitlines() if ln.strip()]
            except OSError:
                enabled = []
            for ev in enabled:
                system, _, name = ev.partition(":")
                own = self._own_group(system)
                if own:
                    continue
                out.append(Finding("enabled_event", f"enabled_event:{where}:{system}/{name}",
                                   f"event {system}/{name} enabled ({label})", owner, pids,
                                   where, {"event": f"{system}/{name}"}))
            if self.full:
                files = (glob.glob(os.path.join(base, "events", "*", "*", "filter")) +
                         glob.glob(os.path.join(base, "events", "*", "*", "trigger")))
            else:
                files = [os.path.join(base, "events", *e.split(":", 1), f)
                         for e in enabled for f in ("filter", "trigger")]
            for path in sorted(files):
                parts = path.split(os.sep)
                system, name, what = parts[-3], parts[-2], parts[-1]
                if self._own_group(system):
                    continue
                try:
                    text = _read(path)
                except OSError:
                    continue
                if what == "filter":
                    t = text.strip()
                    if t and t != "none":
                        out.append(Finding("event_filter",
                                           f"event_filter:{where}:{system}/{name}",
                                           f"filter on {system}/{name}: {t} ({label})",
                                           owner, pids, where,
                                           {"event": f"{system}/{name}", "filter": t}))
                else:
                    for ln in text.splitlines():
                        t = ln.strip()
                        if t and not t.startswith("#"):
                            out.append(Finding("event_trigger",
                                               f"event_trigger:{where}:{system}/{name}:{t}",
                                               f"trigger on {system}/{name}: {t} ({label})",
                                               owner, pids, where,
                                               {"event": f"{system}/{name}", "trigger": t}))
        return out

    # -- BPF
    def _bpf(self, procs: dict[int, Proc], notes: list[str]) -> list[Finding]:
        from ..kernel import bpfsys
        from ..kernel.btf import enum_name

        try:
            prog_ids = bpfsys.prog_ids()
        except bpfsys.BpfError as e:
            notes.append(f"BPF programs not listed ({e}; needs root / CAP_SYS_ADMIN)")
            return []
        try:
            link_ids = bpfsys.link_ids()
        except bpfsys.BpfError as e:
            notes.append(f"BPF links not listed ({e})")
            link_ids = []
        # who holds what: fds of bpf-prog, bpf_link and perf events with a program
        prog_holders: dict[int, set[int]] = {}
        link_holders: dict[int, set[int]] = {}
        perf_attach: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        own_progs: set[int] = set()
        own_links: set[int] = set()
        for p in procs.values():
            mine = p.pid in self.exclude
            for fd, kind in p.fds.items():
                if kind == "bpf-prog":
                    pid_ = fdinfo_ids(p.pid, fd).get("prog_id")
                    if pid_ is not None:
                        (own_progs.add(pid_) if mine else
                         prog_holders.setdefault(pid_, set()).add(p.pid))
                elif kind in ("bpf_link", "bpf-link"):
                    lid = fdinfo_ids(p.pid, fd).get("link_id")
                    if lid is not None:
                        (own_links.add(lid) if mine else
                         link_holders.setdefault(lid, set()).add(p.pid))
                elif kind == "[perf_event]" and not mine:
                    q = bpfsys.task_fd_query(p.pid, fd)
                    if q is not None:
                        perf_attach.setdefault(q["prog_id"], []).append((p.pid, q))
                        prog_holders.setdefault(q["prog_id"], set()).add(p.pid)
        pins = bpf_pins()
        links: dict[int, dict[str, Any]] = {}
        for lid in link_ids:
            try:
                links[lid] = bpfsys.link_info(lid)
            except bpfsys.BpfError:
                continue
        out: list[Finding] = []
        prog_attach: dict[int, list[str]] = {}
        for lid, li in links.items():
            holders = sorted(link_holders.get(lid, ()))
            if lid in own_links and not holders:
                continue
            target, detail = self._link_target(li)
            ltype = enum_name("bpf_link_type", li["type"], "BPF_LINK_TYPE_")
            detail.update({"link_id": lid, "link_type": ltype, "prog_id": li["prog_id"],
                           "holders": [procs[h].label for h in holders if h in procs],
                           "pinned": pins.get(("link_id", lid), [])})
            prog_attach.setdefault(li["prog_id"], []).append(target)
            for h in holders:
                prog_holders.setdefault(li["prog_id"], set()).add(h)
            owner = self._holders_owner(holders, procs)
            pin = f", pinned at {', '.join(detail['pinned'])}" if detail["pinned"] else ""
            out.append(Finding("bpf_link", f"bpf_link:{lid}",
                               f"{ltype} link {lid} of prog {li['prog_id']} at {target}{pin}",
                               owner, holders, "", detail))
        for pid_, atts in perf_attach.items():
            for _, q in atts:
                prog_attach.setdefault(pid_, []).append(self._perf_target(q))
        boot_to_wall = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        for prog_id in prog_ids:
            holders = sorted(prog_holders.get(prog_id, ()))
            if prog_id in own_progs and not holders:
                continue
            if not holders and any(li["prog_id"] == prog_id and lid in own_links
                                   for lid, li in links.items()):
                continue
            try:
                info = bpfsys.prog_info(prog_id)
            except bpfsys.BpfError:
                continue
            ptype = enum_name("bpf_prog_type", info["type"], "BPF_PROG_TYPE_")
            attach = sorted(set(prog_attach.get(prog_id, [])))
            ptarget = _first_attach(perf_attach.get(prog_id, []), links, prog_id)
            detail = {
                "prog_id": prog_id, "prog_type": ptype, "name": info["name"],
                "tag": info["tag"], "uid": info["uid"], "map_ids": info["map_ids"],
                "load_time": round(boot_to_wall + info["load_time"] / 1e9, 3),
                "attach": attach, "attached": bool(attach),
                "holders": [procs[h].label for h in holders if h in procs],
                "pinned": pins.get(("prog_id", prog_id), []),
                **ptarget,
            }
            if "path" in detail and detail.get("offset") is not None:
                detail["symbol"] = self.symbol(detail["path"], detail["offset"])
                detail["target_class"] = target_class(detail["path"])
            owner = self._holders_owner(holders, procs)
            at = f" at {', '.join(attach)}" if attach else " (not attached by a link or " \
                 "perf event)"
            if detail["pinned"]:
                at += f", pinned at {', '.join(detail['pinned'])}"
            name = info["name"] or "(no name)"
            out.append(Finding("bpf_prog", f"bpf_prog:{prog_id}:{info['tag']}",
                               f"{ptype} prog {name} (id {prog_id}){at}", owner, holders,
                               "", detail))
        return out

    def _holders_owner(self, holders: list[int], procs: dict[int, Proc]) -> str:
        names = [self._owner_of_pid(h, procs) for h in holders]
        names_ = sorted({n for n in names if n})
        return ",".join(names_) if names_ else "unknown"

    def _tp_full(self, name: str) -> str:
        """'sys_enter_openat' -> 'syscalls/sys_enter_openat' (tracefs knows the system)."""
        if name in self._tp_system:
            return self._tp_system[name]
        full = name
        if self._root and "/" not in name and name.replace("_", "").isalnum():
            hits = glob.glob(os.path.join(self._root, "events", "*", name))
            if len(hits) == 1:
                full = f"{os.path.basename(os.path.dirname(hits[0]))}/{name}"
        self._tp_system[name] = full
        return full

    def _perf_target(self, q: dict[str, Any]) -> str:
        t = q["fd_type"]
        if t in ("uprobe", "uretprobe"):
            sym = self.symbol(q["name"], q["offset"])
            return f"{t} {q['name']}:{sym}"
        if t in ("kprobe", "kretprobe"):
            return f"{t} {q['name'] or hex(q['addr'])}" + (
                f"+{q['offset']}" if q["offset"] else "")
        if t == "tracepoint":
            return f"tracepoint {self._tp_full(q['name'])}"
        return f"{t} {q['name']}"

    def _link_target(self, li: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from ..kernel.btf import enum_name

        d: dict[str, Any] = {}
        if "attach_type" in li:
            d["attach_type"] = enum_name("bpf_attach_type", li["attach_type"], "BPF_")
        t = li["type"]
        if "tp_name" in li and t == 1:
            d["probe_type"] = "raw_tracepoint"
            return f"raw_tracepoint {li['tp_name']}", d
        if t == 7:
            pt = enum_name("bpf_perf_event_type", li.get("perf_type", 0), "BPF_PERF_EVENT_")
            d["probe_type"] = pt
            if "path" in li:
                d.update(path=li["path"], offset=li["offset"],
                         symbol=self.symbol(li["path"], li["offset"]),
                         target_class=target_class(li["path"]))
                return f"{pt} {li['path']}:{d['symbol']}", d
            if "func" in li:
                d["symbol"] = li["func"]
                return f"{pt} {li['func']}" + (f"+{li['offset']}" if li["offset"] else ""), d
            if "tp_name" in li:
                return f"tracepoint {self._tp_full(li['tp_name'])}", d
            return f"perf event config {li.get('config')}", d
        if t == 12:
            d.update(probe_type="uprobe_multi", path=li.get("path"),
                     target_class=target_class(li.get("path")))
            syms = [self.symbol(li.get("path") or "", o) for o in li.get("offsets", [])[:8]]
            d["symbols"] = syms
            return f"uprobe_multi {li.get('path')}:{','.join(syms)}", d
        if t == 8:
            d["probe_type"] = "kprobe_multi"
            return f"kprobe_multi ({li.get('count')} functions)", d
        if t == 3:
            return f"cgroup {li.get('cgroup_id')} {d.get('attach_type')}", d
        if t in (6, 11, 13):
            return f"netdev {_ifname(li.get('ifindex', 0))} {d.get('attach_type', 'xdp')}", d
        if t == 2:  # fentry / fexit / fmod_ret / LSM / freplace: a BTF function
            from ..kernel.btf import func_name

            d["probe_type"] = d.get("attach_type", "tracing")
            fn = func_name(li.get("target_btf_id", 0)) if not li.get("target_obj_id") \
                or li.get("target_obj_id") == 1 else None
            if fn:
                d["symbol"] = fn
                if fn.startswith("bpf_lsm_"):
                    d["lsm_hook"] = fn[len("bpf_lsm_"):]
                    return f"lsm {d['lsm_hook']}", d
                return f"{d.get('attach_type')} {fn}", d
            return f"{d.get('attach_type')} btf id {li.get('target_btf_id')}", d
        if t == 5:
            return f"netns {li.get('netns_ino')} {d.get('attach_type')}", d
        if t == 4:
            return f"iter {li.get('target_name')}", d
        if t == 10:
            return f"netfilter pf {li.get('pf')} hook {li.get('hooknum')}", d
        return f"link type {t}", d

    # -- symbols
    def symbol(self, path: str, offset: int) -> str:
        """The function at file offset ``offset`` of ``path`` ('sym+0x10'), else hex."""
        table = self._sym_cache.get(path, [])
        if table == []:
            table = self._sym_cache[path] = _func_offsets(path)
        if table:
            import bisect

            i = bisect.bisect_right(table, (offset, 1 << 64, "")) - 1
            if i >= 0:
                start, size, name = table[i]
                if offset < start + max(size, 1):
                    return name if offset == start else f"{name}+0x{offset - start:x}"
        return f"0x{offset:x}"

    # -- perf, ptrace, preload
    def _perf(self, procs: dict[int, Proc]) -> list[Finding]:
        out = []
        for p in procs.values():
            if p.pid in self.exclude:
                continue
            n = sum(1 for k in p.fds.values() if k == "[perf_event]")
            if n:
                out.append(Finding("perf_event", f"perf_event:{p.pid}:{p.start}",
                                   f"{p.label} holds {n} perf event(s)",
                                   "probewatch" if p.is_probewatch() else p.name, [p.pid],
                                   "", {"count": n, "process": p.info()}))
        return out

    def _ptrace(self, procs: dict[int, Proc]) -> list[Finding]:
        out = []
        for p in procs.values():
            if not p.tracer or p.tracer in self.exclude:
                continue
            t = procs.get(p.tracer)
            tl = t.label if t else f"pid {p.tracer}"
            out.append(Finding("ptrace", f"ptrace:{p.pid}:{p.start}:{p.tracer}",
                               f"{p.label} is traced by {tl}",
                               t.name if t else "unknown", [p.pid, p.tracer], "",
                               {"tracee": p.info(), "tracer": t.info() if t else
                                {"pid": p.tracer}}))
        return out

    def _preload(self, procs: dict[int, Proc]) -> list[Finding]:
        out = []
        for p in procs.values():
            if p.pid in self.exclude:
                continue
            for k in ("LD_PRELOAD", "LD_AUDIT"):
                v = p.env.get(k)
                if v:
                    out.append(Finding("preload", f"preload:{p.pid}:{p.start}:{k}",
                                       f"{p.label} runs with {k}={v}", p.name, [p.pid], "",
                                       {"variable": k, "value": v, "process": p.info()}))
        try:
            text = _read("/etc/ld.so.preload")
        except OSError:
            text = ""
        for ln in text.splitlines():
            for lib in ln.split("#", 1)[0].replace(":", " ").split():
                out.append(Finding("ld_so_preload", f"ld_so_preload:{lib}",
                                   f"/etc/ld.so.preload loads {lib} into every program",
                                   "unknown", [], "", {"value": lib}))
        return out

    # -- kernel taint, modules
    def _kernel(self, notes: list[str]) -> list[Finding]:
        out = []
        try:
            tainted = int(_read("/proc/sys/kernel/tainted").strip())
        except (OSError, ValueError):
            tainted = 0
        if tainted:
            flags = [(c, what) for i, (c, what) in enumerate(TAINT_FLAGS) if tainted >> i & 1]
            letters = "".join(c for c, _ in flags)
            out.append(Finding("taint", "taint", f"kernel tainted {tainted} ({letters}: "
                               f"{'; '.join(w for _, w in flags)})", "kernel", [], "",
                               {"value": tainted, "flags": letters}))
        try:
            mods = _read("/proc/modules")
        except FileNotFoundError:
            notes.append("no /proc/modules: this kernel has no loadable modules "
                         "(CONFIG_MODULES=n); nothing to audit there")
            return out
        except OSError as e:
            notes.append(f"/proc/modules not readable: {e.strerror}")
            return out
        for ln in mods.splitlines():
            m = re.match(r"^(\S+)\s.*?(?:\(([A-Z]+)\))?\s*$", ln)
            if m and m.group(2):
                out.append(Finding("module", f"module:{m.group(1)}",
                                   f"module {m.group(1)} taints the kernel ({m.group(2)})",
                                   "kernel", [], "", {"module": m.group(1),
                                                      "flags": m.group(2)}))
        return out


def bpf_mounts() -> list[str]:
    """Mount points of bpffs (from /proc/self/mounts)."""
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for ln in f:
                w = ln.split()
                if len(w) > 2 and w[2] == "bpf":
                    out.append(w[1].replace("\\040", " "))
    except OSError:
        pass
    return out


def bpf_pins(max_files: int = 10000) -> dict[tuple[str, int], list[str]]:
    """Every BPF object pinned in a bpffs mount: ``{("prog_id"|"link_id"|"map_id", id):
    [paths]}`` (BPF_OBJ_GET, then the fd's fdinfo). Pinned objects outlive the process
    that loaded them: a program kept attached by a pin has no holder process."""
    from ..kernel import bpfsys

    out: dict[tuple[str, int], list[str]] = {}
    n = 0
    for mnt in bpf_mounts():
        for d, _dirs, files in os.walk(mnt):
            for fn in files:
                n += 1
                if n > max_files:
                    return out
                path = os.path.join(d, fn)
                try:
                    fd = bpfsys.obj_get(path)
                except bpfsys.BpfError:
                    continue
                try:
                    for k, v in fdinfo_ids(os.getpid(), fd).items():
                        out.setdefault((k, v), []).append(path)
                finally:
                    os.close(fd)
    return out


def _instance_tool(name: str) -> str:
    for tool in ("bpftrace", "perfetto", "trace-cmd", "rasdaemon", "perf", "systemtap"):
        if tool in name.lower():
            return tool
    return "unknown"


def _first_attach(atts: list[tuple[int, dict[str, Any]]], links: dict[int, dict[str, Any]],
                  prog_id: int) -> dict[str, Any]:
    """Where a program is attached, as detail fields (probe_type, path, offset, symbol)."""
    for _, q in atts:
        d: dict[str, Any] = {"probe_type": q["fd_type"]}
        if q["fd_type"] in ("uprobe", "uretprobe"):
            d.update(path=q["name"], offset=q["offset"])
        elif q["fd_type"] in ("kprobe", "kretprobe"):
            d["symbol"] = q["name"]
        else:
            d["tracepoint"] = q["name"]
        return d
    for li in links.values():
        if li["prog_id"] == prog_id and "path" in li:
            return {"probe_type": "uprobe", "path": li["path"],
                    "offset": li.get("offset", (li.get("offsets") or [0])[0])}
    return {}


def _ifname(ifindex: int) -> str:
    import socket

    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex {ifindex}"


def _func_offsets(path: str) -> list[tuple[int, int, str]] | None:
    """(file offset, size, name) of every function of an ELF file, sorted; None if unreadable."""
    try:
        from ..elf.symbols import open_image

        img = open_image(path)
    except Exception:
        return None
    out = []
    for s in img.symbols:
        if s.address and img.is_function(s):
            try:
                out.append((img.vaddr_to_offset(s.address), s.size, s.name))
            except Exception:
                continue
    out.sort()
    return out


__all__ = ["Finding", "Report", "Scanner", "KINDS", "target_class", "dynamic_owner"]
