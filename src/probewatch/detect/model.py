"""The event record the detection layer evaluates, and Sigma level ordering.

A :class:`SigmaEvent` is one observation in Sigma's terms: a logsource ``kind``
(``process_creation``, ``file_event``, ``network_connection``, ``auditd``,
``syscall``, the user-space layer's ``shell_command`` and ``tls``, and ``audit``) and
a flat mapping of Sigma field names to values (see docs/detection.md for every field).

Example::

    >>> ev = SigmaEvent("process_creation", ts=1, pid=42,
    ...                 fields={"Image": "/usr/bin/id", "CommandLine": "id -u"})
    >>> ev.fields["Image"]
    '/usr/bin/id'
    >>> level_rank("high") > level_rank("medium")
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the logsource kinds the engine knows (docs/detection.md, "Logsources -> kind")
KINDS = ("process_creation", "file_event", "network_connection", "auditd", "syscall",
         "shell_command", "tls", "audit")

#: Sigma's levels, lowest first
LEVELS = ("informational", "low", "medium", "high", "critical")
_RANK = {name: i for i, name in enumerate(LEVELS)}


@dataclass(slots=True)
class SigmaEvent:
    """One event as Sigma rules see it.

    ``fields`` maps Sigma field names to ``str | int | bool | list[str] | None``;
    ``source`` carries the probewatch Event(s) behind it (for alerts and captures).
    """

    kind: str
    ts: int
    pid: int
    fields: dict[str, Any] = field(default_factory=dict)
    source: Any = None


def level_rank(level: str | None) -> int:
    """The rank of a Sigma level (informational=0 .. critical=4); unknown or None is 0.

    >>> level_rank("critical")
    4
    """
    if level is None:
        return 0
    return _RANK.get(str(level).lower(), 0)


def parse_level(level: str) -> str:
    """Validate a level name given by a person (case-insensitive); ValueError names the choices.

    >>> parse_level("HIGH")
    'high'
    """
    name = str(level).strip().lower()
    if name not in _RANK:
        raise ValueError(f"unknown level {level!r} (choose from {', '.join(LEVELS)})")
    return name


def at_least(level: str | None, minimum: str) -> bool:
    """True when ``level`` is ``minimum`` or above.

    >>> at_least("medium", "low"), at_least("low", "high")
    (True, False)
    """
    return level_rank(level) >= level_rank(minimum)
