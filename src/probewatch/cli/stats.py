"""probewatch stats: what a capture holds: events per probe and process, duration, losses."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..decode.escape import escape_text
from .args import top_arg

EXAMPLES = """examples:
  probewatch stats run.db                 the summary, top 20 processes
  probewatch stats run.db --top 0         every process
  probewatch stats run.db --json | jq .per_probe

Works on unfinished captures too (a recorder that was killed or ran out of disk):
their status says so, and the duration runs to the last commit.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="events per probe and per process, duration and losses of a capture",
        description="Summarise a capture file: events per probe, per event and per "
        "process, duration, and what the kernel dropped.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="capture file written by probewatch record")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--top", type=top_arg, default=20, metavar="N",
                   help="processes to list (0: all; default 20)")
    p.set_defaults(func=run)


def _when(t: float | None) -> str:
    if t is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _size(n: int) -> str:
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    from ..capture import Capture

    with Capture(args.file) as cap:
        st = cap.stats()
    if args.json:
        print(json.dumps(st.to_dict()))
        return 0
    w = sys.stdout.write
    w(f"file       {st.path} ({_size(st.bytes)}, capture schema {st.schema})\n")
    w(f"status     {st.status}\n")
    for r in st.runs:
        end = _when(r.end_time if r.end_time is not None else r.updated_time)
        w(f"run {r.id:<6} {_when(r.start_time)} .. {end} ({r.duration:.2f} s), "
          f"{r.backend or '?'} backend on {r.host or '?'} (kernel {r.kernel or '?'}, "
          f"{r.machine or '?'}), probewatch {r.version or '?'}\n")
        if r.command:
            ex = "" if r.exit_status is None else f" (exit {r.exit_status})"
            w(f"  command  {' '.join(map(escape_text, r.command))}{ex}\n")
        if r.argv:
            w(f"  recorded {' '.join(map(escape_text, r.argv))}\n")
        if r.message:
            w(f"  note     {r.message}\n")
    w(f"events     {st.events} in {st.duration:.2f} s (first to last event: {st.span:.6f} s)\n")
    if st.lost is None:
        why = ("still recording" if any(r.status == "recording" for r in st.runs)
               else "the run did not finish" if any(not r.complete for r in st.runs)
               else "not recorded")
        w(f"lost       unknown ({why})\n")
    else:
        per = ", ".join(f"cpu{c}={n}" for c, n in st.lost_per_cpu.items() if n)
        w(f"lost       {st.lost}" + (f" ({per})" if per else "") + "\n")
        if st.lost and st.lost_per_probe is not None:  # per probe, where it is known
            for spec, n in st.lost_per_probe.items():
                if n:
                    w(f"  {n:>10}  {spec}\n")
            rest = st.lost - sum(st.lost_per_probe.values())
            if rest > 0:
                w(f"  {rest:>10}  (per CPU only: not attributable to a probe)\n")
    w("per probe:\n")
    for spec, n in st.per_probe.items():
        w(f"  {n:>10}  {spec}\n")
    w("per event:\n")
    for name, n in st.per_event.items():
        w(f"  {n:>10}  {name}\n")
    procs = st.per_process if args.top <= 0 else st.per_process[: args.top]
    w(f"per process ({len(st.per_process)}):\n")
    w(f"  {'EVENTS':>10}  {'PID':>7}  {'COMM':16} EXE\n")
    for p in procs:
        w(f"  {p.events:>10}  {p.pid:>7}  {escape_text(p.comm):16} "
          f"{escape_text(p.exe or '')}\n")
    if len(procs) < len(st.per_process):
        w(f"  ... {len(st.per_process) - len(procs)} more (--top 0 lists all)\n")
    return 0
