"""Tracepoint sources: resolve ``t:SYSTEM:NAME`` (globs allowed) against tracefs.

Example::

    resolve_tracepoints("/sys/kernel/tracing", "syscalls", "sys_enter_open*")
    # [('syscalls', 'sys_enter_open'), ('syscalls', 'sys_enter_openat'), ...]
"""

from __future__ import annotations

import difflib
import fnmatch
import os

from ..errors import NotFound

MAX_GLOB = 1024


def list_tracepoints(root: str) -> list[tuple[str, str]]:
    """Every (system, name) under events/, from the kernel's own directory tree."""
    out = []
    ev = os.path.join(root, "events")
    for system in sorted(os.listdir(ev)):
        sd = os.path.join(ev, system)
        if not os.path.isdir(sd):
            continue
        for name in sorted(os.listdir(sd)):
            if os.path.isdir(os.path.join(sd, name)):
                out.append((system, name))
    return out


def resolve_tracepoints(root: str, system: str, name: str) -> list[tuple[str, str]]:
    """Expand globs; NotFound (with the nearest names) when nothing matches."""
    has_glob = any(c in system + name for c in "*?[")
    if not has_glob:
        if os.path.isdir(os.path.join(root, "events", system, name)):
            return [(system, name)]
        all_tp = [f"{s}:{n}" for s, n in list_tracepoints(root)]
        near = difflib.get_close_matches(f"{system}:{name}", all_tp, n=5, cutoff=0.6)
        hint = f" (did you mean: {', '.join(near)}?)" if near else ""
        raise NotFound(
            f"no tracepoint {system}:{name} in this kernel{hint}; "
            "list them with: probewatch list tracepoints"
        )
    out = [
        (s, n)
        for s, n in list_tracepoints(root)
        if fnmatch.fnmatchcase(s, system) and fnmatch.fnmatchcase(n, name)
    ]
    if not out:
        raise NotFound(f"no tracepoint matches {system}:{name}")
    if len(out) > MAX_GLOB:
        raise NotFound(f"{system}:{name} matches {len(out)} tracepoints (limit {MAX_GLOB})")
    return out
