"""probewatch command line: one module per subcommand, each exposing ``register(sub)``.

A subcommand module defines ``register(subparsers) -> None`` that adds its parser and
sets ``func=run`` where ``run(args) -> int`` returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ProbewatchError

# the order of `probewatch -h`; any other module in this package that defines
# register() is picked up after these (so a new subcommand is one new module)
FIRST = [
    "doctor", "trace", "record", "report", "stats", "query", "export", "list",
    "syscalls", "execsnoop", "opensnoop", "syscount", "tcpconnect", "bashreadline", "cleanup",
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


def main(argv: list[str] | None = None) -> int:
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
    except ProbewatchError as e:
        print(f"probewatch: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed (e.g. piped into head): not an error worth a traceback
        try:
            sys.stdout = None
        except Exception:
            pass
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
