"""Typed exceptions: every error probewatch raises on purpose derives from ProbewatchError.

The CLI turns these into one clear line on stderr (never a traceback).

Example::

    try:
        s.add("t:nosuch:event")
    except probewatch.ProbewatchError as e:
        print(e)
"""

from __future__ import annotations


class ProbewatchError(Exception):
    """Base class of every error probewatch raises deliberately."""


class SpecError(ProbewatchError, ValueError):
    """A probe spec or filter is malformed. ``pos`` points at the offending character."""

    def __init__(self, message: str, spec: str = "", pos: int | None = None) -> None:
        self.spec = spec
        self.pos = pos
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        if self.spec and self.pos is not None:
            caret = " " * (self.pos + 2) + "^"
            return f"{self.message}\n  {self.spec}\n{caret}"
        if self.spec:
            return f"{self.message}: {self.spec!r}"
        return self.message


class FeatureUnavailable(ProbewatchError):
    """The running kernel lacks a feature (kprobes, function tracer, BPF, ...)."""


class KernelRejected(ProbewatchError):
    """The kernel refused a write (bad filter, bad probe definition); carries error_log text."""


class DecodeError(ProbewatchError):
    """Raw data (ring-buffer page, format file, capture) could not be decoded."""


class TracefsError(ProbewatchError):
    """tracefs is missing, cannot be mounted, or a file there cannot be used."""


class NotFound(ProbewatchError, LookupError):
    """A named thing (event, binary, symbol, file) does not exist."""


class OutputError(ProbewatchError):
    """An output (stdout, or a file named with an option) cannot be written: full disk,
    /dev/full, I/O error. The CLI exits with :attr:`exit_status` 74 (EX_IOERR)."""

    exit_status = 74
