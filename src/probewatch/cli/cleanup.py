"""probewatch cleanup: remove leftovers of probewatch runs that died (e.g. SIGKILL)."""

from __future__ import annotations

import argparse

from ..kernel.tracefs import sweep_stale

EXAMPLES = """examples:
  probewatch cleanup        remove instances/probes of dead probewatch processes
Objects of live probewatch runs and of other tools are never touched.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cleanup", help="remove leftovers of killed probewatch runs",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    removed = sweep_stale()
    for r in removed:
        print(f"removed {r}")
    if not removed:
        print("nothing to clean up")
    return 0
