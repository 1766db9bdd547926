"""probewatch record: store the events of probe specs in a capture file (SQLite)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..collect.command import GatedCommand
from ..errors import ProbewatchError, SpecError
from ..event import Event
from ..sinks.jsonl import JsonLinesSink
from ..sinks.text import TextSink, hex_fields
from ..sinks.writer import Out, OutputCut
from .runctl import TERM_GRACE, RunControl, finish_command, output_end
from .trace import add_common, join_spec_words, lost_text, split_command

if TYPE_CHECKING:
    from ..session import Session, Summary
    from ..sinks.capture import CaptureWriter, ProbeInfo, RunInfo, WriteResult

EXAMPLES = """examples:
  probewatch record t:syscalls:sys_enter_getppid -- ./loop     ./loop's getppid calls
  probewatch record 't:sched:sched_process_*' -d 60 -o procs.db  a minute of process life
  probewatch record t:syscalls:sys_enter_openat -c cat --echo   record, and print as trace
  probewatch record t:raw_syscalls:sys_enter t:raw_syscalls:sys_exit -p 1234 -d 10
  probewatch record u:libc:malloc ur:libc:malloc -o malloc.db -- ls    calls as slices
  probewatch record --watch -o box.db -d 300      what watch needs: replay it later with
                                                   probewatch watch --replay box.db
then look at it:
  probewatch report procs.db --event sched_process_exec
  probewatch stats procs.db
  probewatch query procs.db "SELECT comm, count(*) FROM events GROUP BY comm"
  probewatch export procs.db --perfetto procs.json        (open in ui.perfetto.dev)

Specs, -p, -c, --filter, -d and -- COMMAND work as in probewatch trace. The capture
(default probewatch-YYYYmmdd-HHMMSS.db in the current directory, mode 0600) must be a
new or a regular file: a device node, FIFO, directory or symbolic link is refused, even
with --force. A bad spec, filter or command leaves no file; a signal (^C, SIGTERM,
SIGHUP) at any moment leaves a valid capture, its run marked interrupted, holding what
was read from the kernel until then (no events when tracing had not started); a
capture replaced with --force stays as it was until the new one is complete (that is
written to a hidden temporary file beside it, then renamed over it). It is written
while recording, in a transaction about every 0.1-0.4 s: a killed recorder loses at
most its last uncommitted batch and the file still opens; a full disk stops the
recording (and a traced command) and keeps what was written (when replacing with
--force: keeps the old capture unchanged instead). On stderr: where it wrote and what
the kernel dropped (with --json as one line {"summary": {...}}). The exit status is the
traced command's, or 1 when writing the capture failed (74 when --echo cannot write
stdout). With -- COMMAND, signals work as in probewatch trace: ^C ends the recording
and the command gets 2 s to exit (a second ^C: none) before it is killed; SIGTERM,
SIGHUP or a closed --echo pipe stop it (exit 143, 129, 141).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        usage="probewatch record [options] (SPEC... | --watch) [-- COMMAND ARGS...]",
        help="record events of probe specs into a capture file",
        description="Record events of probe specs into a capture file (SQLite), for "
        "report, stats, query and export later.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    for a in p._actions:
        if a.dest == "count":
            a.help = argparse.SUPPRESS
        elif a.dest == "json":
            a.help = "summary on stderr as JSON (with --echo: events as JSON lines)"
    p.add_argument("-o", "--output", metavar="FILE",
                   help="capture file (default probewatch-YYYYmmdd-HHMMSS.db)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--echo", action="store_true",
                   help="also print the events on stdout, as probewatch trace does")
    p.add_argument("--watch", action="store_true",
                   help="record what probewatch watch needs (its events and the process "
                   "table it starts from), no SPEC; replay with probewatch watch --replay")
    for a in p._actions:
        if a.dest == "specs":
            a.nargs = "*"  # none with --watch; run() insists on one otherwise
    from .fleet import add_export_options

    add_export_options(p)
    p.set_defaults(func=run)


def run_watch(args: argparse.Namespace, cmd: list[str]) -> int:
    """record --watch: the watch pipeline's events and seed snapshot, no rules."""
    from .watch import run_live

    if args.specs:
        raise ProbewatchError("record --watch records the events watch needs: no SPEC "
                              f"(got {args.specs[0]!r})")
    for opt, val in (("--echo", args.echo), ("-c/--comm", args.comm),
                     ("--filter", args.filter_expr), ("-n", args.max_events)):
        if val:
            raise ProbewatchError(f"record --watch: {opt} does not apply")
    if not getattr(args, "export", None):  # --export alone: no capture file
        args.output = args.output or default_path()
    return run_live(args, None, None, cmd, capture_only=True)


def default_path(now: float | None = None) -> str:
    """probewatch-YYYYmmdd-HHMMSS.db, with -N added when that name is taken."""
    base = time.strftime("probewatch-%Y%m%d-%H%M%S", time.localtime(now))
    path = base + ".db"
    n = 1
    while os.path.lexists(path):
        path = f"{base}-{n}.db"
        n += 1
    return path


def _run_info(args: argparse.Namespace, s: Session, cmd: list[str]) -> RunInfo:
    from ..sinks.capture import RunInfo

    return RunInfo(
        backend=s.backend,
        clock=s.clock,
        argv=["probewatch", *sys.argv[1:]],
        command=cmd or None,
        buffer_kb=args.buffer_kb,
        filter=args.filter_expr,
        pids=list(args.pid) or None,
        comm=args.comm,
    )


def _probe_infos(args: argparse.Namespace, s: Session) -> list[ProbeInfo]:
    from ..sinks.capture import ProbeInfo
    from ..sources.spec import parse_spec

    # dynamic probes (uprobes, kprobes, USDT) as the backend resolved them
    dyn = {f"{dp.group}:{dp.name}": dp for dp in s.dynamic_probes}
    out = []
    for spec, events in s.probes.items():
        info = ProbeInfo(spec, backend=s.backend, filter=args.filter_expr, events=events)
        try:
            ps = parse_spec(spec)
        except SpecError:
            ps = None
        if ps is not None:
            info.kind = ps.kind
            if ps.kind == "tracepoint":
                info.target = f"{ps.system}:{ps.name}"
            else:
                info.target, info.symbol = ps.target, ps.symbol
                info.offset, info.address = ps.offset, ps.address
        entry = ps is not None and not ps.offset and ps.address is None
        resolved = []
        for ev in events:
            dp = dyn.get(ev)
            if dp is None:
                continue
            resolved.append({"event": ev, "kind": dp.kind, "target": dp.target_path or None,
                             "symbol": dp.symbol, "offset": dp.offset, "entry": entry})
        if resolved:
            info.resolved = resolved
            info.target = resolved[0]["target"] or info.target
        out.append(info)
    return out


def _pump(s: Session, writer: CaptureWriter, args: argparse.Namespace,
          echo: Callable[[list[Event]], None] | None, ctl: RunControl,
          exporter: Any = None) -> None:
    """The hot loop: hand every batch of events to the writer queue; never touch the
    disk. Waits only when the writer is far behind (then raw pages wait in the spool
    file next to the capture, and when that is full the kernel drops and counts)."""
    if args.max_events is None:
        batches: Iterable[list[Event]] = s.batches(duration=args.duration)
    else:
        batches = ([ev] for ev in s.events(duration=args.duration,
                                             max_events=args.max_events))
    for batch in batches:  # the first ^C stops the session: what is buffered still comes
        if ctl.abort:  # a second ^C: stop at once
            s.stop()
            return
        _store(writer, batch, echo, exporter)
        if writer.error is not None:
            return


def _drain(s: Session, writer: CaptureWriter, exporter: Any = None) -> None:
    """After the echo gave up: what is still buffered goes to the capture only."""
    for batch in s.batches():
        _store(writer, batch, None, exporter)
        if writer.error is not None:
            return


def _store(writer: CaptureWriter, batch: list[Event],
           echo: Callable[[list[Event]], None] | None, exporter: Any = None) -> None:
    """Queue a batch for the writer; wait while the queue is over its bound (the raw
    pages then wait in the spool file, and beyond that the kernel drops and counts).
    ``exporter`` (--export) gets the batch too; it never waits (it spills)."""
    writer.add_many(batch)
    if exporter is not None:
        exporter.add_many(batch)
        exporter.check()
    if echo is not None:
        echo(batch)
    if writer.backlog() > writer.max_backlog:
        writer.wait_backlog()


def _spool_dir(path: str) -> str:
    """Raw pages wait in an unnamed file next to the capture (the disk that holds the
    capture holds the backlog), not in memory."""
    return os.path.dirname(os.path.abspath(path))


def _echo(s: Session, as_json: bool, out: Out) -> Callable[[list[Event]], None]:
    if as_json:
        return JsonLinesSink(out).write_many
    write = TextSink(out, hex_fields=hex_fields(s.formats)).write

    def text(batch: list[Event]) -> None:
        for ev in batch:
            write(ev)

    return text


def _finish(
    writer: CaptureWriter, summ: Summary | None, status: str, message: str | None,
    exit_status: int | None,
) -> WriteResult:
    if summ is None:
        return writer.finish(status=status, message=message, exit_status=exit_status)
    return writer.finish(
        status=status,
        message=message,
        exit_status=exit_status,
        lost_per_cpu=summ.lost_per_cpu,
        lost_per_probe=_lost_per_probe(summ),
        counts=summ.events,
        page_missed=summ.page_missed,
        unknown=summ.unknown,
        lost=summ.lost,
    )


def _lost_per_probe(summ: Summary) -> dict[str, int] | None:
    """What the run lost, per probe, as far as the backend can say: ftrace puts a gap
    down to the probe whose events surround it (the rest stays per CPU: the run's
    ``lost`` minus these), perf counts exactly per probe; None where losses cannot be
    put down to probes (bpf's ring buffer counts per CPU only) and some were lost."""
    per = summ.to_dict().get("lost_per_probe")
    if per is None:
        return None if summ.lost else dict.fromkeys(summ.events, 0)
    out = dict.fromkeys(summ.events, 0)
    out.update(per)
    return out


def _signal_name(e: BaseException) -> str | None:
    """The signal an exception stands for: SIGINT for KeyboardInterrupt, SIGTERM/SIGHUP
    for the SystemExit(143/129) the signal handlers raise; None for anything else."""
    if isinstance(e, KeyboardInterrupt):
        return "SIGINT"
    if isinstance(e, SystemExit) and e.code in (128 + signal.SIGTERM, 128 + signal.SIGHUP):
        return signal.Signals(int(e.code) - 128).name
    return None


def _begin_late(args: argparse.Namespace, cmd: list[str], path: str,
                writer: CaptureWriter | None, s: Session | None, info: RunInfo | None,
                probes: list[ProbeInfo]) -> CaptureWriter | None:
    """A signal came before the run was written (while the specs were resolved and
    armed): write the run now, with what is known of it, so that the capture exists
    (its run is then closed as interrupted, with no events). None: that failed too (the
    file is gone; an old capture replaced with --force is kept)."""
    from ..sinks.capture import CaptureWriter, RunInfo

    try:
        if info is None:
            info = RunInfo(backend=getattr(s, "backend", None) or args.backend,
                           argv=["probewatch", *sys.argv[1:]], command=cmd or None,
                           buffer_kb=args.buffer_kb, filter=args.filter_expr,
                           pids=list(args.pid) or None, comm=args.comm)
            if s is not None:
                try:
                    probes = _probe_infos(args, s)  # the specs armed so far
                except Exception:
                    probes = []
        if writer is not None:  # cut short inside begin_run: start over
            writer.abandon()
        writer = CaptureWriter(path, force=args.force)
        writer.begin_run(info, probes)
        return writer
    except BaseException:  # a second signal, or the file cannot be made
        if writer is not None:
            writer.abandon()
        return None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _report(
    res: WriteResult, summ: Summary | None, as_json: bool, error_shown: bool = False
) -> None:
    d: dict[str, Any] = summ.to_dict() if summ is not None else {
        "events": {}, "total": 0, "lost": 0, "lost_per_cpu": {}, "duration": 0.0}
    d.update({"file": os.path.abspath(res.path), "bytes": res.bytes, "written": res.events,
              "status": res.status})
    if as_json:
        print(json.dumps({"summary": d}), file=sys.stderr)
        return
    if res.error is not None and not error_shown:
        print(f"probewatch: error: {res.error}", file=sys.stderr)
    per = ", ".join(f"{k}: {v}" for k, v in d["events"].items())
    n = f"{res.events}" if res.events == d["total"] else f"{res.events} of {d['total']}"
    msg = (f"recorded {n} events ({per}) in {d['duration']:.2f}s to {res.path} "
           f"({_size(res.bytes)}), lost {d['lost']}")
    if d["lost"]:
        msg += " (" + lost_text(d) + ")"
    if res.status != "complete":
        msg += f" [{res.status}]"
    print(msg, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..sinks.capture import check_output_path

    cmd = split_command(args)
    if getattr(args, "watch", False):
        return run_watch(args, cmd)
    if not args.specs:
        raise ProbewatchError("record needs at least one SPEC (or --watch)")
    if args.count:
        raise ProbewatchError("record stores every event: --count does not apply "
                              "(probewatch stats FILE counts a capture)")
    path = args.output or default_path()
    # validate the output before anything is armed or written; the file itself is made
    # only once every spec, filter and the command were accepted (a replaced capture
    # stays as it was until the new one is complete)
    check_output_path(path, args.force)
    # SIGTERM/SIGHUP from here on unwind (SystemExit), so nothing made is left behind;
    # ^C, SIGTERM, SIGHUP and a closed --echo pipe as in probewatch trace (runctl)
    from .fleet import open_exporter

    exporter = open_exporter(args)
    ctl = RunControl()
    ctl.install()
    try:
        return _record(args, cmd, path, ctl, exporter)
    finally:
        ctl.restore()
        if exporter is not None and not exporter.closed:
            exporter.close(min(args.export_timeout, 2.0))


def _record(args: argparse.Namespace, cmd: list[str], path: str, ctl: RunControl,
            exporter: Any = None) -> int:
    from ..session import Session
    from ..sinks.capture import CaptureWriter, read_proc

    writer: CaptureWriter | None = None
    sess: Session | None = None
    info: RunInfo | None = None
    probes: list[ProbeInfo] = []
    begun = started = False
    summ: Summary | None = None
    status, message = "complete", None
    rc = 0
    error_shown = False
    command: GatedCommand | None = None
    child = 0
    ended_by = 0  # SIGPIPE: --echo's output closed; SIGTERM/SIGHUP: told to stop
    try:
        with Session(backend=args.backend, buffer_kb=args.buffer_kb, pids=args.pid,
                     comm=args.comm, spool_mb=args.spool_mb,
                     spool_dir=_spool_dir(path)) as s:
            sess = s
            for spec in join_spec_words(args.specs):
                s.add(spec, filter=args.filter_expr)
            for w in s.warnings:
                print(f"probewatch: warning: {w}", file=sys.stderr)
            shown = len(s.warnings)
            child = s.trace_command(cmd) if cmd else 0
            if cmd:
                command = s.command
            info = _run_info(args, s, cmd)
            probes, hexf = _probe_infos(args, s), hex_fields(s.formats)
            # the run is written before tracing starts and the command is released (a
            # signal before that writes it then, with no events: see the except below)
            writer = CaptureWriter(path, force=args.force)
            t0 = time.monotonic_ns()
            writer.begin_run(info, probes, hex_fields=hexf,
                             start_ts=t0 if info.clock in (None, "mono") else None)
            begun = True
            for pid in args.pid:  # what /proc says about the processes asked for
                pinfo = read_proc(pid)
                if pinfo:
                    writer.note_process(pid, **pinfo, source="proc")
            if child:
                exe = shutil.which(cmd[0])
                writer.note_process(child, ppid=os.getpid(), argv=list(cmd),
                                    exe=os.path.realpath(exe) if exe else None,
                                    comm=os.path.basename(cmd[0])[:15], source="command")
            # a bad -p pid or command fails in start(): then no file is left. From then
            # on ^C, SIGTERM and SIGHUP stop the session (what is buffered is recorded)
            ctl.begin(s, s.start, command)
            started = True
            if exporter is not None:
                exporter.backend = s.backend if isinstance(s.backend, str) else ""
                exporter.start()
            writer.on_error = lambda e: s.stop()
            # Out: whole writes a returning ^C handler cannot cut short, O_NONBLOCK too
            out = Out(sys.stdout) if args.echo else None
            ctl.out = out  # after SIGTERM/SIGHUP its writes give up after a grace period
            echo = _echo(s, args.json, out) if out is not None else None
            try:
                _pump(s, writer, args, echo, ctl, exporter)
                if out is not None:
                    out.flush()
            except (BrokenPipeError, SystemExit) as e:  # --echo's reader gone, SIGTERM
                ended_by = output_end(e)
            except OutputCut as e:  # after SIGTERM/SIGHUP: --echo's reader took nothing
                print(f"probewatch: warning: {e.lines} lines were not echoed: the reader "
                      "of the output did not take them in time (all are recorded)",
                      file=sys.stderr)
                _drain(s, writer, exporter)
            s.stop()
            ended_by = ended_by or ctl.signal  # SIGTERM/SIGHUP since take_term()
            if ended_by:
                status = "interrupted"
                message = ("interrupted (the output of --echo was closed)"
                           if ended_by == signal.SIGPIPE
                           else f"interrupted ({signal.Signals(ended_by).name})")
            elif ctl.interrupts:
                status, message = "interrupted", "interrupted (SIGINT)"
            for w in s.warnings[shown:]:  # what came up while recording
                print(f"probewatch: warning: {w}", file=sys.stderr)
            if writer.error is not None:
                error_shown = True
                s.stop()
                print(f"probewatch: error: {writer.error}", file=sys.stderr)
                if command is not None and command.pid:  # it must not run on untraced
                    print(f"probewatch: stopping {cmd[0]} (pid {child}): the capture "
                          "cannot be written", file=sys.stderr)
                    command.terminate(signal.SIGTERM, TERM_GRACE)
            summ = s.summary()
            s.close()  # probes gone before any wait for the command
            ctl.phase = "waiting"
        if command is not None:
            rc = finish_command(command, cmd[0], ctl, ended_by)
            writer.note_process(child, exit_code=command.returncode
                                if command.returncode is not None else rc)
        elif ended_by or ctl.signal:
            rc = 128 + (ended_by or ctl.signal)
    except BaseException as e:
        signalled = _signal_name(e) is not None
        if signalled and not started and (
                writer.replacing if writer is not None else os.path.lexists(path)):
            # nothing recorded: the capture --force was to replace stays as it was
            if writer is not None:
                writer.abandon()
            print(f"probewatch: interrupted before tracing started: {path} is left as "
                  "it was", file=sys.stderr)
            raise
        if signalled and not begun:  # still a capture: its run, interrupted, no events
            writer = _begin_late(args, cmd, path, writer, sess, info, probes)
            begun = writer is not None
        if not begun or writer is None or not (started or signalled):
            if writer is not None:
                writer.abandon()  # nothing recorded: no file is left (an old one is kept)
            raise
        if command is not None and command.pid:  # stopped with the recorder, and noted
            command.terminate(signal.SIGTERM, TERM_GRACE)
        if command is not None and command.returncode is not None:
            writer.note_process(child, exit_code=command.returncode)
        if signalled:
            st, msg = "interrupted", f"interrupted ({_signal_name(e)})"
            if not started:
                msg += " before tracing started"
        else:
            st, msg = "error", f"{type(e).__name__}: {e}"
        res = _finish(writer, summ, st, msg, None)
        print(f"probewatch: {res.events} events kept in {res.path} [{res.status}]",
              file=sys.stderr)
        raise
    finally:
        if command is not None and command.pid:  # an error or a second signal: never
            command.terminate(signal.SIGTERM, TERM_GRACE)  # leave it running untraced
    assert writer is not None
    res = _finish(writer, summ, status, message,
                  command.returncode if command is not None else None)
    if exporter is not None:
        exporter.lost = getattr(summ, "lost", 0) or 0
        print(f"probewatch: {exporter.close(args.export_timeout).line()}", file=sys.stderr)
    _report(res, summ, args.json, error_shown)
    if res.error is not None:
        return 1
    return rc
