"""probewatch command line: one module per subcommand, each exposing ``register(sub)``.

A subcommand module defines ``register(subparsers) -> None`` that adds its parser and
sets ``func=run`` where ``run(args) -> int`` returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ProbewatchError

SUBCOMMANDS = ["doctor", "trace", "cleanup", "list"]

EPILOG = """examples:
  probewatch doctor                          what this kernel offers
  probewatch trace t:sched:sched_process_exec -d 5
  probewatch trace t:syscalls:sys_enter_openat --json -- ls /   | jq .fields
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
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"{__package__}.{name.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(name.replace("-", "_")):
                continue  # subcommand not built yet
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
            sys.stdout = None  # type: ignore[assignment]
        except Exception:
            pass
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
