"""Dynamic events defined in the kernel now (uprobes, kprobes, eprobes, ...) and their owners.

Parses the control files ``uprobe_events`` / ``kprobe_events`` / ``dynamic_events`` and
names each probe's owner (group ``probewatch_<PID>`` is owned by PID).

Example::

    parse_probe_line("r:probewatch_42/readline_0 /usr/bin/bash:0x00000000000b2830")
    # {'kind': 'uretprobe', 'group': 'probewatch_42', 'name': 'readline_0', ...}
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import FeatureUnavailable


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


_HEAD = re.compile(r"^([a-zA-Z])(\d*):(?:([^/\s]+)/)?([^/\s]+)$")
_UPROBE_TARGET = re.compile(r"^(\S+):(0x[0-9a-fA-F]+)(?:\((0x[0-9a-fA-F]+)\))?$")
_HEAD_KINDS = {"e": "eprobe", "s": "synthetic", "f": "fprobe", "t": "tprobe"}
_DEFAULT_GROUPS = {"p": "kprobes", "r": "kprobes", "e": "eprobes", "s": "synthetic",
                   "f": "fprobes", "t": "tracepoints"}


def parse_probe_line(line: str, control: str = "dynamic_events") -> dict[str, Any]:
    """One line of ``uprobe_events`` / ``kprobe_events`` / ``dynamic_events``.

    ``control`` is the file it came from: in ``dynamic_events`` a ``p:`` line is a
    uprobe when its target is ``PATH:0xOFFSET``, else a kprobe. Raises ValueError for
    a line that is not a probe definition.

    Example::

        parse_probe_line("p:g/n /bin/x:0x0000000000001130(0x4010) a=%di:s32")
        # kind 'uprobe', target '/bin/x:0x1130', offset 0x1130, ref_ctr_offset 0x4010
    """
    words = line.split()
    if not words:
        raise ValueError("empty line")
    m = _HEAD.match(words[0])
    if not m:
        raise ValueError(f"not a dynamic event definition: {line!r}")
    head, maxactive, group, name = m.group(1), m.group(2), m.group(3), m.group(4)
    rest = words[1:]
    row: dict[str, Any] = {
        "kind": "unknown",
        "group": group or _DEFAULT_GROUPS.get(head, ""),
        "name": name,
        "event": "",
        "target": None,
        "path": None,
        "offset": None,
        "ref_ctr_offset": None,
        "maxactive": int(maxactive) if maxactive else None,
        "args": [],
        "definition": line.strip(),
    }
    row["event"] = f"{row['group']}/{name}"
    if head in ("p", "r"):
        target = rest[0] if rest else ""
        um = _UPROBE_TARGET.match(target)
        is_uprobe = control == "uprobe_events" or (
            control != "kprobe_events" and um is not None and target.startswith("/")
        )
        if is_uprobe:
            row["kind"] = "uprobe" if head == "p" else "uretprobe"
            if um:
                row["path"] = um.group(1)
                row["offset"] = int(um.group(2), 16)
                if um.group(3):
                    row["ref_ctr_offset"] = int(um.group(3), 16)
                row["target"] = f"{um.group(1)}:0x{row['offset']:x}" + (
                    f"(0x{row['ref_ctr_offset']:x})" if um.group(3) else ""
                )
            else:
                row["target"] = target or None
        else:
            row["kind"] = "kprobe" if head == "p" else "kretprobe"
            row["target"] = target or None
        row["args"] = rest[1:]
    elif head in _HEAD_KINDS:
        row["kind"] = _HEAD_KINDS[head]
        if head == "s":  # synthetic: 'TYPE FIELD; TYPE FIELD' is all fields, no target
            row["args"] = [a.strip() for a in " ".join(rest).split(";") if a.strip()]
        else:
            row["target"] = rest[0] if rest else None
            row["args"] = rest[1:]
            if head == "f" and row["target"] and row["target"].endswith("%return"):
                row["kind"] = "fexit"
    else:
        row["target"] = " ".join(rest) or None
    return row


def _profile_hits(root: str) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Hit counts from uprobe_profile (by path and event name) and kprobe_profile."""
    uhits: dict[tuple[str, str], int] = {}
    khits: dict[str, int] = {}
    dup: set[str] = set()
    try:
        for ln in _read(os.path.join(root, "uprobe_profile")).splitlines():
            f = ln.split()
            if len(f) == 3 and f[2].isdigit():
                uhits[(f[0], f[1])] = int(f[2])
    except OSError:
        pass
    try:
        for ln in _read(os.path.join(root, "kprobe_profile")).splitlines():
            f = ln.split()
            if len(f) >= 2 and f[1].isdigit():
                if f[0] in khits:
                    dup.add(f[0])
                khits[f[0]] = int(f[1])
    except OSError:
        pass
    for d in dup:  # the profile names events without their group: ambiguous
        del khits[d]
    return uhits, khits


def process_owner(group: str) -> tuple[int | None, bool | None, str | None]:
    """(pid, alive, comm) of the probewatch process owning ``group``; Nones if unknown.

    ``probewatch_<PID>`` (and ``probewatch_<PID>_<anything>``) are owned by PID.
    """
    from .tracefs import GROUP_RE, pid_alive

    m = GROUP_RE.match(group)
    if not m:
        return None, None, None
    pid = int(m.group(1))
    if not pid_alive(pid):
        return pid, False, None
    try:
        comm: str | None = _read(f"/proc/{pid}/comm").strip()
    except OSError:
        comm = None
    return pid, True, comm


def probe_rows(root: str) -> list[dict[str, Any]]:
    """Every dynamic event defined now, from ``dynamic_events`` (or, on kernels without
    it, ``uprobe_events`` + ``kprobe_events``), with owner and hit count."""
    files: dict[str, list[str]] = {}
    for f in ("uprobe_events", "kprobe_events", "dynamic_events"):
        try:
            files[f] = [ln for ln in _read(os.path.join(root, f)).splitlines() if ln.strip()]
        except OSError:
            continue
    if not files:
        raise FeatureUnavailable(
            f"{root} has no uprobe_events, kprobe_events or dynamic_events: kernel without"
            " dynamic probes"
        )
    uprobe_keys = {_key(ln) for ln in files.get("uprobe_events", [])}
    kprobe_keys = {_key(ln) for ln in files.get("kprobe_events", [])}
    lines: list[tuple[str, str]] = []
    if "dynamic_events" in files:
        for ln in files["dynamic_events"]:
            k = _key(ln)
            src = ("uprobe_events" if k in uprobe_keys
                   else "kprobe_events" if k in kprobe_keys else "dynamic_events")
            lines.append((ln, src))
    else:
        lines = [(ln, f) for f in ("uprobe_events", "kprobe_events") for ln in files.get(f, [])]
    uhits, khits = _profile_hits(root)
    rows = []
    seen: set[str] = set()
    for ln, src in lines:
        try:
            row = parse_probe_line(ln, src)
        except ValueError:
            continue
        if row["event"] in seen:
            continue
        seen.add(row["event"])
        if row["kind"] in ("uprobe", "uretprobe"):
            row["hits"] = uhits.get((row["path"] or "", row["name"]))
        elif row["kind"] in ("kprobe", "kretprobe"):
            row["hits"] = khits.get(row["name"])
        else:
            row["hits"] = None
        pid, alive, comm = process_owner(row["group"])
        row["owner_pid"], row["owner_alive"], row["owner_comm"] = pid, alive, comm
        if pid is None:
            row["owner"] = "unknown"
        elif alive:
            row["owner"] = f"{pid} ({comm or '?'})"
        else:
            row["owner"] = f"{pid} (dead)"
        rows.append(row)
    return rows


def _key(line: str) -> str:
    try:
        return str(parse_probe_line(line)["event"])
    except ValueError:
        return ""
