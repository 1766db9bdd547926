"""probewatch trace: stream events of tracepoint specs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ..event import Event
from ..sinks.jsonl import JsonLinesSink
from ..sinks.text import TextSink, hex_fields
from ..sinks.writer import Deadline, Out, OutputCut
from .args import (
    buffer_kb_arg,
    comm_arg,
    count_arg,
    duration_arg,
    live_pid_arg,
    refuse,
    warn,
)

EXAMPLES = """examples:
  probewatch trace t:sched:sched_process_exec               exec events, system-wide
  probewatch trace 't:syscalls:sys_enter_open*' -c cat      open syscalls of commands named cat
  probewatch trace t:syscalls:sys_enter_getppid -- ./loop   only ./loop and its children
  probewatch trace t:sched:sched_switch --filter 'prev_pid == 1' -d 5
  probewatch trace t:syscalls:sys_enter_openat --json -- sh -c 'ls >/dev/null' | jq .fields.dfd
  probewatch trace --count t:syscalls:sys_enter_getppid -p 1234 -d 10

  probewatch trace 'u:libc:malloc size=arg0:u64' -- ls              malloc sizes
  probewatch trace 'ur:/bin/bash:readline line=+0(retval):string'   lines typed into bash
  probewatch trace 'U:/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0:function__entry'

specs: t:SYSTEM:NAME (tracepoint), u:/ur:TARGET:SYMBOL[+OFF] (uprobe/uretprobe),
U:TARGET:[PROVIDER:]NAME (USDT), k:/kr:FUNC (kprobe/kretprobe); globs (* ? [..]) expand.
Arguments: NAME=EXPR[:TYPE], EXPR = argN | retval | %REG | +OFF(EXPR), TYPE = u8..u64,
s8..s64, x8..x64, string, ustring, u8[16]. TARGET: a path, or libc/libssl/... by name.
--filter takes the tracefs filter syntax (e.g. 'dfd == -100 && flags & 1'); it runs in
the kernel. With --json, events go to stdout as JSON lines and the summary goes to
stderr as one JSON line {"summary": {...}}.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        usage="probewatch trace [options] SPEC... [-- COMMAND ARGS...]",
        help="stream events from probe specs (tracepoints, uprobes, USDT, kprobes)",
        description="Stream events from probe specs (ftrace in a private instance, or eBPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.set_defaults(func=run)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec, e.g. t:sched:sched_switch")
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[],
                   help="trace only this process (its threads and children); repeatable")
    p.add_argument("-c", "--comm", type=comm_arg,
                   help="trace only tasks with this comm (in-kernel filter; the kernel keeps"
                   " 15 bytes, a longer name is cut)")
    p.add_argument("--filter", dest="filter_expr", help="tracefs filter expression, in-kernel")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("-n", "--max-events", type=count_arg, metavar="MAX",
                   help="stop after MAX events")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument("--count", action="store_true", help="count events only; print the summary")
    p.add_argument("--buffer-kb", type=buffer_kb_arg(per_cpu=True),
                   help="per-CPU ring buffer size in KiB (at most a quarter of RAM in all)")
    p.add_argument("--spool-mb", type=int, metavar="MB",
                   help="ftrace: the most raw pages held for a consumer that falls behind "
                   "(default: 256 MiB or 1/16 of RAM, whichever is smaller; record: a "
                   "quarter of the free disk space, spooled next to the capture); when full, the "
                   "kernel drops events and counts them")
    p.add_argument("--backend", choices=["auto", "ftrace", "bpf"], default="auto",
                   help="ftrace (private tracefs instance), bpf (eBPF programs; --filter is"
                   " evaluated in user space) or auto (ftrace; bpf for --count without --filter)")
    p.set_defaults(accepts_command=True)


def join_spec_words(words: list[str]) -> list[str]:
    """Attach argument words (NAME=EXPR[:TYPE]) to the spec before them.

    ``u:libc:malloc size=arg0:u64`` may come as one word or as two.
    """
    out: list[str] = []
    for w in words:
        head = w.split("=", 1)[0]
        if out and "=" in w and head.isidentifier():
            out[-1] += " " + w
        else:
            out.append(w)
    return out


def split_command(args: argparse.Namespace) -> list[str]:
    """The COMMAND ARGS... given after '--' (split off in cli.main)."""
    return list(getattr(args, "command_argv", []) or [])


def run(args: argparse.Namespace) -> int:
    from ..backends import open_session

    refuse(args.count and args.max_events is not None,
           "-n limits the events printed and --count prints none: give one of them")
    cmd = split_command(args)
    out = Out(sys.stdout)
    specs = join_spec_words(args.specs)
    with open_session(args.backend, buffer_kb=args.buffer_kb, pids=args.pid,
                      comm=args.comm, counting=args.count, specs=specs,
                      user_filter=args.filter_expr, spool_mb=args.spool_mb) as s:
        for spec in specs:
            s.add(spec, filter=args.filter_expr)
        for w in s.warnings:
            print(f"probewatch: warning: {w}", file=sys.stderr)
        shown = len(s.warnings)
        if cmd:
            s.trace_command(cmd)
        hexf = hex_fields(s.formats)
        write = JsonLinesSink(out).write if args.json else TextSink(out, hex_fields=hexf).write
        try:
            if args.count:
                s.count(duration=args.duration)
            else:
                stream(s, args, out, write)
        except KeyboardInterrupt:
            # ^C ends the trace: deliver what was captured up to now, then the summary
            s.stop()
            try:
                if args.count:
                    s.count()
                else:
                    for ev in s.drain():
                        write(ev)
            except KeyboardInterrupt:
                pass
        out.flush()
        for w in s.warnings[shown:]:  # what came up while tracing
            print(f"probewatch: warning: {w}", file=sys.stderr)
        summ = s.summary()
        rc = 0
        if cmd:
            s.close()
            rc = s.wait_command() or 0
        print_summary(summ.to_dict(), args.json)
        return rc


def stream(s: Any, args: argparse.Namespace, out: Out, write: Callable[[Event], None]) -> None:
    """Events to the sink until -d, -n, the command's end or stop().

    With -d, nothing stamped after the deadline is printed (nor counted), and a reader
    of stdout that has not taken the output by shortly after it does not hold the run
    up: what it did not take is dropped with a warning.
    """
    s.start()
    dl = Deadline(args.duration, s.clock)
    dl.arm(out)
    write_many = JsonLinesSink(out).write_many if args.json else None
    left = args.max_events
    try:
        for batch in s.batches(duration=args.duration):
            k = dl.on_time(batch)
            if left is not None:
                k = min(k, left)
                left -= k
            if write_many is not None:
                write_many(batch if k == len(batch) else batch[:k])
            else:
                for ev in batch[:k]:
                    write(ev)
            if k < len(batch) or left == 0:  # past the deadline or -n: the rest is not shown
                for ev in batch[k:]:
                    s.counts[ev.probe] -= 1
                s.stop()
                break
        out.flush()
    except OutputCut as e:
        s.stop()
        warn(f"{e.lines} lines were not written: the reader of the output did not take "
             "them before the end of -d")
    finally:
        out.set_cutoff(None)


def print_summary(d: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": d}), file=sys.stderr)
        return
    per = ", ".join(f"{k}: {v}" for k, v in d["events"].items())
    lost = d["lost"]
    msg = f"{d['total']} events ({per}) in {d['duration']:.2f}s, lost {lost}"
    if lost:
        msg += " (per CPU: " + ", ".join(f"cpu{c}={n}" for c, n in d["lost_per_cpu"].items()
                                         if n) + ")"
    print(msg, file=sys.stderr)
