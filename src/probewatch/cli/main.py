"""probewatch command line: one module per subcommand, each exposing ``register(sub)``.

A subcommand module defines ``register(subparsers) -> None`` that adds its parser and
sets ``func=run`` where ``run(args) -> int`` returns the exit status.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _startup_interrupt(signum: int, frame: FrameType | None) -> None:
    """^C before main() has its error handling in place: exit 130, no traceback."""
    raise SystemExit(130)


_startup_interrupt._probewatch_startup = True  # type: ignore[attr-defined]
# the console script imports this module first: from here on a ^C while the modules
# load ends the start-up quietly (python -m probewatch does the same in __main__)
if (os.path.basename(sys.argv[0] if sys.argv else "") == "probewatch"
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, _startup_interrupt)

import argparse  # noqa: E402
import importlib  # noqa: E402

from ..errors import OutputError, ProbewatchError  # noqa: E402
from .output import output_failed, say, silence_stdout, stop_children  # noqa: E402

# the order of `probewatch -h`; any other module in this package that defines
# register() is picked up after these (so a new subcommand is one new module)
FIRST = [
    "doctor", "trace", "record", "report", "stats", "query", "export", "list",
    "syscalls", "execsnoop", "opensnoop", "syscount", "tcpconnect", "bashreadline", "sslsniff",
    "cleanup",
]


def subcommand_modules() -> list[str]:
    import pkgutil

    from . import __path__ as pkg_path

    found = sorted(m.name for m in pkgutil.iter_modules(pkg_path) if m.name != "main")
    return [n for n in FIRST if n in found] + [n for n in found if n not in FIRST]

EPILOG = """examples:
  probewatch doctor                          what this kernel offers
  probewatch trace t:sched:sched_process_exec -d 5
  probewatch trace t:syscalls:sys_enter_openat --json -- sh -c 'ls >/dev/null' | jq .fields
  probewatch opensnoop -- cat /etc/hostname   paths opened, with fd or errno (eBPF)
  probewatch record t:sched:sched_process_exec -o cap.db -d 10; probewatch report cap.db
  probewatch cleanup                         remove leftovers of killed runs

exit status: 0 done; 1 error (one line "probewatch: error: ..." on stderr); 2 usage;
74 the output cannot be written (full disk, /dev/full, I/O error: a traced command is
stopped, what was armed in the kernel removed); 130 interrupted; with -- COMMAND, the
command's own status.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probewatch",
        description="Linux tracing and security monitoring: one probe spec, several backends.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"probewatch {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in subcommand_modules():
        mod = importlib.import_module(f"{__package__}.{name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return p


def _end_startup() -> None:
    """Python's ^C (KeyboardInterrupt) again, in place of the start-up handler."""
    if getattr(signal.getsignal(signal.SIGINT), "_probewatch_startup", False):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    try:
        _end_startup()
        return _main(argv)
    except KeyboardInterrupt:  # ^C while the parser is built or the arguments parsed
        _flush_quietly()
        return 130


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # "-- COMMAND ARGS..." is split off before argparse sees it, so that options
    # may come before or after the specs and the command keeps its own options
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    args = parser.parse_args(argv)
    args.command_argv = command
    if command and not getattr(args, "accepts_command", False):
        parser.error(f"'{args.command}' does not run a command (unexpected '-- {command[0]}')")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = int(args.func(args) or 0)
        if sys.stdout is not None:
            sys.stdout.flush()  # an output that cannot take the rest fails here, not at exit
    except ProbewatchError as e:
        if isinstance(e, OutputError):
            stop_children()
        say(f"probewatch: error: {e}")
        _flush_quietly()
        return int(getattr(e, "exit_status", 1))
    except KeyboardInterrupt:
        _flush_quietly()
        return 130
    except BrokenPipeError:
        # stdout closed (e.g. piped into head): not an error worth a traceback
        silence_stdout()
        return 0
    except OSError as e:
        # /dev/full, a full disk, an I/O error: one line, the traced command stopped
        # (the session's with-exit already removed what it made in the kernel)
        return output_failed(e)
    except UnicodeError as e:
        # an argument or file name that is not valid UTF-8 where text was needed
        stop_children()  # a traced command must not go on untraced
        say(f"probewatch: error: {_unicode_message(e)}")
        _flush_quietly()
        return 1
    return rc


def _flush_quietly() -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        silence_stdout()


def _unicode_message(e: UnicodeError) -> str:
    obj = getattr(e, "object", None)
    if isinstance(obj, str):
        shown = obj.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"'{shown}' is not valid UTF-8 text ({getattr(e, 'reason', e)})"
    if isinstance(obj, bytes | bytearray):
        return f"{bytes(obj)[:60]!r}: not valid UTF-8 text ({getattr(e, 'reason', e)})"
    return f"not valid UTF-8 text ({e})"


if __name__ == "__main__":
    sys.exit(main())
