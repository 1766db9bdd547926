"""probewatch query: read-only SQL over a capture, as an aligned table or JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..decode.escape import escape_text

EXAMPLES = """examples:
  probewatch query run.db "SELECT comm, count(*) AS n FROM events GROUP BY comm ORDER BY n DESC"
  probewatch query run.db "SELECT ts, pid, json_extract(fields, '$.filename') AS file
                           FROM events WHERE event = 'sched:sched_process_exec'"
  probewatch query run.db "SELECT * FROM processes" --json | jq .exe
  probewatch query run.db "SELECT name, sql FROM sqlite_schema"      the schema

Tables: runs, probes, event_types, event_rows, processes, meta; the view events joins
event_rows with their probe and event name (columns id, run_id, ts, cpu, pid, tid,
comm, probe_id, probe, event, fields). fields is JSON text: use json_extract().
The file is opened read-only (mode=ro, PRAGMA query_only): writes are refused.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="read-only SQL over a capture",
        description="Run one read-only SQL statement over a capture file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="capture file written by probewatch record")
    p.add_argument("sql", metavar="SQL", help="one SQL statement")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.set_defaults(func=run)


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, float):
        return repr(v)
    return escape_text(str(v))  # what traced processes wrote: one line, no escapes


def _jsonable(v: Any) -> Any:
    return v.hex() if isinstance(v, bytes) else v


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    """Aligned text: numbers to the right, everything else to the left."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [len(c) for c in columns]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows) and bool(rows)
        for i in range(len(columns))
    ]

    def line(vals: list[str]) -> str:
        return "  ".join(
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(vals)
        ).rstrip()

    out = [line(list(columns)), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return out


def run(args: argparse.Namespace) -> int:
    from ..capture import Capture

    out = sys.stdout
    with Capture(args.file) as cap:
        res = cap.query(args.sql)
        if not res.columns:
            for _ in res.rows:
                pass
            return 0
        if args.json:
            cols = res.columns
            for row in res.rows:
                out.write(json.dumps({c: _jsonable(v) for c, v in zip(cols, row, strict=True)},
                                     ensure_ascii=False) + "\n")
        else:
            rows = list(res.rows)
            out.write("\n".join(format_table(res.columns, rows)) + "\n")
            print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=sys.stderr)
    return 0
