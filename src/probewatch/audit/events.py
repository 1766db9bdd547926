"""Audit findings as Sigma events (logsource ``category: audit``), the shipped audit
rules, and the periodic poll of ``watch --audit``.

Every finding becomes one :class:`~probewatch.detect.model.SigmaEvent` of kind
``audit`` whose ``pid`` is the acting process (the tracer of a ptrace, the holder of a
BPF program, the owner of a probe); docs/detection.md lists the fields.

Example::

    rep = Scanner().scan()
    sevs = [to_sigma(f, rep.processes) for f in rep.findings]
    sevs[0].fields["Finding"], sevs[0].fields["Owner"]      # ('bpf_prog', 'bpftrace')
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .scan import Finding, Report, Scanner

#: the shipped rules for audit findings
AUDIT_RULES_DIR = Path(__file__).with_name("rules")


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def _process_fields(p: dict[str, Any] | None) -> dict[str, Any]:
    if not p:
        return {}
    out: dict[str, Any] = {"ProcessId": p.get("pid"), "Comm": p.get("comm")}
    if p.get("exe"):
        out["Image"] = p["exe"]
    if p.get("cmdline") is not None:
        out["CommandLine"] = p["cmdline"]
    if p.get("ppid") is not None:
        out["ParentProcessId"] = p["ppid"]
    if p.get("uid") is not None:
        out["Uid"] = p["uid"]
        out["User"] = _user(int(p["uid"]))
    return {k: v for k, v in out.items() if v is not None}


def acting_pid(f: Finding) -> int:
    """The process a finding is about: a ptrace's tracer, else the first pid."""
    if f.kind == "ptrace" and len(f.pids) > 1:
        return f.pids[1]
    return f.pids[0] if f.pids else 0


def sigma_fields(f: Finding, procs: dict[int, dict[str, Any]] | None = None,
                 change: str = "present") -> dict[str, Any]:
    """The Sigma fields of one finding (docs/detection.md, category audit)."""
    d = f.detail
    pid = acting_pid(f)
    p = (procs or {}).get(pid) or d.get("process") or (
        d.get("tracer") if f.kind == "ptrace" else None)
    fields: dict[str, Any] = {
        "Finding": f.kind, "Change": change, "Key": f.key, "Summary": f.what,
        "Owner": f.owner, "Instance": f.where,
    }
    fields.update(_process_fields(p))
    if pid and "ProcessId" not in fields:
        fields["ProcessId"] = pid
    pt = d.get("probe_type")
    if pt:
        fields["ProbeType"] = pt
    if d.get("path"):
        fields["TargetPath"] = d["path"]
    if d.get("symbol"):
        fields["TargetSymbol"] = d["symbol"]
    if d.get("target_class"):
        fields["TargetClass"] = d["target_class"]
    tgt = d.get("target") or (", ".join(d["attach"]) if d.get("attach") else None) or d.get(
        "event")
    if tgt:
        fields["Target"] = tgt
    for src, dst in (("group", "Group"), ("event", "Event"), ("prog_id", "ProgId"),
                     ("prog_type", "ProgType"), ("tag", "ProgTag"),
                     ("attach_type", "AttachType"), ("attached", "Attached"),
                     ("filter", "Filter"), ("trigger", "Trigger"), ("tracer", "Tracer"),
                     ("module", "Module"), ("variable", "Variable"), ("value", "Value"),
                     ("count", "Count")):
        v = d.get(src)
        if v is not None and not (src == "tracer" and isinstance(v, dict)):
            fields[dst] = v
    if f.kind == "bpf_prog":
        fields["ProgName"] = d.get("name", "")
    if d.get("holders"):
        fields["Holders"] = list(d["holders"])
    if f.kind in ("taint", "module"):
        fields["TaintFlags"] = d.get("flags", "")
    if f.kind == "ptrace":
        t = d.get("tracee") or {}
        fields["TracedPid"] = t.get("pid")
        if t.get("exe"):
            fields["TracedImage"] = t["exe"]
        if t.get("cmdline") is not None:
            fields["TracedCommandLine"] = t["cmdline"]
    if f.kind == "preload":
        fields[d.get("variable", "LD_PRELOAD")] = d.get("value", "")
    if f.kind == "ld_so_preload":
        fields["LD_PRELOAD"] = d.get("value", "")
    return {k: v for k, v in fields.items() if v is not None}


def to_sigma(f: Finding, procs: dict[int, dict[str, Any]] | None = None,
             change: str = "present", ts: int | None = None) -> Any:
    """One finding as a SigmaEvent of kind ``audit`` (``ts``: CLOCK_MONOTONIC ns)."""
    from ..detect.model import SigmaEvent

    return SigmaEvent("audit", time.monotonic_ns() if ts is None else ts, acting_pid(f),
                      sigma_fields(f, procs, change), source=f)


def audit_ruleset(extra: Iterable[str | Path] = ()) -> Any:
    """The shipped audit rules (and ``extra`` rule files/directories)."""
    from ..detect.engine import RuleSet

    return RuleSet.load([AUDIT_RULES_DIR, *[Path(x) for x in extra]], default=False)


def alerts_for(rep: Report, extra_rules: Iterable[str | Path] = (),
               min_level: str = "informational") -> list[dict[str, Any]]:
    """What the audit rules flag in ``rep``: ``{"rule": {...}, "finding": {...},
    "matched": {...}, "line": TEXT}`` per match."""
    from ..decode.escape import escape_text
    from ..detect.engine import Engine

    rules = audit_ruleset(extra_rules)
    eng = Engine(rules, min_level=min_level)
    out: list[dict[str, Any]] = []
    for f in rep.findings:
        sev = to_sigma(f, rep.processes)
        for m in eng.process(sev):
            r = m.rule
            techs = sorted(t[7:].upper() for t in (r.tags or ())
                           if str(t).startswith("attack.t"))
            line = (f"{str(r.level).upper():<8} {escape_text(str(r.title))}"
                    f"{' [' + ','.join(techs) + ']' if techs else ''}: "
                    f"{escape_text(f.what)} (owner {escape_text(f.owner)}"
                    f"{', pids ' + ','.join(map(str, f.pids)) if f.pids else ''})")
            out.append({"type": "audit_alert",
                        "rule": {"id": r.id, "title": r.title, "level": r.level,
                                 "techniques": techs},
                        "finding": f.to_dict(), "line": line})
    return out


class Poller:
    """Audit at start and then every ``interval`` seconds in a thread; hand the Sigma
    events of what is there at start (Change ``present``) and of what is new or changed
    since the previous poll (``new`` / ``changed``) to ``submit``.

    ``exclude_pids``: this run's own processes. Errors of one poll are counted in
    ``errors`` (and the last kept in ``last_error``), never raised."""

    def __init__(self, submit: Callable[[list[Any]], None], interval: float = 5.0,
                 exclude_pids: set[int] | None = None) -> None:
        self.submit = submit
        self.interval = interval
        self.scanner = Scanner(exclude_pids=exclude_pids or {os.getpid()}, full=False)
        self.polls = 0
        self.findings = 0
        self.errors = 0
        self.last_error: str | None = None
        self._prev: dict[str, Finding] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[Any]:
        """One audit; the Sigma events it gives (also handed to ``submit``)."""
        rep = self.scanner.scan()
        self.polls += 1
        from .diff import diff

        sevs = []
        if self._prev is None:
            sevs = [to_sigma(f, rep.processes, "present") for f in rep.findings]
        else:
            old = Report(findings=list(self._prev.values()))
            for c in diff(old, rep):
                if c.change in ("added", "changed"):
                    sevs.append(to_sigma(c.finding, rep.processes,
                                         "new" if c.change == "added" else "changed"))
        self._prev = {f.key: f for f in rep.findings}
        self.findings = len(rep.findings)
        if sevs:
            self.submit(sevs)
        return sevs

    def _run(self) -> None:
        while True:
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 - an audit error must not stop watch
                self.errors += 1
                self.last_error = str(e)
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="probewatch-audit",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


__all__ = ["AUDIT_RULES_DIR", "Poller", "alerts_for", "audit_ruleset", "sigma_fields",
           "to_sigma", "acting_pid"]
