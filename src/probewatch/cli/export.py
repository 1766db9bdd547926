"""probewatch export: a capture as Perfetto / Chrome trace-event JSON, or JSON lines."""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import IO

from ..errors import OutputError, ProbewatchError
from ..sinks.jsonl import JsonLinesSink
from .report import add_filters, filters

EXAMPLES = """examples:
  probewatch export run.db --perfetto run.json      then open run.json in ui.perfetto.dev
  probewatch export run.db --jsonl run.jsonl        JSON lines, as trace --json
  probewatch export run.db --perfetto - -p 1234 | gzip > p1234.json.gz

Perfetto: one track per thread, grouped by process; each event is an instant, and
sys_enter_X/sys_exit_X (or raw_syscalls sys_enter/sys_exit with the same id), and a
uprobe/kprobe at a function's entry with the uretprobe/kretprobe of the same function,
on the same thread, become one slice with its duration. Timestamps are microseconds
since the first exported event. The filters are report's.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a capture for ui.perfetto.dev (trace-event JSON) or as JSON lines",
        description="Export a capture file as Chrome trace-event JSON (opens in "
        "ui.perfetto.dev) or as JSON lines.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="capture file written by probewatch record")
    p.add_argument("--perfetto", metavar="OUT.json", help="trace-event JSON ('-': stdout)")
    p.add_argument("--jsonl", metavar="OUT", help="JSON lines ('-': stdout)")
    add_filters(p)
    p.set_defaults(func=run)


def _open(path: str) -> AbstractContextManager[IO[str]]:
    if path == "-":
        return nullcontext(sys.stdout)
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from ..capture import Capture
    from ..sinks.perfetto import PairRules, PerfettoWriter

    if not args.perfetto and not args.jsonl:
        raise ProbewatchError("nothing to export: give --perfetto OUT.json and/or --jsonl OUT")
    if args.perfetto == "-" and args.jsonl == "-":
        raise ProbewatchError("--perfetto and --jsonl cannot both go to stdout")
    with Capture(args.file) as cap:
        flt = filters(args)
        if args.perfetto:
            probes = cap.probes()
            rules = PairRules(
                {p["spec"]: (p["kind"], p["target"], p["symbol"],
                             -1 if p["address"] is not None else (p["offset"] or 0))
                 for p in probes},
                {r["event"]: (r.get("kind"), r.get("target"), r.get("symbol"),
                              0 if r.get("entry") else -1)
                 for p in probes for r in (p.get("resolved") or []) if r.get("event")},
                present=cap.event_types(),
            )
            names = {}
            for pr in cap.processes():
                if pr.get("exe"):
                    names[pr["pid"]] = pr["exe"].rsplit("/", 1)[-1]
            runs = cap.runs()
            meta = {
                "file": args.file,
                "clock": runs[0].clock if runs else None,
                "host": runs[0].host if runs else None,
                "kernel": runs[0].kernel if runs else None,
            }
            try:
                with _open(args.perfetto) as out:
                    w = PerfettoWriter(out, rules, process_names=names, metadata=meta)
                    for ev in cap.events(**flt):
                        w.write(ev)
                    st = w.close()
            except OSError as e:
                if args.perfetto == "-":
                    raise  # stdout: the one line and exit status 74 of cli.main
                raise OutputError(f"cannot write {args.perfetto}: {e.strerror}") from None
            print(f"{args.perfetto}: {st.events} events as {st.slices} slices and "
                  f"{st.instants} instants on {st.threads} threads of {st.processes} "
                  f"processes" + (f" ({st.unmatched} unpaired enter/exit events)"
                                  if st.unmatched else ""), file=sys.stderr)
        if args.jsonl:
            n = 0
            try:
                with _open(args.jsonl) as out:
                    sink = JsonLinesSink(out)
                    for ev in cap.events(**flt):
                        sink.write(ev)
                        n += 1
            except OSError as e:
                if args.jsonl == "-":
                    raise  # stdout: the one line and exit status 74 of cli.main
                raise OutputError(f"cannot write {args.jsonl}: {e.strerror}") from None
            print(f"{args.jsonl}: {n} events as JSON lines", file=sys.stderr)
    return 0
