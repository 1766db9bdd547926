"""tracefs: find it (mounting it when absent) and work inside private instances.

Every instance probewatch creates is named ``probewatch-<pid>-<n>`` so that a later
run can tell whether its owner is still alive (see :func:`sweep_stale`).

Example::

    root = tracefs_root()                 # '/sys/kernel/tracing', mounted if needed
    with Instance.create() as inst:
        inst.enable("sched", "sched_process_exec")
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import itertools
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import KernelRejected, NotFound, TracefsError

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
INSTANCE_PREFIX = "probewatch-"
INSTANCE_RE = re.compile(r"^probewatch-(\d+)-(\d+)$")
GROUP_PREFIX = "probewatch_"
GROUP_RE = re.compile(r"^probewatch_(\d+)(?:_\w*)?$")

_root_cache: str | None = None
_counter = itertools.count()
_lock = threading.Lock()


def _is_tracefs(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "events")) and os.path.exists(
        os.path.join(path, "trace")
    )


def _mount(target: str, fstype: str, source: str) -> None:
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    rc = libc.mount(source.encode(), target.encode(), fstype.encode(), 0, None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def find_tracefs(base: str = "/") -> str | None:
    """The first mounted tracefs among CANDIDATES under ``base``: /sys/kernel/tracing,
    else /sys/kernel/debug/tracing (older kernels, Android before 11); None if neither."""
    for c in CANDIDATES:
        p = os.path.join(base, c.lstrip("/"))
        if _is_tracefs(p):
            return p
    return None


def tracefs_root(mount: bool = True) -> str:
    """Return the tracefs mount point, mounting tracefs at /sys/kernel/tracing if absent."""
    global _root_cache
    if _root_cache and _is_tracefs(_root_cache):
        return _root_cache
    env = os.environ.get("PROBEWATCH_TRACEFS")
    if env:
        if _is_tracefs(env):
            _root_cache = env
            return env
        raise TracefsError(f"PROBEWATCH_TRACEFS={env} is not a tracefs mount")
    found = find_tracefs()
    if found:
        _root_cache = found
        return found
    if not mount:
        raise TracefsError(
            "tracefs is not mounted (try: mount -t tracefs nodev /sys/kernel/tracing)"
        )
    errors = []
    for c, fstype, src in (
        ("/sys/kernel/tracing", "tracefs", "nodev"),
        ("/sys/kernel/debug", "debugfs", "nodev"),
    ):
        if not os.path.isdir(c):
            errors.append(f"{c} does not exist")
            continue
        try:
            _mount(c, fstype, src)
        except OSError as e:
            if e.errno == errno.EPERM:
                raise TracefsError(
                    f"cannot mount tracefs at {c}: permission denied (run as root, "
                    "or mount it: mount -t tracefs nodev /sys/kernel/tracing)"
                ) from None
            errors.append(f"mount {fstype} on {c}: {e.strerror}")
            continue
        for cand in CANDIDATES:
            if _is_tracefs(cand):
                _root_cache = cand
                return cand
    raise TracefsError(
        "tracefs not found and could not be mounted (" + "; ".join(errors) + "); "
        "the kernel may lack CONFIG_FTRACE"
    )


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist") from None
    except PermissionError:
        raise TracefsError(f"{path}: permission denied (probewatch needs root)") from None


def error_log_tail(root: str) -> str:
    """The newest entry of tracefs error_log (the kernel's explanation of a refused write)."""
    try:
        text = read_text(os.path.join(root, "error_log"))
    except Exception:
        return ""
    lines = text.rstrip("\n").splitlines()
    if not lines:
        return ""
    # an entry is: "[ts] sys:subsys: message\n  Command: ...\n        ^"
    start = 0
    for i, line in enumerate(lines):
        if line.startswith("["):
            start = i
    return "\n".join(lines[start:])


def clear_error_log(root: str) -> None:
    try:
        fd = os.open(os.path.join(root, "error_log"), os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
    except OSError:
        pass


def write_file(path: str, text: str, append: bool = False, root: str | None = None) -> None:
    """Write ``text`` to a tracefs file; a refusal becomes KernelRejected with error_log."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    # argv bytes that are not UTF-8 (a comm or string in a filter) arrive as surrogate
    # escapes: write them back as the bytes they were, which the kernel compares
    data = text.encode("utf-8", "surrogateescape")
    if root:
        clear_error_log(root)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist") from None
    except PermissionError:
        raise TracefsError(f"{path}: permission denied (probewatch needs root)") from None
    try:
        os.write(fd, data)
    except OSError as e:
        log = error_log_tail(root) if root else ""
        msg = f"kernel refused {text.strip()!r} in {path}: {e.strerror}"
        if log:
            msg += "\n" + log
        raise KernelRejected(msg) from None
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Instance:
    """A private tracefs instance (``instances/probewatch-<pid>-<n>``) owned by this process."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.path = os.path.join(root, "instances", name)
        self._enabled: list[tuple[str, str]] = []
        self._removed = False

    @classmethod
    def create(cls, root: str | None = None) -> Instance:
        root = root or tracefs_root()
        inst_dir = os.path.join(root, "instances")
        if not os.path.isdir(inst_dir):
            raise TracefsError(f"{inst_dir} missing: kernel lacks tracefs instances")
        with _lock:
            n = next(_counter)
        name = f"{INSTANCE_PREFIX}{os.getpid()}-{n}"
        try:
            os.mkdir(os.path.join(inst_dir, name))
        except FileExistsError:
            # a stale instance of a dead process that had our pid: remove, then retry
            remove_instance(root, name)
            os.mkdir(os.path.join(inst_dir, name))
        except OSError as e:
            raise TracefsError(f"cannot create tracefs instance {name}: {e.strerror}") from None
        return cls(root, name)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- files
    def file(self, rel: str) -> str:
        return os.path.join(self.path, rel)

    def write(self, rel: str, text: str, append: bool = False) -> None:
        write_file(self.file(rel), text, append=append, root=self.path)

    def read(self, rel: str) -> str:
        return read_text(self.file(rel))

    def set_option(self, name: str, on: bool) -> bool:
        """Set options/NAME; False when this kernel has no such option."""
        p = self.file(f"options/{name}")
        if not os.path.exists(p):
            return False
        self.write(f"options/{name}", "1" if on else "0")
        return True

    def set_buffer_kb(self, kb: int) -> None:
        self.write("buffer_size_kb", str(int(kb)))

    def set_buffer_percent(self, pct: int) -> None:
        if os.path.exists(self.file("buffer_percent")):
            self.write("buffer_percent", str(int(pct)))

    def set_clock(self, clock: str) -> None:
        self.write("trace_clock", clock)

    def tracing_on(self, on: bool) -> None:
        self.write("tracing_on", "1" if on else "0")

    # -- events
    def event_dir(self, system: str, name: str) -> str:
        return self.file(f"events/{system}/{name}")

    def enable(self, system: str, name: str, filter_expr: str | None = None) -> None:
        d = self.event_dir(system, name)
        if not os.path.isdir(d):
            raise NotFound(f"no such event {system}:{name} in tracefs")
        if filter_expr:
            self.set_filter(system, name, filter_expr)
        self.write(f"events/{system}/{name}/enable", "1")
        self._enabled.append((system, name))

    def set_filter(self, system: str, name: str, expr: str) -> None:
        try:
            self.write(f"events/{system}/{name}/filter", expr)
        except KernelRejected as e:
            raise KernelRejected(f"bad filter for {system}:{name}: {expr!r}\n" + _filter_detail(
                self, system, name, str(e))) from None

    def disable_all(self) -> None:
        for system, name in self._enabled:
            try:
                write_file(self.file(f"events/{system}/{name}/enable"), "0")
                write_file(self.file(f"events/{system}/{name}/filter"), "0")
            except Exception:
                pass
        self._enabled.clear()

    def set_event_pids(self, pids: list[int]) -> None:
        self.write("set_event_pid", " ".join(str(p) for p in pids) if pids else "")

    def set_notrace_pids(self, pids: list[int]) -> bool:
        if not os.path.exists(self.file("set_event_notrace_pid")):
            return False
        self.write("set_event_notrace_pid", " ".join(str(p) for p in pids))
        return True

    def cpu_dirs(self) -> Iterator[tuple[int, str]]:
        base = self.file("per_cpu")
        for d in sorted(os.listdir(base), key=lambda s: int(s[3:]) if s[3:].isdigit() else 0):
            if d.startswith("cpu") and d[3:].isdigit():
                yield int(d[3:]), os.path.join(base, d)

    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        remove_instance(self.root, self.name)


def _filter_detail(inst: Instance, system: str, name: str, err: str) -> str:
    """The kernel puts a bad filter's explanation in the event's ``filter`` file."""
    detail = ""
    try:
        txt = inst.read(f"events/{system}/{name}/filter").strip()
        if txt and txt != "none":
            detail = txt
    except Exception:
        pass
    log = err.split("\n", 1)[1] if "\n" in err else ""
    return (log or detail or err).strip()


def remove_instance(root: str, name: str) -> None:
    """Disable everything in an instance and rmdir it (retrying while the kernel is busy)."""
    path = os.path.join(root, "instances", name)
    if not os.path.isdir(path):
        return
    # rmdir disables and frees everything in the instance by itself; disabling the
    # events one by one first would cost a tracepoint synchronisation each
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for rel, val in (("tracing_on", "0"), ("events/enable", "0"), ("set_event_pid", "")):
        try:
            write_file(os.path.join(path, rel), val)
        except Exception:
            pass
    last: OSError | None = None
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            last = e
            if e.errno != errno.EBUSY:
                break
            time.sleep(0.02)
    raise TracefsError(f"cannot remove tracefs instance {name}: {last.strerror if last else '?'}")


def our_instances(root: str) -> list[tuple[str, int]]:
    out = []
    try:
        names = os.listdir(os.path.join(root, "instances"))
    except OSError:
        return []
    for n in names:
        m = INSTANCE_RE.match(n)
        if m:
            out.append((n, int(m.group(1))))
    return out


def dynamic_event_lines(root: str) -> list[str]:
    lines: list[str] = []
    for f in ("dynamic_events", "uprobe_events", "kprobe_events"):
        p = os.path.join(root, f)
        if os.path.exists(p):
            try:
                lines.extend(read_text(p).splitlines())
            except Exception:
                continue
    seen: set[str] = set()
    uniq = []
    for line in lines:
        if line and line not in seen:
            seen.add(line)
            uniq.append(line)
    return uniq


def parse_dynamic_line(line: str) -> tuple[str, str, str]:
    """'p:grp/name target...' -> (type char, group, name)."""
    head = line.split(None, 1)[0]
    kind, _, gn = head.partition(":")
    # kprobe lines may carry a maxactive: r10:grp/name
    group, _, name = gn.partition("/")
    return kind[:1], group, name


def remove_dynamic_event(root: str, kind: str, group: str, name: str) -> None:
    """Remove one dynamic event by appending '-:group/name' to its control file."""
    # disable it in the top level and every instance first (a busy event cannot go)
    for base in [root] + [
        os.path.join(root, "instances", n) for n in _listdir(os.path.join(root, "instances"))
    ]:
        ev = os.path.join(base, "events", group, name)
        if os.path.isdir(ev):
            for rel, val in (("enable", "0"), ("filter", "0")):
                try:
                    write_file(os.path.join(ev, rel), val)
                except Exception:
                    pass
    # dynamic_events takes every kind; older kernels only have the per-kind files
    candidates = ["dynamic_events", "uprobe_events", "kprobe_events"]
    last: Exception | None = None
    for c in candidates:
        p = os.path.join(root, c)
        if not os.path.exists(p):
            continue
        try:
            write_file(p, f"-:{group}/{name}\n", append=True, root=root)
            return
        except Exception as e:  # try the next control file
            last = e
    if last:
        raise TracefsError(f"cannot remove dynamic event {group}/{name}: {last}")


def _listdir(p: str) -> list[str]:
    try:
        return os.listdir(p)
    except OSError:
        return []


def sweep_stale(root: str | None = None, include_self: bool = False) -> list[str]:
    """Remove instances and dynamic events of probewatch processes that are dead.

    Returns a description of every object removed. Objects of live probewatch
    processes and of other tools are never touched.
    """
    root = root or tracefs_root()
    removed: list[str] = []
    me = os.getpid()

    def stale(pid: int) -> bool:
        if pid == me:
            return include_self
        return not pid_alive(pid)

    for name, pid in our_instances(root):
        if stale(pid):
            try:
                remove_instance(root, name)
                removed.append(f"instance {name}")
            except Exception:
                pass
    for line in dynamic_event_lines(root):
        try:
            kind, group, name = parse_dynamic_line(line)
        except Exception:
            continue
        m = GROUP_RE.match(group)
        if m and stale(int(m.group(1))):
            try:
                remove_dynamic_event(root, kind, group, name)
                removed.append(f"dynamic event {group}/{name}")
            except Exception:
                pass
    return removed


def owned_leftovers(root: str | None = None) -> list[str]:
    """Everything of probewatch's still in tracefs (instances and dynamic events)."""
    root = root or tracefs_root()
    out = [f"instance {n}" for n, _ in our_instances(root)]
    for line in dynamic_event_lines(root):
        _, group, name = parse_dynamic_line(line)
        if group.startswith(GROUP_PREFIX):
            out.append(f"dynamic event {group}/{name}")
    return out


__all__ = [
    "Instance",
    "tracefs_root",
    "sweep_stale",
    "owned_leftovers",
    "write_file",
    "read_text",
    "Path",
]
