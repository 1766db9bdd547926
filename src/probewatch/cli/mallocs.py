"""probewatch mallocs: allocation sizes and outstanding allocations by call site.

Like bcc's memleak, on the BPF backend: uprobes on malloc, calloc, realloc, free,
posix_memalign, aligned_alloc, memalign, valloc and pvalloc of the program's C library
keep a log2 histogram of the sizes asked for and, per call stack, the bytes not freed
yet, all in kernel maps; every interval (and at the end) the histogram and the top
call sites are printed, stacks named through the ELF files by build-id.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from ..analyze.allocs import MallocSession, Snapshot, log2_rows
from ..analyze.stacks import frame_text
from ..collect.command import GatedCommand, program_file
from ..sinks.writer import Out
from .args import duration_arg, live_pid_arg
from .runctl import TERM_GRACE, RunControl, finish_command, output_end
from .syscalls import controlled, require_bpf

EXAMPLES = """examples:
  probewatch mallocs -- ./prog              sizes and leaks of ./prog, reported when it exits
  probewatch mallocs -p 1234 -i 5 --top 5   a running process, every 5 s
  probewatch mallocs --min-size 4096 -- make   track only allocations of 4 KiB and more
  probewatch mallocs --mmap 1048576 -- ./prog  and the program's own anonymous mmaps >= 1 MiB
  probewatch mallocs --json -- ./prog | jq '.top[0]'

Outstanding = allocated and not freed yet (at the end of a command: not freed before
it exited). Stacks come from frame pointers: code built without them (most distro
libraries) shows the call site and may lose the frames above it.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mallocs",
        help="allocation sizes and outstanding allocations by call site (BPF)",
        description="Trace the C library's allocator in the kernel: a log2 histogram of "
                    "the sizes asked for and the call sites holding the most memory.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-p", "--pid", type=live_pid_arg, help="trace this running process")
    p.add_argument("-i", "--interval", type=duration_arg, metavar="SECS",
                   help="report every SECS seconds (default: only at the end)")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="call sites to show, by outstanding bytes (default 10)")
    p.add_argument("--min-size", type=int, default=0, metavar="BYTES",
                   help="track (for call sites) only allocations of at least BYTES")
    p.add_argument("--mmap", type=int, default=0, metavar="BYTES",
                   help="also count anonymous mmaps of at least BYTES the program makes "
                        "itself (not the allocator's), freed by munmap")
    p.add_argument("--max-allocs", type=int, default=1 << 18, metavar="N",
                   help="allocations tracked at once (default 262144; more are counted)")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per report")
    p.add_argument("--backend", choices=["auto", "bpf"], default="auto",
                   help="collection backend (the aggregation needs BPF)")
    p.set_defaults(func=run, accepts_command=True)


def report(snap: Snapshot, out: Out, as_json: bool, final: bool) -> None:
    if as_json:
        d = snap.to_dict()
        d["final"] = final
        out.write(json.dumps(d) + "\n")
        out.flush()
        return
    stamp = time.strftime("%H:%M:%S")
    st = snap.stats
    out.write(f"[{stamp}] {st['calls']} allocation calls ({st['failed']} failed), "
              f"{st['frees']} frees of tracked blocks\n")
    rows = log2_rows(snap.hist)
    if rows:
        peak = max(n for _, _, n in rows)
        out.write(f"{'bytes':>24} : {'count':<9} distribution\n")
        for lo, hi, n in rows:
            bar = "*" * (round(40 * n / peak) if peak else 0)
            out.write(f"{lo:>10} -> {hi:<10} : {n:<9} |{bar:<40}|\n")
    what = "not freed before the end" if final else "outstanding"
    out.write(f"[{stamp}] {snap.outstanding_bytes} bytes in {snap.outstanding_count} "
              f"allocations {what}; top {len(snap.sites)} call sites:\n")
    for site in snap.sites:
        out.write(f"\t{site.bytes} bytes in {site.count} allocations from pid {site.pid}\n")
        for f in site.frames or []:
            out.write(f"\t\t{frame_text(f)}\n")
        if not site.frames:
            out.write("\t\t[stack unavailable]\n")
    lost = st.get("full", 0)
    if lost:
        out.write(f"\t{lost} allocations were not tracked: more than --max-allocs at once\n")
    out.flush()


@controlled
def run(args: argparse.Namespace) -> int:
    from ..elf.plt import linked_objects
    from ..errors import ProbewatchError

    require_bpf(args, "mallocs")
    cmd = list(getattr(args, "command_argv", None) or [])
    if bool(cmd) == (args.pid is not None):
        raise ProbewatchError("give either -p PID or -- COMMAND ARGS...")
    if args.top < 0 or args.min_size < 0 or args.max_allocs < 1 or args.mmap < 0:
        raise ProbewatchError("--top, --min-size and --mmap must be >= 0, --max-allocs >= 1")
    objects = linked_objects(program_file(cmd, args.pid), args.pid)
    ctl: RunControl = args.runctl
    out = Out(sys.stdout)
    command: GatedCommand | None = None
    ended_by = 0
    try:
        s = MallocSession(objects=objects, min_size=args.min_size, mmap_min=args.mmap,
                          max_allocs=args.max_allocs, pids=[args.pid] if args.pid else [])
        with s:
            if cmd:
                s.trace_command(cmd)
                command = s.command
            try:
                s.start()
                ctl.session = s
                ctl.phase = "running"
                ctl.take_sigint()
                for final in s.ticks(args.interval, args.duration):
                    if final or ctl.abort:
                        break
                    report(s.snapshot(args.top), out, args.json, False)
            except KeyboardInterrupt:
                ctl.interrupts += 1
            except (BrokenPipeError, SystemExit) as e:
                ended_by = output_end(e)
            if ended_by != signal.SIGPIPE:
                try:
                    report(s.snapshot(args.top), out, args.json, True)
                except BrokenPipeError as e:
                    ended_by = output_end(e)
            s.close()
            ctl.phase = "waiting"
        if command is None:
            return 128 + ended_by if ended_by else 0
        return finish_command(command, cmd[0], ctl, ended_by)
    finally:
        if command is not None and command.pid:
            command.terminate(signal.SIGTERM, TERM_GRACE)
