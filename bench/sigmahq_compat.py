#!/usr/bin/env python3
"""SigmaHQ compatibility: load SigmaHQ's Linux rules unchanged and account for each one.

Every rule document must either run or be reported by ``RuleSet.load`` with a reason
(unsupported logsource, field, modifier, malformed rule); nothing is dropped silently.
The script counts the rule documents in the files itself (YAML documents with a
``detection`` or ``correlation``) and checks that runs + reported == documents.

SigmaHQ's rules are not part of probewatch: point the script at a checkout::

    git clone --depth 1 https://github.com/SigmaHQ/sigma /tmp/sigma
    python bench/sigmahq_compat.py /tmp/sigma                    # rules/linux
    python bench/sigmahq_compat.py /tmp/sigma/rules/linux /tmp/sigma/rules-threat-hunting/linux
    python bench/sigmahq_compat.py /tmp/sigma --json             # machine-readable
    python bench/sigmahq_compat.py /tmp/sigma -v                 # every problem, one a line

A checkout root means its ``rules/linux``. Exit status 0 when every rule is accounted
for, 1 when some rule document is neither running nor reported.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from probewatch.detect.engine import RuleSet  # noqa: E402


def rule_dirs(args: list[str]) -> list[Path]:
    out = []
    for a in args:
        p = Path(a)
        if (p / "rules" / "linux").is_dir():
            p = p / "rules" / "linux"
        out.append(p)
    return out


def count_documents(paths: list[Path]) -> tuple[int, int]:
    """(rule documents, files) in the paths, counted without pySigma."""
    import yaml

    docs = files = 0
    for base in paths:
        found = [base] if base.is_file() else sorted(base.rglob("*.yml"))
        for f in found:
            files += 1
            try:
                for d in yaml.safe_load_all(f.read_text(encoding="utf-8")):
                    if isinstance(d, dict) and ("detection" in d or "correlation" in d):
                        docs += 1
            except Exception:  # noqa: BLE001 - such a file is one reported problem
                docs += 1
    return docs, files


def reason_class(reason: str) -> str:
    """A reason with its specifics (field names, quoted values) generalised."""
    r = re.sub(r"'[^']*'", "'…'", reason)
    r = re.sub(r"^detection [^,]+, ", "", r)
    r = re.sub(r"^field \S+: not provided", "field …: not provided", r)
    return r


def compat(paths: list[Path]) -> dict[str, Any]:
    rs = RuleSet.load(paths, default=False)
    docs, files = count_documents(paths)
    not_run: dict[tuple[str | None, str | None], list[str]] = {}
    warned: dict[tuple[str | None, str | None], list[str]] = {}
    for p in rs.report:
        (warned if p.runs else not_run).setdefault((p.path, p.rule_id), []).append(p.reason)
    reasons = Counter()
    for rs_reasons in not_run.values():
        reasons[reason_class(rs_reasons[0])] += 1
    kinds = Counter(r.kind or "correlation" for r in rs.rules)
    accounted = len(rs.rules) + len(not_run)
    return {
        "paths": [str(p) for p in paths],
        "files": files,
        "rule_documents": docs,
        "runs": len(rs.rules),
        "reported": len(not_run),
        "runs_with_warnings": len([k for k in warned if k not in not_run]),
        "accounted": accounted,
        "unaccounted": docs - accounted,
        "runs_by_kind": dict(kinds.most_common()),
        "indexed": sum(1 for r in rs.rules if r.index),
        "reported_by_reason": dict(reasons.most_common()),
        "problems": [p.to_dict() for p in rs.report],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="SigmaHQ checkout or rule directories/files")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every problem")
    a = ap.parse_args()
    res = compat(rule_dirs(a.paths))
    if a.json:
        print(json.dumps(res))
    else:
        w = sys.stdout.write
        w(f"{res['files']} files, {res['rule_documents']} rule documents "
          f"({', '.join(res['paths'])})\n")
        per_kind = ", ".join(f"{k} {v}" for k, v in res["runs_by_kind"].items())
        w(f"runs      {res['runs']}  ({per_kind}; {res['indexed']} indexed; "
          f"{res['runs_with_warnings']} with warnings)\n")
        w(f"reported  {res['reported']}\n")
        for reason, n in res["reported_by_reason"].items():
            w(f"  {n:4d}  {reason}\n")
        w(f"unaccounted {res['unaccounted']}\n")
        if a.verbose:
            for p in res["problems"]:
                state = "warning" if p["runs"] else "not run"
                w(f"{p['path']}:{p['line']}: {p['rule_id']} {state}: {p['reason']}\n")
    return 0 if res["unaccounted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
