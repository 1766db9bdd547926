"""probewatch collect: the central collector of a fleet (NATS JetStream -> one capture)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

from ..errors import ProbewatchError

EXAMPLES = """examples:
  probewatch collect --from nats://nats1:4222 --creds collector.creds -o fleet.db
  probewatch collect --from nats://nats1:4222 -o fleet.db --detect --ui 127.0.0.1:8080
        the shipped rules run here on the events of agents that run none
        (probewatch record --watch --export ...); the console at http://127.0.0.1:8080/
  probewatch report fleet.db --alerts
  probewatch query fleet.db "SELECT host, count(*) FROM host_events GROUP BY host"

The collector reads the stream PROBEWATCH (probewatch fleet init) through the durable
consumer NAME (default probewatch-collector): a restarted collector continues where
the last one acknowledged. Every batch is stored once, keyed by (host, boot id,
sequence), in one capture (one run per host and boot; runs.host, the view
host_events). A batch is acknowledged only after it was committed. One line per
alert on stdout: time, host, level, title, lineage, and whether the agent's rules or
the collector's (--detect) raised it. SIGINT/SIGTERM end it with a summary on stderr.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from .fleet import add_conn_options
    from .watch import level_arg

    p = sub.add_parser(
        "collect", help="central collector: a fleet's events from NATS JetStream into "
        "one capture, with detection and a web console",
        description="Collect what probewatch agents export to NATS JetStream into one "
        "capture; optionally run the rules centrally and serve a live web console.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="url", required=True, metavar="nats://HOST:PORT[,...]")
    p.add_argument("-o", "--output", default="fleet.db", metavar="FILE",
                   help="the fleet capture (created, or continued; default fleet.db)")
    p.add_argument("--detect", action="store_true",
                   help="run the rules here on every host's events")
    p.add_argument("--rules", metavar="PATH", action="append", default=[],
                   help="with --detect: a Sigma rule file or directory; repeatable")
    p.add_argument("--no-default-rules", action="store_true",
                   help="with --detect: do not load the shipped rules")
    p.add_argument("--level", type=level_arg, default="low", metavar="LEVEL",
                   help="with --detect: lowest level reported (default low)")
    p.add_argument("--ui", metavar="[HOST]:PORT",
                   help="serve the web console here (HOST default 127.0.0.1)")
    p.add_argument("--durable", default="probewatch-collector", metavar="NAME",
                   help="the durable consumer's name (default probewatch-collector)")
    p.add_argument("--ack-wait", type=float, default=30.0, metavar="SECS",
                   help="when a new durable consumer is made: how long a batch that was "
                   "delivered but not acknowledged (a collector killed) waits before it "
                   "is delivered again (default 30)")
    p.add_argument("-d", "--duration", type=float, metavar="SECS", help="stop after SECS")
    p.add_argument("--json", action="store_true", help="alerts as JSON lines")
    add_conn_options(p)
    p.set_defaults(func=run)


def ui_addr(text: str) -> tuple[str, int]:
    """``[HOST]:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ProbewatchError(f"--ui {text}: expected [HOST]:PORT")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def run(args: argparse.Namespace) -> int:
    from ..fleet.collector import Collector
    from .fleet import _tls

    rules = None
    if args.detect:
        from .watch import _load_engine

        args.filters = []
        rules, _ = _load_engine(args)
    elif args.rules or args.no_default_rules:
        raise ProbewatchError("--rules and --no-default-rules apply to --detect")
    addr = ui_addr(args.ui) if args.ui else None
    col = Collector(args.url, args.output, creds=args.creds, tls=_tls(args), rules=rules,
                    level=args.level, track=addr is not None, durable=args.durable,
                    ack_wait=args.ack_wait)
    out = sys.stdout

    def show(item: dict[str, Any]) -> None:
        if args.json:
            out.write(json.dumps(item, default=str) + "\n")
        else:
            from ..detect.alerts import esc

            out.write(f"{time.strftime('%H:%M:%S', time.localtime(item['received']))} "
                      f"{esc(str(item['host']))} {str(item['level']).upper():8} "
                      f"{esc(str(item['title']))} {esc(str(item['lineage'] or ''))} "
                      f"[{item['source']}]\n")
        out.flush()

    col.on_alert.append(show)
    ui = None
    if addr is not None:
        from ..ui.app import UiServer

        ui = UiServer(col, *addr)
        ui.start()
        print(f"probewatch: console on http://{addr[0]}:{ui.port}/", file=sys.stderr,
              flush=True)
    n_rules = len(getattr(rules, "rules", None) or []) if rules is not None else 0

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)

        def ready() -> None:
            print(f"probewatch: collecting from {args.url} into {args.output}"
                  + (f" with {n_rules} rules" if rules is not None else ""),
                  file=sys.stderr, flush=True)

        await col.run(stop, ready=ready)

    try:
        asyncio.run(main())
    finally:
        if ui is not None:
            ui.stop()
        col.finish()
    hosts = ", ".join(f"{h.host} {h.events} events {h.alerts} alerts dropped {h.dropped} "
                      f"lost {h.lost}" for h in col.hosts.values()) or "no hosts"
    print(f"collect: {col.store.batches} batches stored ({col.store.duplicates} duplicates "
          f"skipped, {col.rejected} refused), {col.store.events} events in "
          f"{args.output}; {hosts}", file=sys.stderr)
    return 0
