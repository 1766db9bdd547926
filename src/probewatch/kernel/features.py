"""Kernel feature discovery: what this kernel offers for tracing, each answer checked live.

Every row is a yes/no with, when no, a reason that names the kernel option and the
fix. Answers come from the kernel itself: tracefs files, a trial write inside a
private tracefs instance, bpf(2) program loads, perf_event_open(2); the kernel
config (/proc/config.gz, /boot/config-*) only sharpens the wording of a reason.

Nothing is left behind: the trial instance and the trial eprobe are owned
(``probewatch-<pid>-<n>``, ``probewatch_<pid>_doctor``) and removed before return;
the top-level ``current_tracer`` is never written.

Example::

    for f in probe_features():
        print(f.name, "yes" if f.available else "no: " + f.reason)
    if has_kprobes():
        ...
    require("BPF ring buffer map")      # raises FeatureUnavailable(reason) when missing
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import FeatureUnavailable, ProbewatchError

FEATURE_NAMES: tuple[str, ...] = (
    "tracefs",
    "tracefs instances",
    "tracepoints",
    "syscall tracepoints",
    "uprobe_events",
    "kprobe_events",
    "dynamic_events",
    "function tracer",
    "hist triggers",
    "eprobes",
    "perf_event_open",
    "perf uprobe PMU",
    "BPF",
    "BPF tracepoint programs",
    "BPF kprobe programs",
    "BPF raw_tracepoint programs",
    "BPF ring buffer map",
    "BTF",
)

EVENT_SOURCE_DIR = "/sys/bus/event_source/devices"
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
LOCKDOWN_FILE = "/sys/kernel/security/lockdown"
DISTRO_FIX = "a distribution kernel (Debian, Ubuntu and Fedora enable it)"


@dataclass
class Feature:
    """One answer: ``available`` yes/no; ``reason`` (why not, and the fix) when no."""

    name: str
    available: bool
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- parsing helpers


def parse_kconfig(text: str) -> dict[str, str]:
    """Kernel .config text -> {'KPROBES': 'y', 'HIST_TRIGGERS': 'n', ...} ('n' = not set)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^CONFIG_(\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
            continue
        m = re.match(r"^# CONFIG_(\w+) is not set$", line)
        if m:
            out[m.group(1)] = "n"
    return out


def read_kconfig(release: str | None = None) -> dict[str, str]:
    """The running kernel's build config, or {} when no config file can be found."""
    release = release or os.uname().release
    for path in ("/proc/config.gz", f"/boot/config-{release}", f"/lib/modules/{release}/config"):
        try:
            if path.endswith(".gz"):
                import gzip

                with gzip.open(path, "rt", errors="replace") as f:
                    return parse_kconfig(f.read())
            with open(path, errors="replace") as f:
                return parse_kconfig(f.read())
        except OSError:
            continue
    return {}


def parse_available_tracers(text: str) -> list[str]:
    """Content of available_tracers ('blk function nop') -> ['blk', 'function', 'nop']."""
    return text.split()


def readme_lists_eprobes(readme: str) -> bool:
    """True when tracefs README documents the ``e[:[<group>/][<event>]] ...`` syntax."""
    pat = r"^\s*e\[:\[<group>/\]\[<event>\]\]\s+<attached-group>"
    return re.search(pat, readme, re.M) is not None


def readme_lists_hist(readme: str) -> bool:
    """True when tracefs README documents the ``hist`` event trigger."""
    return re.search(r"^\s*hist\b", readme, re.M) is not None or "hist trigger" in readme


def parse_lockdown(text: str) -> str | None:
    """'[none] integrity confidentiality' -> 'none'."""
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else None


def lockdown_mode(kconfig: Mapping[str, str] | None = None) -> str | None:
    """'none' / 'integrity' / 'confidentiality' when it can be told, else None."""
    try:
        with open(LOCKDOWN_FILE) as f:
            mode = parse_lockdown(f.read())
        if mode:
            return mode
    except OSError:
        pass
    kc = read_kconfig() if kconfig is None else kconfig
    if kc.get("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") == "y":
        return "confidentiality"
    if kc.get("LOCK_DOWN_KERNEL_FORCE_INTEGRITY") == "y":
        return "integrity"
    return None


def _errname(err: int | None) -> str:
    return errno.errorcode.get(err or 0, str(err))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _looks_like_tracefs(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "events"))


# ---------------------------------------------------------------- the probe


class _Probe:
    """One discovery run: resolves tracefs once, memoizes every check."""

    def __init__(self, root: str | None, kconfig: Mapping[str, str] | None) -> None:
        self._root_arg = root
        self._root: str | None = None
        self.root_error = ""
        self._root_done = False
        self.mounted_now = False
        self._kconfig = kconfig
        self._results: dict[str, Feature] = {}
        self._trial: dict[str, Any] | None = None

    # -- shared inputs
    @property
    def kconfig(self) -> Mapping[str, str]:
        if self._kconfig is None:
            self._kconfig = read_kconfig()
        return self._kconfig

    def kc(self, opt: str) -> str | None:
        """'y'/'m'/'n' when the config is known, else None."""
        kc = self.kconfig
        if not kc:
            return None
        return kc.get(opt, "n")

    def root(self) -> str | None:
        if self._root_done:
            return self._root
        self._root_done = True
        if self._root_arg is not None:
            if _looks_like_tracefs(self._root_arg):
                self._root = self._root_arg
            else:
                self.root_error = f"{self._root_arg} is not a tracefs mount (no events/ directory)"
            return self._root
        from ..errors import TracefsError
        from .tracefs import tracefs_root

        try:
            self._root = tracefs_root(mount=False)
        except TracefsError:
            try:
                self._root = tracefs_root(mount=True)
                self.mounted_now = True
            except TracefsError as e:
                self.root_error = str(e)
        return self._root

    def path(self, rel: str) -> str:
        root = self.root()
        assert root is not None
        return os.path.join(root, rel)

    def get(self, name: str) -> Feature:
        f = self._results.get(name)
        if f is None:
            try:
                dep = _REQUIRES.get(name)
                f = (self.needs(dep, name) if dep else None) or _CHECKS[name](self)
            except ProbewatchError as e:
                f = Feature(name, False, str(e))
            except OSError as e:
                f = Feature(name, False, f"check failed: {_errname(e.errno)} ({e.strerror})")
            self._results[name] = f
        return f

    def needs(self, dep: str, name: str) -> Feature | None:
        """The answer for ``name`` when the feature ``dep`` it builds on is missing."""
        base = self.get(dep)
        if not base.available:
            return Feature(name, False, f"needs {dep}: {base.reason}")
        return None

    # -- the one trial instance: mkdir works? does the kernel let us select `function`?
    def trial(self, try_function: bool) -> dict[str, Any]:
        if self._trial is not None:
            return self._trial
        from .tracefs import Instance

        res: dict[str, Any] = {"instance_ok": False, "instance_error": "", "name": ""}
        root = self.root()
        assert root is not None
        try:
            inst = Instance.create(root)
        except ProbewatchError as e:
            res["instance_error"] = str(e)
            self._trial = res
            return res
        except OSError as e:
            res["instance_error"] = f"mkdir instances/probewatch-*: {e.strerror}"
            self._trial = res
            return res
        res["instance_ok"] = True
        res["name"] = inst.name
        try:
            if try_function:
                res["function"] = _try_function_tracer(inst.path)
        finally:
            try:
                inst.remove()
            except ProbewatchError as e:
                res["instance_error"] = f"trial instance {inst.name} not removed: {e}"
        self._trial = res
        return res


def _write(path: str, text: str) -> int:
    """Append ``text``; return 0 or the errno.

    Never O_TRUNC: truncating dynamic_events would delete every dynamic event there is.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as e:
        return e.errno or errno.EIO
    try:
        os.write(fd, text.encode())
        return 0
    except OSError as e:
        return e.errno or errno.EIO
    finally:
        os.close(fd)


def _try_function_tracer(inst_path: str) -> tuple[bool, int]:
    """Select the function tracer in a private instance, then put ``nop`` back.

    Tracing stays off in the instance and, when the kernel lets us, the filter is one
    function, so the trial costs next to nothing. Returns (accepted, errno).
    """
    cur = os.path.join(inst_path, "current_tracer")
    _write(os.path.join(inst_path, "tracing_on"), "0")
    filt = os.path.join(inst_path, "set_ftrace_filter")
    if os.path.exists(filt):
        _write(filt, "vfs_read\n")  # best effort: narrows the patching to one function
    err = _write(cur, "function\n")
    if err:
        return False, err
    selected = (_read(cur) or "").strip()
    _write(cur, "nop\n")
    if selected and selected != "function":
        return False, errno.EINVAL
    return True, 0


# ---------------------------------------------------------------- tracefs checks


def _check_tracefs(p: _Probe) -> Feature:
    root = p.root()
    if root is None:
        return Feature("tracefs", False, p.root_error)
    detail = f"mounted at {root}"
    if p.mounted_now:
        detail += " (mounted by probewatch just now)"
    return Feature("tracefs", True, "", detail)


def _check_instances(p: _Probe) -> Feature:
    name = "tracefs instances"
    if not os.path.isdir(p.path("instances")):
        return Feature(
            name,
            False,
            "tracefs has no instances/ directory: kernel too old for private trace "
            "buffers (they need Linux 3.10+)",
        )
    t = p.trial(try_function=_function_listed(p))
    if not t["instance_ok"]:
        return Feature(name, False, f"cannot create a private instance: {t['instance_error']}")
    detail = "private instance created and removed"
    if t["instance_error"]:
        detail += f"; WARNING: {t['instance_error']}"
    return Feature(name, True, "", detail)


def _check_tracepoints(p: _Probe) -> Feature:
    name = "tracepoints"
    events = p.path("events")
    systems = [
        d for d in _listdir(events) if os.path.isdir(os.path.join(events, d))
    ]
    avail = _read(p.path("available_events"))
    if avail is not None:
        n = sum(1 for line in avail.splitlines() if ":" in line)
    else:
        n = sum(
            1
            for s in systems
            for e in _listdir(os.path.join(events, s))
            if os.path.isdir(os.path.join(events, s, e))
        )
    if not systems or n == 0:
        return Feature(
            name,
            False,
            "no events under tracefs events/: kernel built without CONFIG_EVENT_TRACING "
            f"(enable it, or use {DISTRO_FIX})",
        )
    return Feature(name, True, "", f"{n} events in {len(systems)} systems")


def _check_syscalls(p: _Probe) -> Feature:
    name = "syscall tracepoints"
    evs = [e for e in _listdir(p.path("events/syscalls")) if e.startswith("sys_enter_")]
    if evs:
        return Feature(name, True, "", f"{len(evs)} syscalls (sys_enter_*/sys_exit_*)")
    raw = os.path.isdir(p.path("events/raw_syscalls/sys_enter"))
    reason = (
        "events/syscalls missing: kernel built without CONFIG_FTRACE_SYSCALLS "
        f"(rebuild with CONFIG_FTRACE_SYSCALLS=y, or use {DISTRO_FIX})"
    )
    if raw:
        reason += "; raw_syscalls:sys_enter/sys_exit exist (numbers only, no argument names)"
    return Feature(name, False, reason)


def _check_uprobe_events(p: _Probe) -> Feature:
    name = "uprobe_events"
    if os.path.exists(p.path("uprobe_events")):
        return Feature(name, True, "", "user-space dynamic probes (u:/p: on ELF offsets)")
    reason = "uprobe_events missing: kernel built without CONFIG_UPROBE_EVENTS"
    if p.kc("UPROBES") == "n":
        reason += " (CONFIG_UPROBES is not set either)"
    reason += f"; rebuild with CONFIG_UPROBES=y and CONFIG_UPROBE_EVENTS=y, or use {DISTRO_FIX}"
    return Feature(name, False, reason)


def _check_kprobe_events(p: _Probe) -> Feature:
    name = "kprobe_events"
    if os.path.exists(p.path("kprobe_events")):
        return Feature(name, True, "", "kernel dynamic probes (p:/r: on kernel functions)")
    if p.kc("KPROBES") == "n":
        reason = (
            "kprobe_events missing: kernel built without CONFIG_KPROBES, hence without "
            "CONFIG_KPROBE_EVENTS"
        )
    else:
        reason = "kprobe_events missing: kernel built without CONFIG_KPROBE_EVENTS"
    reason += (
        f"; rebuild with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y, or use {DISTRO_FIX}; "
        "tracepoints and uprobes still work"
    )
    return Feature(name, False, reason)


def _check_dynamic_events(p: _Probe) -> Feature:
    name = "dynamic_events"
    if os.path.exists(p.path("dynamic_events")):
        return Feature(name, True, "", "generic dynamic event control file")
    return Feature(
        name,
        False,
        "dynamic_events missing: kernel built without CONFIG_DYNAMIC_EVENTS (Linux 4.17+, "
        "selected by CONFIG_KPROBE_EVENTS/CONFIG_UPROBE_EVENTS); uprobe_events/kprobe_events "
        "are used instead",
    )


def _function_listed(p: _Probe) -> bool:
    text = _read(p.path("available_tracers"))
    return text is not None and "function" in parse_available_tracers(text)


def _check_function_tracer(p: _Probe) -> Feature:
    name = "function tracer"
    text = _read(p.path("available_tracers"))
    if text is None:
        return Feature(
            name,
            False,
            "available_tracers missing or unreadable: kernel built without CONFIG_FTRACE "
            "tracers (CONFIG_FUNCTION_TRACER)",
        )
    tracers = parse_available_tracers(text)
    if "function" not in tracers:
        reason = "function tracer not in available_tracers: "
        if p.kc("FUNCTION_TRACER") == "y":
            reason += (
                "the kernel has CONFIG_FUNCTION_TRACER=y but ftrace is not usable "
                "(disabled at boot or after an ftrace error: see dmesg)"
            )
        else:
            reason += (
                "kernel built without CONFIG_FUNCTION_TRACER (rebuild with "
                f"CONFIG_FUNCTION_TRACER=y and CONFIG_DYNAMIC_FTRACE=y, or use {DISTRO_FIX})"
            )
        return Feature(name, False, reason, f"available_tracers: {' '.join(tracers) or '(none)'}")
    if not os.path.isdir(p.path("instances")):
        return Feature(
            name, True, "", "listed in available_tracers (not trial-selected: no instances/)"
        )
    t = p.trial(try_function=True)
    if not t["instance_ok"]:
        return Feature(
            name,
            True,
            "",
            f"listed in available_tracers (not trial-selected: {t['instance_error']})",
        )
    ok, err = t.get("function", (False, errno.EINVAL))
    if ok:
        return Feature(name, True, "", "selected and reset in a private instance")
    reason = (
        "function tracer listed in available_tracers but the kernel refuses to select it "
        f"({_errname(err)} writing 'function' to current_tracer in a private instance): "
        "function tracing is blocked on this kernel"
    )
    facts = []
    if p.kc("FUNCTION_TRACER") == "y":
        facts.append("built with CONFIG_FUNCTION_TRACER=y")
    mode = lockdown_mode(p.kconfig)
    if mode and mode != "none":
        facts.append(f"lockdown: {mode}")
    if facts:
        reason += f" ({'; '.join(facts)})"
    reason += "; use tracepoints or uprobes instead, or a kernel that permits ftrace"
    return Feature(name, False, reason)


def _check_hist(p: _Probe) -> Feature:
    name = "hist triggers"
    candidates = [p.path("events/sched/sched_switch")]
    events = p.path("events")
    for s in sorted(_listdir(events))[:8]:
        sd = os.path.join(events, s)
        for e in sorted(_listdir(sd))[:2]:
            candidates.append(os.path.join(sd, e))
    for c in candidates:
        if os.path.exists(os.path.join(c, "hist")):
            rel = os.path.relpath(os.path.join(c, "hist"), p.path(""))
            return Feature(name, True, "", f"{rel} present")
    readme = _read(p.path("README")) or ""
    reason = (
        "no 'hist' file under events/<system>/<event>/: kernel built without "
        f"CONFIG_HIST_TRIGGERS; rebuild with CONFIG_HIST_TRIGGERS=y, or use {DISTRO_FIX}"
    )
    if readme_lists_hist(readme):
        reason = (
            "README documents hist triggers but no event has a 'hist' file "
            "(CONFIG_HIST_TRIGGERS?)"
        )
    return Feature(name, False, reason)


def _check_eprobes(p: _Probe) -> Feature:
    name = "eprobes"
    fix = f"rebuild with CONFIG_EPROBE_EVENTS=y (Linux 5.15+), or use {DISTRO_FIX}"
    # only an explicit "# CONFIG_EPROBE_EVENTS is not set" says no: kernels before that
    # option existed (5.15-6.1, e.g. Debian 12's 6.1) build eprobes with PROBE_EVENTS
    if (p.kconfig or {}).get("EPROBE_EVENTS") == "n":
        return Feature(name, False, f"kernel built without CONFIG_EPROBE_EVENTS; {fix}")
    readme = _read(p.path("README")) or ""
    if not readme_lists_eprobes(readme):
        return Feature(
            name,
            False,
            "tracefs README does not list the e[:<group>/<event>] <system>.<event> syntax: "
            f"kernel built without CONFIG_EPROBE_EVENTS or older than 5.15; {fix}",
        )
    dyn = p.path("dynamic_events")
    if not os.path.exists(dyn):
        return Feature(
            name, False, f"dynamic_events missing (eprobes are created there): {fix}"
        )
    # The README line is printed whether or not eprobes are built in: try one for real.
    target = _eprobe_target(p)
    if target is None:
        return Feature(name, False, "no event to attach a trial eprobe to")
    group = f"probewatch_{os.getpid()}_doctor"
    log_before = _read(p.path("error_log")) or ""
    err = _write(dyn, f"e:{group}/eprobe {target}\n")
    if err:
        log_after = _read(p.path("error_log")) or ""
        new_log = log_after[len(log_before):] if log_after.startswith(log_before) else ""
        reason = (
            f"kernel refused a trial eprobe on {target} ({_errname(err)}"
            + (f": {new_log.strip().splitlines()[0]}" if new_log.strip() else "")
            + f"): kernel built without CONFIG_EPROBE_EVENTS; {fix}"
        )
        return Feature(name, False, reason)
    # removed at once; if we die in between, sweep_stale() removes it (owner pid dead)
    rm_err = _write(dyn, f"-:{group}/eprobe\n")
    detail = f"trial eprobe on {target} created and removed"
    if rm_err:
        detail = f"trial eprobe {group}/eprobe NOT removed ({_errname(rm_err)})"
    return Feature(name, True, "", detail)


def _eprobe_target(p: _Probe) -> str | None:
    if os.path.isdir(p.path("events/sched/sched_switch")):
        return "sched.sched_switch"
    events = p.path("events")
    for s in sorted(_listdir(events)):
        for e in sorted(_listdir(os.path.join(events, s))):
            if os.path.exists(os.path.join(events, s, e, "format")):
                return f"{s}.{e}"
    return None


# ---------------------------------------------------------------- perf checks


def _perf_reason(err: int) -> str:
    if err == errno.ENOSYS:
        return "perf_event_open not implemented: kernel built without CONFIG_PERF_EVENTS"
    if err in (errno.EACCES, errno.EPERM):
        paranoid = (_read("/proc/sys/kernel/perf_event_paranoid") or "?").strip()
        if os.geteuid() != 0:
            return (
                f"not permitted (kernel.perf_event_paranoid={paranoid}): needs "
                "CAP_PERFMON/CAP_SYS_ADMIN (run as root, or sysctl kernel.perf_event_paranoid=-1)"
            )
        return (
            f"not permitted even as root (kernel.perf_event_paranoid={paranoid}): "
            "lockdown or an LSM refuses perf_event_open"
        )
    if err in (errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP):
        return "tracepoint events unsupported by perf: kernel built without CONFIG_EVENT_TRACING"
    return os.strerror(err)


def _check_perf(p: _Probe) -> Feature:
    name = "perf_event_open"
    from .perf import (
        PERF_COUNT_SW_CPU_CLOCK,
        PERF_TYPE_SOFTWARE,
        PerfError,
        new_attr,
        perf_event_open,
        tracepoint_attr,
    )

    tp_id: int | None = None
    if p.root() is not None:
        txt = _read(p.path("events/sched/sched_switch/id"))
        if txt and txt.strip().isdigit():
            tp_id = int(txt.strip())
    if tp_id is None:
        attr = new_attr(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, 1)
        what = "software cpu-clock event (tracepoint untested: no sched:sched_switch id)"
    else:
        attr = tracepoint_attr(tp_id)
        what = f"tracepoint sched:sched_switch (id {tp_id}) on cpu 0"
    try:
        fd = perf_event_open(attr, pid=-1, cpu=0)
    except PerfError as e:
        err = e.errno or errno.EIO
        return Feature(
            name, False, f"opening {what} failed with {_errname(err)}: {_perf_reason(err)}"
        )
    os.close(fd)
    return Feature(name, True, "", f"opened and closed {what}")


def _check_uprobe_pmu(p: _Probe) -> Feature:
    name = "perf uprobe PMU"
    txt = _read(os.path.join(EVENT_SOURCE_DIR, "uprobe", "type"))
    if txt and txt.strip().isdigit():
        return Feature(name, True, "", f"PMU type {txt.strip()} (fd-based uprobes, Linux 4.17+)")
    reason = f"no {EVENT_SOURCE_DIR}/uprobe: "
    if p.kc("UPROBE_EVENTS") == "n":
        reason += "kernel built without CONFIG_UPROBE_EVENTS"
    else:
        reason += "kernel older than 4.17 or built without CONFIG_UPROBE_EVENTS"
    reason += "; uprobes can still be created through tracefs uprobe_events if present"
    return Feature(name, False, reason)


# ---------------------------------------------------------------- BPF checks


def _bpf_reason(err: int) -> str:
    if err == errno.ENOSYS:
        return "bpf(2) not implemented: kernel built without CONFIG_BPF_SYSCALL"
    if err in (errno.EPERM, errno.EACCES):
        if os.geteuid() != 0:
            return "not permitted: needs CAP_BPF/CAP_SYS_ADMIN (run as root)"
        return (
            "not permitted even as root: before Linux 5.11 BPF memory counts against "
            "RLIMIT_MEMLOCK (ulimit -l unlimited); otherwise lockdown or an LSM refuses bpf()"
        )
    if err == errno.ENOMEM:
        return "out of memory (before Linux 5.11: RLIMIT_MEMLOCK too low, ulimit -l unlimited)"
    return os.strerror(err)


def _check_bpf(p: _Probe) -> Feature:
    name = "BPF"
    from .bpfsys import BPF_MAP_TYPE_ARRAY, BpfError, map_create

    try:
        fd = map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1)
    except BpfError as e:
        err = e.errno or errno.EIO
        reason = f"bpf(BPF_MAP_CREATE) failed with {_errname(err)}: {_bpf_reason(err)}"
        return Feature(name, False, reason)
    os.close(fd)
    bits = ["bpf(2) works"]
    jit = (_read("/proc/sys/net/core/bpf_jit_enable") or "").strip()
    if jit:
        bits.append("JIT " + ("on" if jit != "0" else "off"))
    return Feature(name, True, "", ", ".join(bits))


# BPF program types probed by loading "r0 = 0; exit": feature -> (enum name, why not)
_PROG_TYPES = {
    "BPF tracepoint programs": (
        "BPF_PROG_TYPE_TRACEPOINT", "kernel built without CONFIG_BPF_EVENTS (Linux 4.7+)"),
    "BPF kprobe programs": (
        "BPF_PROG_TYPE_KPROBE", "kernel built without CONFIG_BPF_EVENTS (Linux 4.1+)"),
    "BPF raw_tracepoint programs": (
        "BPF_PROG_TYPE_RAW_TRACEPOINT", "needs Linux 4.17+ built with CONFIG_BPF_EVENTS"),
}


def _check_bpf_prog(p: _Probe, name: str) -> Feature:
    from . import bpfsys
    from .bpfsys import BpfError, prog_load

    type_name, needs = _PROG_TYPES[name]
    prog_type = getattr(bpfsys, type_name)
    try:
        fd = prog_load(prog_type)
    except BpfError as e:
        err = e.errno or errno.EIO
        log = ""
        if err == errno.EINVAL:
            try:
                os.close(prog_load(prog_type, log_size=4096))
            except BpfError as e2:
                log = e2.log.splitlines()[-1] if e2.log else ""
            hint = f"program type not supported by this kernel: {needs}"
        else:
            hint = _bpf_reason(err)
        reason = f"loading a {type_name} program failed with {_errname(err)}: {hint}"
        if log:
            reason += f" (verifier: {log})"
        return Feature(name, False, reason)
    os.close(fd)
    return Feature(name, True, "", f"{type_name} 'r0 = 0; exit' loaded (GPL)")


def _check_bpf_kprobe(p: _Probe, name: str) -> Feature:
    # (the prerequisite is checked here, not by _REQUIRES: the detail is added either way)
    f = p.needs("BPF", name) or _check_bpf_prog(p, name)
    kprobes = (p.root() is not None and os.path.exists(p.path("kprobe_events"))) or os.path.isdir(
        os.path.join(EVENT_SOURCE_DIR, "kprobe")
    )
    use = "(kprobes and uprobes)" if kprobes else "(uprobes; kprobes need CONFIG_KPROBES)"
    f.detail = f"{f.detail} {use}".strip()
    return f


def _check_ringbuf(p: _Probe) -> Feature:
    name = "BPF ring buffer map"
    from .bpfsys import BPF_MAP_TYPE_RINGBUF, BpfError, map_create

    size = max(4096, os.sysconf("SC_PAGE_SIZE"))
    try:
        fd = map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, size)
    except BpfError as e:
        err = e.errno or errno.EIO
        hint = (
            "BPF_MAP_TYPE_RINGBUF needs Linux 5.8+ (perf buffers work on older kernels)"
            if err == errno.EINVAL
            else _bpf_reason(err)
        )
        reason = f"creating a {size}-byte ring buffer failed with {_errname(err)}: {hint}"
        return Feature(name, False, reason)
    os.close(fd)
    return Feature(name, True, "", f"BPF_MAP_TYPE_RINGBUF of {size} bytes created")


def _check_btf(p: _Probe) -> Feature:
    name = "BTF"
    try:
        with open(BTF_VMLINUX, "rb") as f:
            head = f.read(4)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return Feature(
            name,
            False,
            f"{BTF_VMLINUX} missing: kernel built without CONFIG_DEBUG_INFO_BTF (needed for "
            f"CO-RE BPF programs; Linux 5.2+); rebuild with it, or use {DISTRO_FIX}",
        )
    except PermissionError:
        return Feature(name, False, f"{BTF_VMLINUX}: permission denied (run as root)")
    if head[:2] not in (b"\x9f\xeb", b"\xeb\x9f"):
        return Feature(name, False, f"{BTF_VMLINUX} does not start with the BTF magic 0xeB9F")
    detail = f"{BTF_VMLINUX}"
    if size:
        detail += f" ({size // 1024} KiB)"
    return Feature(name, True, "", detail)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


_CHECKS: dict[str, Callable[[_Probe], Feature]] = {
    "tracefs": _check_tracefs,
    "tracefs instances": _check_instances,
    "tracepoints": _check_tracepoints,
    "syscall tracepoints": _check_syscalls,
    "uprobe_events": _check_uprobe_events,
    "kprobe_events": _check_kprobe_events,
    "dynamic_events": _check_dynamic_events,
    "function tracer": _check_function_tracer,
    "hist triggers": _check_hist,
    "eprobes": _check_eprobes,
    "perf_event_open": _check_perf,
    "perf uprobe PMU": _check_uprobe_pmu,
    "BPF": _check_bpf,
    "BPF tracepoint programs": lambda p: _check_bpf_prog(p, "BPF tracepoint programs"),
    "BPF kprobe programs": lambda p: _check_bpf_kprobe(p, "BPF kprobe programs"),
    "BPF raw_tracepoint programs": lambda p: _check_bpf_prog(p, "BPF raw_tracepoint programs"),
    "BPF ring buffer map": _check_ringbuf,
    "BTF": _check_btf,
}

# feature -> the feature it builds on; when that one is missing, so is this one
_REQUIRES: dict[str, str] = {
    **dict.fromkeys(
        ("tracefs instances", "tracepoints", "syscall tracepoints", "uprobe_events",
         "kprobe_events", "dynamic_events", "function tracer", "hist triggers", "eprobes"),
        "tracefs",
    ),
    "BPF tracepoint programs": "BPF",
    "BPF raw_tracepoint programs": "BPF",
    "BPF ring buffer map": "BPF",
}
assert tuple(_CHECKS) == FEATURE_NAMES

# answers of require()/check() on the live kernel, per (name, root): a kernel does not
# grow features while we run
_cache: dict[tuple[str, str | None], Feature] = {}


# ---------------------------------------------------------------- public API


def probe_features(
    root: str | None = None, *, kconfig: Mapping[str, str] | None = None
) -> list[Feature]:
    """Probe every feature, in FEATURE_NAMES order; fresh answers (no cache).

    ``root`` is the tracefs mount point (default: found, and mounted if absent).
    ``kconfig`` overrides the kernel config used to word reasons ({} = unknown).

    Example::

        missing = [f.name for f in probe_features() if not f.available]
    """
    p = _Probe(root, kconfig)
    out = [p.get(n) for n in FEATURE_NAMES]
    if kconfig is None:
        for f in out:
            _cache[(f.name, root)] = f
    return out


def check(
    name: str, root: str | None = None, *, kconfig: Mapping[str, str] | None = None
) -> Feature:
    """Probe one feature by name (cached per process for the live kernel).

    Example::

        check("BTF").available
    """
    if name not in _CHECKS:
        raise ValueError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}")
    if kconfig is None and (name, root) in _cache:
        return _cache[(name, root)]
    f = _Probe(root, kconfig).get(name)
    if kconfig is None:
        _cache[(name, root)] = f
    return f


def require(feature_name: str, root: str | None = None) -> Feature:
    """Return the Feature when available, else raise FeatureUnavailable with its reason.

    Example::

        require("kprobe_events")   # FeatureUnavailable: kprobe_events missing: kernel built ...
    """
    f = check(feature_name, root)
    if not f.available:
        raise FeatureUnavailable(f.reason)
    return f


def clear_cache() -> None:
    """Forget cached answers of check()/require() (after mounting, loading modules...)."""
    _cache.clear()


def _root_or_none(root: str | None) -> str | None:
    if root is not None:
        return root
    from ..errors import TracefsError
    from .tracefs import tracefs_root

    try:
        return tracefs_root()
    except TracefsError:
        return None


def has_kprobes(root: str | None = None) -> bool:
    """True when tracefs offers kprobe_events (kernel dynamic probes).

    Example::

        backend = "kprobe" if has_kprobes() else "tracepoint"
    """
    r = _root_or_none(root)
    return r is not None and os.path.exists(os.path.join(r, "kprobe_events"))


def has_uprobes(root: str | None = None) -> bool:
    """True when tracefs offers uprobe_events (user-space dynamic probes).

    Example::

        if not has_uprobes(): raise SystemExit("no uprobes here")
    """
    r = _root_or_none(root)
    return r is not None and os.path.exists(os.path.join(r, "uprobe_events"))


__all__ = [
    "Feature",
    "FEATURE_NAMES",
    "probe_features",
    "check",
    "require",
    "clear_cache",
    "has_kprobes",
    "has_uprobes",
    "lockdown_mode",
    "read_kconfig",
    "parse_kconfig",
    "parse_available_tracers",
    "readme_lists_eprobes",
    "readme_lists_hist",
]
