"""probewatch watch: watch this machine (or one command) with Sigma rules; alerts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from ..errors import ProbewatchError
from .args import buffer_kb_arg, duration_arg, live_pid_arg


def level_arg(text: str) -> str:
    """--level LEVEL: a Sigma level name (case-insensitive), checked like every option."""
    from ..detect.model import parse_level

    try:
        return parse_level(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def window_arg(text: str) -> float:
    """--window SECS: a finite number of seconds, 0 or more (0: never collapse)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds, 0 or more (got {text})")
    return v

def audit_interval_arg(text: str) -> float:
    """--audit SECS: a finite number of seconds, at least 0.5."""
    v = window_arg(text)
    if v < 0.5:
        raise argparse.ArgumentTypeError(f"must be at least 0.5 seconds (got {text})")
    return v


EXAMPLES = """examples:
  probewatch watch                              this machine, the shipped rules
  probewatch watch --level high                 only high and critical alerts
  probewatch watch --rules my-rules/ --rules site.yml
  probewatch watch --filters site-exceptions/   Sigma filters: our known-good admin jobs
  probewatch watch --no-default-rules --rules sigma/rules/linux/ -d 600
  probewatch watch --json | jq -c '{rule: .rule.title, lineage, matched}'
  probewatch watch --audit                      also who probes or hooks this kernel,
                                                at start and every 5 s (--audit 30: 30 s)
  probewatch watch -p 1234                      one process and its descendants
  probewatch watch -- ./install.sh              one command; exits with its status
  probewatch watch -o run.db -- make            also keep the events and alerts
  probewatch report run.db --alerts             the alerts of a capture
  probewatch watch --replay run.db              the same alerts again, offline
  probewatch record --watch -o run.db -d 60     record what watch needs, no rules

One line per alert: time, level, rule title, ATT&CK techniques, the process and its
ancestry (sshd(812) > bash(4410) > python3(4502)) and the matching value(s).
Attacker-controlled text is escaped (\\n, \\xNN, \\uNNNN; a backslash is doubled).
Repeats of a rule on the same process within --window seconds collapse: the first is
shown at once, "(repeated N times in S s)" when the window closes or at exit.
--json: one object per alert with the full process context, the ancestry and the
matched events; "type" is "alert", or "repeat" for a collapsed window's count. As
with every --json of probewatch, a string holding bytes that are not UTF-8 (a path,
an argv entry, ...) is the object {"b64": "<base64 of its raw bytes>"} instead
(jq: if type == "object" then .b64 | @base64d else . end). The summary (events,
alerts, lost, rule errors) goes to stderr; with --json as one line {"summary": {...}}.
While the kernel drops events (watch falls behind a storm, or stdout is not read) a
warning says so on stderr every 5 s ({"warning": {...}} with --json). A full disk under
-o stops the capture, not the rules (exit status 1 at the end).
A capture of watch -o holds the events of the syscalls its rules needed (and the
process table it started from); record --watch holds every syscall watch can use,
so that any rules can be replayed on it.
SIGINT and SIGTERM end watch with the summary; with -- COMMAND, SIGTERM is passed on
to the command and watch exits with its status.
exit status: 0 (also when ended by SIGINT or SIGTERM); with -- COMMAND, the command's;
1 on an error, or when the capture of -o could not be written; 2 on usage errors.
Where BPF is missing, watch runs on tracefs events and says once which fields and
rules are then unavailable (PROBEWATCH_WATCH_BACKEND=ftrace or --backend ftrace
forces it).
"""


def add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[],
                   help="watch only this process and its descendants; repeatable")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("--backend", choices=["auto", "bpf", "ftrace", "perf"], default="auto",
                   help="event source (auto: BPF, tracefs where BPF is missing)")
    p.add_argument("--ringbuf-kb", type=buffer_kb_arg(per_cpu=False, lo=4, pow2=True),
                   default=16384, metavar="KB",
                   help="BPF ring buffer size in KiB (default 16384)")
    p.add_argument("--no-shell", action="store_true",
                   help="do not capture lines typed into bash (readline uretprobe; on when "
                   "loaded rules use logsource category shell_command)")
    p.add_argument("--no-tls", action="store_true",
                   help="do not capture TLS plaintext (OpenSSL/GnuTLS/Go uprobes; on when "
                   "loaded rules use logsource category tls)")
    p.add_argument("--bash", default="/bin/bash", metavar="PATH",
                   help="the bash whose readline() is probed (default /bin/bash)")
    p.add_argument("--tls-bytes", type=int, default=4096, metavar="N",
                   help="TLS plaintext bytes kept per call for the rules (default 4096)")
    p.set_defaults(accepts_command=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        usage="probewatch watch [options] [-p PID | -- COMMAND ARGS...]",
        help="watch processes with Sigma rules: alerts with lineage and ATT&CK ids",
        description="Watch this machine, some processes or one command with Sigma rules "
        "(the shipped ones and yours) and report alerts with the process ancestry.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rules", metavar="PATH", action="append", default=[],
                   help="a Sigma rule file or directory; repeatable")
    p.add_argument("--no-default-rules", action="store_true",
                   help="do not load the shipped rules")
    p.add_argument("--filters", metavar="PATH", action="append", default=[],
                   help="Sigma filter rules (site exceptions, kept apart from the rules they "
                   "apply to): a file or directory; repeatable")
    p.add_argument("--level", type=level_arg, default="low", metavar="LEVEL",
                   help="lowest level reported: informational, low (default), medium, "
                   "high, critical")
    p.add_argument("--json", action="store_true", help="one JSON object per alert")
    p.add_argument("-o", "--output", metavar="CAPTURE",
                   help="also store the events and alerts in this capture file")
    p.add_argument("--force", action="store_true", help="overwrite CAPTURE if it exists")
    p.add_argument("--replay", metavar="CAPTURE",
                   help="run the rules over a capture made by watch -o / record --watch")
    p.add_argument("--audit", type=audit_interval_arg, nargs="?", const=5.0, default=None,
                   metavar="SECS",
                   help="also audit the tracing stack (probewatch audit) at start and "
                   "every SECS seconds (default 5): alerts for what is there and for "
                   "what appears (the audit rules, category audit)")
    p.add_argument("--window", type=window_arg, default=60.0, metavar="SECS",
                   help="collapse repeats of a rule on one process within SECS (default "
                   "60; 0: never)")
    add_source_options(p)
    from .fleet import add_export_options

    add_export_options(p)
    p.set_defaults(func=run)


def _load_engine(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..detect.engine import Engine, RuleSet
    from ..detect.model import parse_level

    try:
        level = parse_level(args.level)
    except ValueError as e:
        raise ProbewatchError(f"--level: {e}") from None
    for opt, paths in (("--rules", args.rules), ("--filters", getattr(args, "filters", []))):
        for r in paths:
            if not os.path.exists(r):
                raise ProbewatchError(f"{opt} {r}: no such file or directory")
    paths = [Path(r) for r in args.rules]
    if getattr(args, "audit", None) and not args.no_default_rules:
        from ..audit.events import AUDIT_RULES_DIR

        paths.append(AUDIT_RULES_DIR)
    rules = RuleSet.load(paths, default=not args.no_default_rules,
                         filters=[Path(f) for f in getattr(args, "filters", [])])
    for prob in getattr(rules, "report", None) or []:
        print(f"probewatch: warning: {_problem(prob)}", file=sys.stderr)
    n = _rule_count(rules)
    if n == 0:
        raise ProbewatchError("no rules to run (every rule failed to load, or none given "
                              "with --no-default-rules)")
    from ..detect.pipeline import CORRELATION_MAX_GROUPS

    return rules, Engine(rules, min_level=level, max_groups=CORRELATION_MAX_GROUPS)


def _problem(p: Any) -> str:
    """``FILE:LINE: RULE-ID not run: REASON`` (escaped: rule files come from anywhere)."""
    from ..detect.alerts import esc

    return esc(str(p))


def _rule_count(rules: Any) -> int:
    for attr in ("rules", "compiled"):
        v = getattr(rules, attr, None)
        if v is not None:
            return len(v)
    try:
        return len(rules)
    except TypeError:
        return 1


def _emitter(out: IO[str], as_json: bool) -> Any:
    from ..detect.alerts import alert_json, alert_line

    render = alert_json if as_json else alert_line

    def emit(a: Any) -> None:
        out.write(render(a) + "\n")
        out.flush()

    return emit


def _summary(st: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        print(json.dumps({"summary": {**st.to_dict(), **(extra or {})}}), file=sys.stderr)
    else:
        print(st.line(), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    cmd = list(getattr(args, "command_argv", None) or [])
    if args.replay:
        if (cmd or args.pid or args.output or getattr(args, "export", None)
                or getattr(args, "audit", None)):
            raise ProbewatchError("--replay reads a capture: -p, -o, --export, --audit and "
                                  "-- COMMAND do not apply")
        return run_replay(args)
    if cmd and args.pid:
        raise ProbewatchError("give either -p PID or -- COMMAND, not both")
    rules, engine = _load_engine(args)
    return run_live(args, engine, rules, cmd)


def run_replay(args: argparse.Namespace) -> int:
    from ..detect.pipeline import Detector, new_mapper, new_table, replay_events, restore_table

    rules, engine = _load_engine(args)
    with replay_events(args.replay) as rp:
        table = new_table(replay=True)
        restore_table(table, rp.snapshot)
        det = Detector(engine, table=table, mapper=new_mapper(table, rules),
                       emit=_emitter(sys.stdout, args.json), window_s=args.window,
                       wall_offset_ns=rp.wall_offset_ns)
        det.stats.backend = f"replay of {rp.backend}"
        det.stats.rules = _rule_count(rules)
        import time

        t0 = time.monotonic()
        try:
            for ev in rp.events:
                det.feed(ev)
        except KeyboardInterrupt:
            pass
        st = det.finish()
        st.lost = rp.lost
        st.duration = time.monotonic() - t0
    _summary(st, args.json)
    return 0


def run_live(args: argparse.Namespace, engine: Any, rules: Any, cmd: list[str],
             capture_only: bool = False) -> int:
    """The live loop (watch; record --watch with engine None)."""
    import time

    from ..detect.alerts import esc
    from ..detect.pipeline import (
        Detector,
        fallback_message,
        live_events,
        seed_table,
        table_snapshot,
    )
    from .fleet import open_exporter

    exporter = open_exporter(args)  # a bad URL, creds or a busy spill: before anything
    writer = None
    if args.output:
        from ..sinks.capture import CaptureWriter

        try:
            writer = CaptureWriter(args.output, force=getattr(args, "force", False))
        except BaseException:
            if exporter is not None:
                exporter.close(0)
            raise
    begun = False
    export_stats = None
    status, message = "complete", None
    rc = 0
    st = None
    stopped_by: str | None = None
    n_snap = 0
    lost_cpu: dict[int, int] = {}
    poller: Any = None
    loss: LossReporter | None = None
    try:
        with live_events(backend=args.backend, pids=args.pid, command=cmd or None,
                         ringbuf_kb=getattr(args, "ringbuf_kb", None) or 16384,
                         buffer_kb=getattr(args, "buffer_kb", None), rules=rules,
                         shell=False if getattr(args, "no_shell", False) else None,
                         tls=False if getattr(args, "no_tls", False) else None,
                         bash_path=getattr(args, "bash", "/bin/bash"),
                         tls_bytes=max(0, min(getattr(args, "tls_bytes", 4096), 1 << 20))
                         ) as src:
            if src.backend != "bpf":
                print(f"probewatch: warning: {fallback_message(src.reason, rules)}",
                      file=sys.stderr)
            from ..detect.pipeline import new_table

            lookups: list[dict[str, Any]] = []
            sinks = writer is not None or exporter is not None
            table = new_table(on_lookup=lookups.append if sinks else None)
            seed_table(table)
            det = Detector(engine, table=table,
                           emit=None if capture_only else _emitter(sys.stdout, args.json),
                           window_s=getattr(args, "window", 60.0), writer=writer,
                           exporter=exporter)
            src.start()  # a bad -p pid or a probe the kernel refuses fails here
            if exporter is not None:
                exporter.backend = src.backend
                exporter.wall_offset_ns = det.wall_offset_ns
                exporter.rules = _rule_count(rules) if rules is not None else 0
                exporter.note_processes(table_snapshot(table))
                exporter.start()
            det.stats.backend = src.backend
            det.stats.rules = _rule_count(rules) if rules is not None else 0
            if writer is not None:
                from ..sinks.capture import ProbeInfo, RunInfo

                writer.begin_run(
                    RunInfo(backend=src.backend, clock="mono",
                            argv=["probewatch", *sys.argv[1:]], command=cmd or None,
                            pids=list(args.pid) or None),
                    [ProbeInfo(p, kind="bpf" if src.backend == "bpf" else "tracepoint",
                               backend=src.backend) for p in src.probes],
                )
                begun = True
                snap = table_snapshot(table)
                n_snap = len(snap)
                writer.note_snapshot(snap)
            if not args.json and not capture_only:
                what = (f"{cmd[0]}" if cmd else
                        f"pid {', '.join(map(str, args.pid))} and descendants" if args.pid
                        else "every process")
                layer = ""
                if src.user is not None:
                    layer = ", " + " and ".join(
                        x for x, on in (("typed lines", src.user._readline),
                                        ("TLS plaintext", src.user._tls)) if on)
                print(f"probewatch: watching {esc(what)} with {det.stats.rules} rules "
                      f"({src.backend}, {len(src.syscalls)} syscalls{layer}); Ctrl-C to stop",
                      file=sys.stderr, flush=True)
            t0 = time.monotonic()
            if engine is not None:
                det.start_clock()
                if getattr(args, "audit", None):
                    from ..audit.events import Poller

                    poller = Poller(det.feed_sigma, interval=args.audit,
                                    exclude_pids={os.getpid()})
                    poller.start()
            feed = det.feed
            loss = LossReporter(src.losses, as_json=bool(args.json))
            loss.start()
            try:
                n = 0
                for ev in src.events(duration=args.duration):
                    feed(ev)
                    if sinks and lookups:
                        if writer is not None:
                            writer.note_snapshot(lookups)
                        if exporter is not None:
                            exporter.note_processes(lookups)
                        lookups.clear()
                    n += 1
                    if sinks and n & 1023 == 0:
                        if exporter is not None:
                            exporter.check()  # never waits: spills past its bound
                        if writer is None:
                            pass
                        elif writer.error is not None:
                            if capture_only:
                                src.stop()  # recording was the whole job
                            elif det.writer is not None:
                                # a full disk must not blind the monitor: the rules
                                # go on, the capture stops (exit status 1 at the end)
                                det.drop_writer()
                                print(f"probewatch: warning: {esc(str(writer.error))}; "
                                      "watching goes on without -o", file=sys.stderr,
                                      flush=True)
                        elif writer.backlog() > writer.max_backlog:
                            # bounded memory: the kernel's ring buffer holds (and
                            # counts what it drops) while the disk catches up
                            writer.wait_backlog()
            except KeyboardInterrupt:
                stopped_by = "SIGINT"
                src.stop()
            except SystemExit as e:
                signum = int(e.code) - 128 if isinstance(e.code, int) and e.code > 128 else 0
                stopped_by = f"signal {signum}" if signum else "SystemExit"
                src.stop()
                child = src.command_pid
                if child and signum:
                    # SIGTERM/SIGHUP were meant for the whole run: the command gets them
                    # too (^C reaches it from the terminal by itself)
                    try:
                        os.kill(child, signum)
                    except ProcessLookupError:
                        pass
            loss.stop()
            if poller is not None:
                poller.stop()
                if poller.errors:
                    print(f"probewatch: warning: {poller.errors} of {poller.polls} audits "
                          f"failed: {esc(poller.last_error or '')}", file=sys.stderr)
            st = det.finish()
            st.duration = time.monotonic() - t0
            if writer is not None and lookups:
                writer.note_snapshot(lookups)
            if exporter is not None and lookups:
                exporter.note_processes(lookups)
            try:
                st.lost, lost_cpu = src.losses()
            except ProbewatchError:
                lost_cpu = {}
            if exporter is not None:
                exporter.lost = st.lost
                export_stats = exporter.close(getattr(args, "export_timeout", 5.0))
            if cmd:
                src.session.close()
                rc = src.session.wait_command() or 0
    except BaseException as e:
        if loss is not None:
            loss.stop()
        if poller is not None:
            poller.stop()
        if exporter is not None:
            exporter.close(min(getattr(args, "export_timeout", 5.0), 2.0))
        if writer is not None:
            if not begun:
                writer.abandon()
            else:
                writer.finish(status="interrupted" if isinstance(
                    e, KeyboardInterrupt | SystemExit) else "error", message=str(e))
        raise
    if export_stats is not None and not args.json:
        print(f"probewatch: {export_stats.line()}", file=sys.stderr)
    if stopped_by:
        status, message = "interrupted", f"interrupted ({stopped_by})"
    if writer is not None:
        res = writer.finish(status=status, message=message,
                            exit_status=rc if cmd else None,
                            lost_per_cpu=lost_cpu if st is not None else None)
        if res.error is not None:
            print(f"probewatch: error: {res.error}", file=sys.stderr)
            rc = rc or 1
        elif capture_only and st is not None:
            msg = (f"recorded {res.events} events for watch in {st.duration:.2f}s to "
                   f"{res.path} (process table of {n_snap} processes), lost {st.lost}"
                   f"{' [' + status + ']' if status != 'complete' else ''}")
            if args.json:
                msg = json.dumps({"summary": {**st.to_dict(), **_per_cpu(lost_cpu),
                                              **_stored(res), **_exported(export_stats)}})
            print(msg, file=sys.stderr)
            return rc
        elif not args.json:
            print(f"probewatch: {res.events} events and {st.alerts if st else 0} alerts "
                  f"stored in {res.path}", file=sys.stderr)
    if st is not None:
        _summary(st, args.json, {**_per_cpu(lost_cpu),
                                 **(_stored(res) if writer is not None else {}),
                                 **_exported(export_stats)})
    return rc


#: how often (seconds, at most) watch says on stderr that the kernel dropped events
LOSS_REPORT_S = 5.0


class LossReporter:
    """Says on stderr, while watch runs, that the kernel dropped events (its ring
    buffer was full: watch fell behind a storm, or its stdout is not read), at most
    every ``every`` seconds, from a thread of its own (so it speaks even while the
    event loop is stuck on a full pipe): a defender must know at once that alerts may
    be missing, not at the end."""

    def __init__(self, losses: Any, as_json: bool, every: float = LOSS_REPORT_S) -> None:
        import threading
        import time

        self._losses = losses
        self._json = as_json
        self._every = every
        self._t = time.monotonic()
        self.reported = 0
        self.warnings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._run, name="probewatch-watch-loss",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Before the source closes (its maps are read here)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.check()

    def check(self) -> None:
        import time

        try:
            total = int(self._losses()[0])
        except Exception:  # noqa: BLE001 - a failed read must not end watch
            return
        now = time.monotonic()
        new = total - self.reported
        span = now - self._t
        self._t = now
        if new <= 0:
            return
        self.reported = total
        self.warnings += 1
        if self._json:
            msg = json.dumps({"warning": {"lost": new, "lost_total": total,
                                          "seconds": round(span, 1)}})
        else:
            msg = (f"probewatch: warning: the kernel dropped {new} events in the last "
                   f"{span:.0f} s ({total} in all): watch cannot keep up, alerts for "
                   "them may be missing")
        try:
            print(msg, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


def _exported(stats: Any) -> dict[str, Any]:
    """What --export did, in the JSON summary."""
    return {"export": stats.to_dict()} if stats is not None else {}


def _per_cpu(lost_cpu: dict[int, int]) -> dict[str, Any]:
    """The kernel's drops per CPU, as trace's JSON summary gives them."""
    return {"lost_per_cpu": {str(c): n for c, n in sorted(lost_cpu.items())}}


def _stored(res: Any) -> dict[str, Any]:
    """What -o wrote, in the JSON summary: the keys record --json gives."""
    return {"file": os.path.abspath(res.path), "bytes": res.bytes, "written": res.events,
            "status": res.status}
