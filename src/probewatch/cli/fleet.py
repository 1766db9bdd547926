"""probewatch fleet: set up NATS JetStream for a fleet (stream, per-host credentials);
the --export options that watch and record share."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from ..errors import ProbewatchError

EXAMPLES = """examples:
  probewatch fleet auth web1 db1 mail -o fleet-auth/
        auth.conf (include it in nats-server.conf) and web1.creds, db1.creds, mail.creds,
        collector.creds, admin.creds
  probewatch fleet init nats://nats1:4222,nats://nats2:4222,nats://nats3:4222 \\
        --replicas 3 --max-gb 50 --max-age-days 30 --creds fleet-auth/admin.creds
  then, on each host:    probewatch watch --export nats://nats1:4222 --creds web1.creds
  (or, no rules there:   probewatch record --watch --export nats://... --creds web1.creds)
  and centrally:         probewatch collect --from nats://nats1:4222 --creds \\
                             fleet-auth/collector.creds -o fleet.db --detect --ui :8080

A host's credentials let it publish only on probewatch.<host>.> and read replies only on
its own inbox prefix _INBOX_<host>.>; the collector's let it read the stream through
its durable consumer. The stream PROBEWATCH keeps probewatch.> on file storage with
the given replicas and limits, and a 2-minute duplicate window for the agents'
message ids (host:boot id:batch sequence).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet", help="set up NATS JetStream for a fleet: stream, per-host credentials",
        description="Set up NATS JetStream for probewatch agents and the collector.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    fs = p.add_subparsers(dest="fleet_cmd", metavar="ACTION")
    a = fs.add_parser("auth", help="write auth.conf and per-host credentials files")
    a.add_argument("hosts", nargs="+", metavar="HOST", help="host names (one subject token "
                   "each: letters, digits, - and _)")
    a.add_argument("-o", "--out", metavar="DIR", required=True,
                   help="directory for auth.conf and the .creds files (mode 0600)")
    a.set_defaults(func=run_auth)
    i = fs.add_parser("init", help="create or update the PROBEWATCH stream")
    i.add_argument("url", metavar="nats://HOST:PORT[,...]")
    i.add_argument("--replicas", type=int, default=1, metavar="N",
                   help="copies of the stream in a cluster (1, 3 or 5; default 1)")
    i.add_argument("--max-gb", type=float, default=0, metavar="GB",
                   help="bytes the stream may hold before the oldest go (default: no limit)")
    i.add_argument("--max-age-days", type=float, default=0, metavar="DAYS",
                   help="age after which batches go (default: no limit)")
    i.add_argument("--wait", type=float, default=30, metavar="SECS",
                   help="how long to wait for a new cluster's leader (default 30)")
    i.add_argument("--hosts", nargs="*", default=None, metavar="HOST",
                   help="also write credentials for these hosts (with --out)")
    i.add_argument("-o", "--out", metavar="DIR", help="directory for --hosts' credentials")
    add_conn_options(i)
    i.set_defaults(func=run_init)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def add_conn_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--creds", metavar="FILE",
                   help="NATS credentials: a .creds file, or one probewatch fleet auth wrote")
    p.add_argument("--tls-ca", metavar="PEM", help="CA that signed the server's certificate")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate (TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="client certificate's key")


def add_export_options(p: argparse.ArgumentParser) -> None:
    """--export and its companions (watch, record)."""
    g = p.add_argument_group("fleet export (NATS JetStream)")
    g.add_argument("--export", metavar="nats://HOST:PORT",
                   help="also send events, alerts and process records to this NATS "
                   "JetStream (subjects probewatch.<host>.<kind>); several servers "
                   "separated by commas")
    g.add_argument("--creds", metavar="FILE",
                   help="NATS credentials (probewatch fleet auth writes one per host)")
    g.add_argument("--tls-ca", metavar="PEM", help="CA of the server's certificate")
    g.add_argument("--tls-cert", metavar="PEM", help="client certificate")
    g.add_argument("--tls-key", metavar="PEM", help="client certificate's key")
    g.add_argument("--host", metavar="NAME", dest="export_host",
                   help="host name to export as (default: the credentials', else uname)")
    g.add_argument("--spill-dir", metavar="DIR",
                   help="where unacknowledged batches wait on disk (default "
                   "/var/lib/probewatch/spill/HOST)")
    g.add_argument("--spill-mb", type=int, default=1024, metavar="MB",
                   help="disk the spill may use; beyond it batches are dropped and "
                   "counted (default 1024)")
    g.add_argument("--export-timeout", type=float, default=5.0, metavar="SECS",
                   help="at exit, how long to keep sending before the rest is spilled "
                   "(default 5)")


def _tls(args: argparse.Namespace) -> Any:
    from ..fleet.connect import TlsFiles

    if args.tls_key and not args.tls_cert:
        raise ProbewatchError("--tls-key needs --tls-cert")
    for opt, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                      ("--tls-key", args.tls_key)):
        if path and not os.path.isfile(path):
            raise ProbewatchError(f"{opt} {path}: no such file")
    if args.tls_ca or args.tls_cert:
        return TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)
    return None


def open_exporter(args: argparse.Namespace, backend: str = "") -> Any:
    """The Exporter of --export (None without it); errors before anything is armed."""
    url = getattr(args, "export", None)
    if not url:
        for opt in ("creds", "tls_ca", "tls_cert", "export_host", "spill_dir"):
            if getattr(args, opt, None):
                raise ProbewatchError(f"--{opt.replace('_', '-').replace('export-', '')} "
                                      "applies to --export")
        return None
    from ..fleet.exporter import Exporter

    return Exporter(url, host=args.export_host, creds=args.creds, tls=_tls(args),
                    spill_dir=args.spill_dir, spill_max=max(1, args.spill_mb) << 20,
                    backend=backend)


def run_auth(args: argparse.Namespace) -> int:
    from ..fleet.admin import write_auth

    files = write_auth(args.out, args.hosts)
    for name, path in files.items():
        print(f"{name}: {path}")
    print(f"add to nats-server.conf:  include \"{os.path.abspath(files['auth.conf'])}\"  "
          "(nats-server takes an include path relative to its config file)",
          file=sys.stderr)
    return 0


def run_init(args: argparse.Namespace) -> int:
    from ..fleet.admin import init_stream, write_auth

    if args.replicas < 1 or args.replicas > 5:
        raise ProbewatchError("--replicas must be 1 to 5")
    if args.hosts:
        if not args.out:
            raise ProbewatchError("--hosts needs -o DIR for the credentials files")
        for name, path in write_auth(args.out, args.hosts).items():
            print(f"{name}: {path}", file=sys.stderr)
    info = asyncio.run(init_stream(
        args.url, replicas=args.replicas,
        max_bytes=int(args.max_gb * (1 << 30)) if args.max_gb > 0 else -1,
        max_age_s=args.max_age_days * 86400, creds=args.creds, tls=_tls(args),
        wait=args.wait))
    print(json.dumps(info))
    return 0
