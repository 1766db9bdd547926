"""``python -m probewatch``: ^C while the command line starts up ends it quietly (130)."""

import signal
import sys


def _startup_interrupt(signum: int, frame: object) -> None:
    raise SystemExit(130)  # nothing made yet: no traceback, the status of ^C


_startup_interrupt._probewatch_startup = True  # type: ignore[attr-defined]
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _startup_interrupt)  # main() puts Python's back

from .cli.main import main  # noqa: E402

sys.exit(main())
