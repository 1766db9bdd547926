"""probewatch: Linux tracing and security monitoring in Python.

Example::

    import probewatch
    with probewatch.Session() as s:
        s.add("tracepoint:sched:sched_process_exec")
        for ev in s.events(duration=2):
            print(ev.pid, ev.comm, ev.fields["filename"])
"""

from .errors import (
    DecodeError,
    FeatureUnavailable,
    KernelRejected,
    NotFound,
    ProbewatchError,
    SpecError,
    TracefsError,
)
from .event import Event

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Session",
    "Capture",
    "ProbewatchError",
    "SpecError",
    "FeatureUnavailable",
    "KernelRejected",
    "DecodeError",
    "TracefsError",
    "NotFound",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name == "Session":
        from .session import Session

        return Session
    if name == "Capture":
        from .capture import Capture

        return Capture
    raise AttributeError(name)
