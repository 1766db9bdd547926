"""probewatch: Linux tracing and security monitoring in Python.

Example::

    import probewatch
    with probewatch.Session() as s:
        s.add("tracepoint:sched:sched_process_exec")
        for ev in s.events(duration=2):
            print(ev.pid, ev.comm, ev.fields["filename"])

``Session(backend="ftrace" | "perf" | "bpf")`` picks the collection mechanism and
``Session(tool="syscalls", syscalls=["openat"])`` the engine of the BPF tools: the
same methods and Events either way (see :class:`probewatch.session.Session`).
"""

import _signal  # type: ignore[import-not-found]  # C module: `signal` imports enum first
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

# Run as the program (``python -m probewatch``: runpy sets argv[0] to "-m" while it
# imports the package; the console script: argv[0] is .../probewatch), a ^C before
# main() has its own handling ends it quietly with 130 rather than a traceback from
# whatever import was running. Imported as a library, nothing changes.
if (_sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] if _sys.argv else "")
        == "probewatch") and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:

    def _startup_interrupt(signum: int, frame: object) -> None:
        raise SystemExit(130)

    _startup_interrupt._probewatch_startup = True  # type: ignore[attr-defined]
    _signal.signal(_signal.SIGINT, _startup_interrupt)  # main() puts Python's back

from .errors import (  # noqa: E402
    DecodeError,
    FeatureUnavailable,
    KernelRejected,
    NotFound,
    ProbewatchError,
    SpecError,
    TracefsError,
)
from .event import Event

if TYPE_CHECKING:  # imported when first used (see __getattr__): `import probewatch` stays light
    from .capture import Capture
    from .session import Session, Summary

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Session",
    "Summary",
    "Capture",
    "ProbewatchError",
    "SpecError",
    "FeatureUnavailable",
    "KernelRejected",
    "DecodeError",
    "TracefsError",
    "NotFound",
    "mark",
    "begin",
    "end",
    "span",
    "mark_raw",
    "__version__",
]

_MARK_API = ("mark", "begin", "end", "span", "mark_raw")


def __getattr__(name: str) -> object:
    if name in ("Session", "Summary"):  # Session(backend=...) / Session(tool=...)
        from . import session

        return getattr(session, name)
    if name == "Capture":
        from .capture import Capture

        return Capture
    if name in _MARK_API:  # probewatch.mark(name, **fields): custom events (marks.py)
        from . import marks

        return getattr(marks, name)
    raise AttributeError(name)
