"""``probewatch doctor``: what this kernel offers for tracing, one row per feature."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import TracefsError
from ..kernel.features import Feature, lockdown_mode, probe_features

EXAMPLES = """examples:
  probewatch doctor                 table: feature, yes/no, why not and how to fix it
  probewatch doctor --json | jq -r '.[] | select(.available | not) | .name'
                                    names of the missing features

Every answer is checked on the running kernel (tracefs files, a trial write in a
private tracefs instance, bpf(2) loads, perf_event_open(2)); nothing is left behind.
The exit status is 0 even when features are missing.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check which tracing features this kernel offers",
        description="Check which tracing features the running kernel offers, and why not.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print a JSON array of features")
    p.set_defaults(func=run)


def _tracefs_header() -> tuple[str | None, str]:
    from ..kernel.tracefs import tracefs_root

    try:
        return tracefs_root(mount=False), ""
    except TracefsError:
        pass
    try:
        root = tracefs_root(mount=True)
        return root, " (mounted by probewatch)"
    except TracefsError as e:
        return None, str(e)


def format_table(features: list[Feature]) -> str:
    """Aligned plain-text rows: name, yes/no, reason (when no) or detail (when yes)."""
    w = max([len("FEATURE")] + [len(f.name) for f in features])
    lines = [f"{'FEATURE':<{w}}  OK   DETAILS"]
    for f in features:
        text = f.detail if f.available else f.reason
        lines.append(f"{f.name:<{w}}  {'yes' if f.available else 'no ':<3}  {text}".rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    root, note = _tracefs_header()
    features = probe_features(root)
    if args.json:
        json.dump([f.to_dict() for f in features], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    u = os.uname()
    where = f"tracefs at {root}{note}" if root else f"tracefs unavailable: {note}"
    print(f"probewatch doctor: kernel {u.release} ({u.machine}), {where}")
    mode = lockdown_mode()
    if mode:
        print(f"kernel lockdown: {mode}")
    print()
    print(format_table(features))
    n = sum(f.available for f in features)
    print(f"\n{n} of {len(features)} features available")
    return 0
