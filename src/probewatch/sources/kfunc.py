"""Kernel function tracing: can this kernel do it, and what can answer instead.

``funccount`` and ``functrace`` run on the function tracer of a private instance
(``set_ftrace_filter``; function_graph for durations) where the kernel allows it, else
on kprobes (tracefs ``kprobe_events``; globs expand against
``available_filter_functions``). Where neither works (as on a kernel built without
CONFIG_KPROBES whose function tracer is refused), :func:`require_kernel_functions` raises one
:class:`~probewatch.errors.FeatureUnavailable` line that says so and names the
tracepoints (from this kernel's ``events/``) that can answer instead, and uprobes for
user-space functions.

Example::

    require_kernel_functions(root, "tcp_*")      # returns, or raises naming t:tcp:*
    alternatives(root, "do_sys_openat2")          # ['t:syscalls:sys_enter_openat2', ...]
"""

from __future__ import annotations

import os
import re

from ..errors import FeatureUnavailable

#: pattern words too common to point at a subsystem
_GENERIC = frozenset({"do", "sys", "x64", "ia32", "compat", "se", "the", "get", "set",
                      "put", "new", "old", "int", "ret"})


#: systems offered first (the syscalls answer most "what does the kernel do" questions)
_FIRST = ("syscalls", "sched")


def alternatives(root: str, pattern: str, limit: int = 6) -> list[str]:
    """Tracepoint specs whose system or name shares a word with ``pattern``:
    ``t:SYSTEM:*`` when a whole system is named after it, else single tracepoints."""
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", pattern)
             if len(w) >= 3 and w.lower() not in _GENERIC]
    ev = os.path.join(root, "events")
    try:
        systems = sorted((s for s in os.listdir(ev) if os.path.isdir(os.path.join(ev, s))),
                         key=lambda s: (s not in _FIRST, s))
    except OSError:
        return []
    out: list[str] = []
    for w in words:
        if w in systems:
            out.append(f"t:{w}:*")
    for w in words:
        for s in systems:
            if len(out) >= limit:
                return out
            if s == w:
                continue
            try:
                names = sorted(os.listdir(os.path.join(ev, s)))
            except OSError:
                continue
            for n in names:
                if w in n.lower().split("_") and os.path.isdir(os.path.join(ev, s, n)):
                    out.append(f"t:{s}:{n}")
                    if len(out) >= limit:
                        return out
    return out


def require_kernel_functions(root: str, pattern: str, what: str = "trace",
                             prefer: str = "auto") -> str:
    """How kernel functions can be traced here: ``"function"`` (the function tracer in
    a private instance, preferred) or ``"kprobe"``; ``prefer`` forces one. Else raise
    FeatureUnavailable with one line: why, and the tracepoints / uprobes that can
    answer instead."""
    from ..kernel.features import check

    ft = check("function tracer", root)
    kp = check("kprobe_events", root)
    if ft.available and prefer in ("auto", "function"):
        return "function"
    if kp.available and prefer in ("auto", "kprobe"):
        return "kprobe"
    if prefer == "function" and not ft.available:
        raise FeatureUnavailable(f"cannot {what} kernel function {pattern!r} with the "
                                 f"function tracer: {ft.reason}")
    if prefer == "kprobe" and not kp.available:
        raise FeatureUnavailable(f"cannot {what} kernel function {pattern!r} with kprobes: "
                                 f"{kp.reason}")
    why = "this kernel has no kprobes (CONFIG_KPROBES off)"
    why += (", and its function tracer is not usable"
            if not ft.available else "")
    alt = alternatives(root, pattern)
    instead = (f"tracepoints that can answer instead: {', '.join(alt)} "
               "(probewatch list tracepoints)" if alt else
               "use tracepoints instead (probewatch list tracepoints)")
    raise FeatureUnavailable(
        f"cannot {what} kernel function {pattern!r}: {why}; {instead}; for user-space "
        "functions use uprobes (u:BINARY:FUNC)")


__all__ = ["alternatives", "require_kernel_functions"]
