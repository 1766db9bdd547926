"""Compare two audits, and render one as a text table.

Findings are matched by ``key``: a finding only in the new audit is ``added``, only
in the old one ``removed``; one in both whose description, owner, processes or
details differ is ``changed``, with each differing value named.

Example::

    d = diff(old_report, new_report)
    [f"{c.change} {c.finding.what}" for c in d]
    # ['added kprobe prog getpid (id 812) at uprobe /usr/lib/.../libssl.so.3:SSL_read']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .scan import Finding, Report

#: details that are not identity and change without anything being done
VOLATILE = frozenset({"holders", "owner_alive", "load_time"})


@dataclass
class Change:
    change: str                       # added | removed | changed
    finding: Finding                  # the new one (removed: the old one)
    fields: list[str] = field(default_factory=list)   # 'owner: a -> b', ...

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.change, "fields": list(self.fields),
                "finding": self.finding.to_dict()}


def _norm(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _norm(x) for k, x in v.items()}
    return v


def diff(old: Report, new: Report) -> list[Change]:
    """What changed from ``old`` to ``new`` (removed first, then added and changed, each
    in the order the reports list their findings)."""
    before = {f.key: f for f in old.findings}
    after = {f.key: f for f in new.findings}
    out = [Change("removed", f) for k, f in before.items() if k not in after]
    for k, f in after.items():
        o = before.get(k)
        if o is None:
            out.append(Change("added", f))
            continue
        fields = []
        for name in ("what", "owner", "pids", "where"):
            a, b = _norm(getattr(o, name)), _norm(getattr(f, name))
            if a != b:
                fields.append(f"{name}: {a} -> {b}")
        od, nd = _norm(o.detail), _norm(f.detail)
        for name in sorted(set(od) | set(nd)):
            if name in VOLATILE:
                continue
            if od.get(name) != nd.get(name):
                fields.append(f"{name}: {od.get(name)} -> {nd.get(name)}")
        if fields:
            out.append(Change("changed", f, fields))
    return out


def _pids(f: Finding) -> str:
    return ",".join(map(str, f.pids)) or "-"


def table(findings: list[Finding], notes: list[str] | None = None) -> str:
    """The findings as an aligned text table (KIND, OWNER, PIDS, WHAT); text that
    processes or other tools control is escaped."""
    from ..decode.escape import escape_text

    rows = [("KIND", "OWNER", "PIDS", "WHAT")]
    for f in findings:
        rows.append((f.kind, escape_text(f.owner), _pids(f), escape_text(f.what)))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip() for r in rows]
    if len(rows) == 1:
        lines = ["no observers or hooks found besides this run's own"]
    for n in notes or []:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def diff_lines(changes: list[Change]) -> str:
    """One line per change: '+ KIND WHAT (owner, pids)', '- ...', '~ ... [field: a -> b]'."""
    from ..decode.escape import escape_text

    if not changes:
        return "no changes"
    sign = {"added": "+", "removed": "-", "changed": "~"}
    out = []
    for c in changes:
        f = c.finding
        line = (f"{sign[c.change]} {f.kind} {escape_text(f.what)} "
                f"(owner {escape_text(f.owner)}, pids {_pids(f)})")
        if c.fields:
            line += " [" + "; ".join(escape_text(x) for x in c.fields) + "]"
        out.append(line)
    return "\n".join(out)


__all__ = ["Change", "diff", "table", "diff_lines"]
