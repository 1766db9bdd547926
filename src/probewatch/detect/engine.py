"""Rule sets and the detection engine (docs/detection.md, "Engine API").

:meth:`RuleSet.load` reads Sigma rules, correlation rules and filters with pySigma,
compiles each rule once (:mod:`probewatch.detect.sigma`) and lists every rule that
cannot run in ``report`` with its file, id, line and the reason. :class:`Engine`
indexes the runnable rules by event kind and, inside a kind, by an index field
(``Syscall`` for the syscall kind, ``type`` for auditd, the Image basename for the
process kinds) so an event meets only the rules that could fire.

Example::

    >>> rules = RuleSet.load([], default=False)
    >>> rules.add_yaml('''
    ... title: id run
    ... id: 11111111-2222-3333-4444-555555555555
    ... level: low
    ... tags: [attack.discovery, attack.t1033]
    ... logsource: {category: process_creation, product: linux}
    ... detection: {sel: {Image|endswith: /id}, condition: sel}
    ... ''')
    >>> engine = Engine(rules)
    >>> m = engine.process(SigmaEvent("process_creation", 1, 7, {"Image": "/usr/bin/id"}))
    >>> [(x.rule.title, x.rule.techniques) for x in m]
    [('id run', ['T1033'])]
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .correlation import Correlator, Fired
from .model import LEVELS, SigmaEvent, at_least, parse_level

__all__ = ["DEFAULT_RULES_DIR", "UNSET_LEVEL", "CompiledRule", "Engine", "LoadProblem", "Match",
           "Partial", "RuleSet", "rule_reads"]

#: the shipped rules (package data)
DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "rules"

#: the level a rule without ``level:`` is filtered as (not hidden by ``--level low``)
UNSET_LEVEL = "medium"

_TECHNIQUE = re.compile(r"t\d{4}(?:\.\d{3})?", re.IGNORECASE)


@dataclass(frozen=True)
class LoadProblem:
    """A rule (or file) that cannot run, or runs with a caveat (``runs=True``)."""

    path: str | None
    rule_id: str | None
    line: int | None
    reason: str
    runs: bool = False

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        rid = f" {self.rule_id}" if self.rule_id else ""
        what = "warning" if self.runs else "not run"
        return f"{where}:{rid} {what}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rule_id": self.rule_id, "line": self.line,
                "reason": self.reason, "runs": self.runs}


@dataclass(eq=False)
class CompiledRule:
    """A loaded rule: its metadata and its compiled detection (or correlation)."""

    id: str
    title: str
    level: str | None
    tags: list[str]
    techniques: list[str]
    description: str | None
    falsepositives: list[str]
    path: str | None
    line: int | None = None
    kind: str | None = None  # the SigmaEvent kind (correlations: when all refs share one)
    kinds: list[str] = field(default_factory=list)  # every kind the rule looks at
    name: str | None = None
    status: str | None = None
    author: str | None = None
    references: list[str] = field(default_factory=list)
    correlation: str | None = None  # correlation type
    referenced: list[str] = field(default_factory=list)  # correlation: the rules' ids
    generate: bool = False
    filters: list[str] = field(default_factory=list)  # ids of filters applied
    fields: list[str] = field(default_factory=list)
    index: tuple[str, frozenset[str]] | None = None
    # every index field the rule requires -> its keys (the index one included)
    guards: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    source: str = field(default="", repr=False)  # generated predicate (for `rules list -v`)
    fn: Any = field(default=None, repr=False)
    spec: dict[str, Any] | None = field(default=None, repr=False)  # correlation settings
    order: int = 0

    def matches(self, ev: SigmaEvent) -> bool:
        """Whether this (non-correlation) rule's detection matches ``ev`` (kind included)."""
        from .sigma import Lowered

        if self.fn is None or ev.kind != self.kind:
            return False
        return bool(self.fn(ev.fields, Lowered(ev.fields)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "level": self.level, "tags": self.tags,
            "techniques": self.techniques, "description": self.description,
            "falsepositives": self.falsepositives, "path": self.path, "line": self.line,
            "kind": self.kind, "kinds": self.kinds, "name": self.name, "status": self.status,
            "correlation": self.correlation, "referenced": self.referenced,
            "filters": self.filters, "fields": self.fields,
            "index": None if self.index is None else
            {"field": self.index[0], "values": sorted(self.index[1])},
        }


@dataclass
class Match:
    """A rule that fired: the rule, the event(s), correlation group values and count."""

    rule: CompiledRule
    events: list[SigmaEvent]
    group: dict[str, Any] | None = None
    count: float = 1


def techniques_of(tags: Iterable[str]) -> list[str]:
    """ATT&CK technique ids from Sigma tags: ``attack.t1055.008`` -> ``T1055.008``.

    >>> techniques_of(["attack.execution", "attack.t1059.004", "attack.T1105"])
    ['T1059.004', 'T1105']
    """
    out = []
    for t in tags:
        ns, _, name = str(t).partition(".")
        if ns.lower() == "attack" and _TECHNIQUE.fullmatch(name):
            tid = name.upper()
            if tid not in out:
                out.append(tid)
    return out


# --- loading ---------------------------------------------------------------------


class _Doc:
    """One YAML document of a rule file: its start line and the lines of its keys."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.keys: dict[str, int] = {}  # "id", "detection", "detection.sel", ...
        self.items: list[tuple[str, int]] = []  # detection item keys (field|mods)

    def line_for(self, path: str) -> int:
        return self.keys.get(path, self.start)


def _doc_lines(text: str) -> list[_Doc]:
    import yaml

    docs: list[_Doc] = []
    # libyaml when there (the same nodes and marks, ~10x faster: watch starts sooner)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for node in yaml.compose_all(text, Loader=loader):
            d = _Doc(node.start_mark.line + 1 if node is not None else 1)
            if isinstance(node, yaml.MappingNode):
                _walk_keys(node, "", d, 0)
            docs.append(d)
    except Exception:
        pass
    return docs


def _walk_keys(node: Any, prefix: str, d: _Doc, depth: int) -> None:
    import yaml

    if depth > 6:
        return
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = str(getattr(k, "value", ""))
            path = f"{prefix}{key}"
            d.keys.setdefault(path, k.start_mark.line + 1)
            if prefix.startswith("detection.") or prefix.startswith("filter."):
                d.items.append((key, k.start_mark.line + 1))
            _walk_keys(v, path + ".", d, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _walk_keys(v, prefix, d, depth + 1)


def _error_line(err: BaseException, d: _Doc | None) -> int | None:
    """The line of a rule file an error is about (best effort; the document start)."""
    if d is None:
        return None
    from sigma import exceptions as se

    msg = str(err)
    if isinstance(err, (se.SigmaConditionError,)) or "condition" in msg.lower():
        for k in ("detection.condition", "filter.condition", "correlation.condition"):
            if k in d.keys:
                return d.keys[k]
    if isinstance(err, se.SigmaLogsourceError) or msg.startswith("logsource"):
        return d.line_for("logsource")
    if "correlation" in type(err).__name__.lower() or "Timespan" in type(err).__name__:
        for k in ("correlation.timespan", "correlation.type", "correlation"):
            if k.split(".")[-1] in msg.lower() and k in d.keys:
                return d.keys[k]
        return d.line_for("correlation")
    m = re.search(r"field ([^\s,:]+)", msg)
    if m:
        fld = m.group(1)
        for key, line in d.items:
            if key.split("|")[0] == fld:
                return line
    m = re.search(r"[Mm]odifier '?([A-Za-z0-9_]+)", msg)
    if m:
        for key, line in d.items:
            if m.group(1) in key.split("|")[1:]:
                return line
    for key in ("date", "modified", "tags", "level", "status", "id", "title", "related",
                "references", "falsepositives", "author"):
        if f"Rule {key}" in msg or f"'{key}'" in msg or f"Sigma {key}" in msg.replace(
                "Sigma rule ", "Sigma "):
            if key in d.keys:
                return d.keys[key]
    for k in ("detection", "filter", "correlation"):
        if k in msg.lower() and k in d.keys:
            return d.keys[k]
    return d.start


def _rule_ident(rule: Any, doc: dict[str, Any] | None = None) -> str:
    rid = getattr(rule, "id", None)
    if rid is not None:
        return str(rid)
    name = getattr(rule, "name", None)
    if name:
        return str(name)
    if doc is not None and doc.get("id") is not None:
        return str(doc.get("id"))
    title = getattr(rule, "title", None) or (doc or {}).get("title")
    return str(title) if title else "?"


@dataclass
class _Parsed:
    obj: Any  # SigmaRule | SigmaCorrelationRule | SigmaFilter
    path: str | None
    doc: _Doc | None
    is_filter_file: bool


class RuleSet:
    """Loaded rules: ``rules`` (runnable, in load order), ``report`` (what cannot run).

    ``filters`` are the Sigma filters applied (site exceptions, kept in their own
    files): each filter is merged into the rules it names (or, with ``rules: any``,
    every rule of its logsource) before compilation.
    """

    def __init__(self) -> None:
        self.rules: list[CompiledRule] = []
        self.report: list[LoadProblem] = []
        self._load_report: list[LoadProblem] = []  # problems found while reading files
        self.filters: list[dict[str, Any]] = []
        self.files: list[str] = []
        self.placeholders: dict[str, list[str]] = {}
        self._parsed: list[_Parsed] = []
        self._filter_parsed: list[_Parsed] = []

    # --- public -----------------------------------------------------------------

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path] = (),
        default: bool = True,
        filters: Sequence[str | Path] = (),
        placeholders: dict[str, list[str]] | None = None,
    ) -> RuleSet:
        """Load rule files and directories (``*.yml``/``*.yaml``, recursively).

        ``default`` adds the shipped rules; ``filters`` are files/directories of Sigma
        filters; ``placeholders`` defines ``%name%`` values for ``|expand``.
        Never raises for bad rules: they end up in ``report``.
        """
        rs = cls()
        rs.placeholders = dict(placeholders or {})
        sources: list[Path] = []
        if default and DEFAULT_RULES_DIR.is_dir():
            sources.append(DEFAULT_RULES_DIR)
        sources.extend(Path(p) for p in paths)
        done: set[Path] = set()
        for f in _files(sources, rs._load_report):
            if f.resolve() not in done:
                done.add(f.resolve())
                rs._read_file(f, rs._parsed, filter_file=False)
        for f in _files([Path(p) for p in filters], rs._load_report):
            if f.resolve() not in done:  # a filter file inside a rules directory
                done.add(f.resolve())
                rs._read_file(f, rs._filter_parsed, filter_file=True)
        rs._build()
        return rs

    def add_yaml(self, text: str, path: str | None = None) -> None:
        """Add rules from YAML text (tests, ``rules test``) and rebuild."""
        self._read_text(text, path, self._parsed, filter_file=False)
        self._build()

    def get(self, ref: str) -> CompiledRule | None:
        """A runnable rule by id, name or title."""
        for r in self.rules:
            if ref in (r.id, r.name):
                return r
        for r in self.rules:
            if r.title == ref:
                return r
        return None

    def syscall_names(self) -> set[str] | None:
        """The syscalls the ``syscall`` and ``auditd`` rules can fire on (lower case), or
        None when some rule may fire on any syscall. Rules of other kinds are not
        counted (their events come from the mapper's own syscalls)."""
        out: set[str] = set()
        for r in self.rules:
            if r.kind == "syscall" or (r.correlation is None and "syscall" in r.kinds):
                if r.index is None or r.index[0] != "Syscall":
                    return None
                out |= r.index[1]
            elif r.kind == "auditd":
                if r.index is not None and r.index[0] == "SYSCALL":
                    out |= r.index[1]
                elif r.index is not None and r.index[0] == "type" and r.index[1] <= {
                        "execve"}:
                    out |= {"execve", "execveat"}
                else:
                    return None
        return out

    @property
    def problems(self) -> list[LoadProblem]:
        """Problems that keep a rule (or file) from running."""
        return [p for p in self.report if not p.runs]

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Any:
        return iter(self.rules)

    # --- reading ------------------------------------------------------------------

    def _read_file(self, f: Path, into: list[_Parsed], filter_file: bool) -> None:
        self.files.append(str(f))
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            self._load_report.append(LoadProblem(str(f), None, None, f"not UTF-8 text: {e}"))
            return
        except OSError as e:
            self._load_report.append(LoadProblem(str(f), None, None, f"cannot read: {e.strerror}"))
            return
        self._read_text(text, str(f), into, filter_file)

    def _read_text(self, text: str, path: str | None, into: list[_Parsed],
                   filter_file: bool) -> None:
        import yaml
        from sigma.collection import SigmaCollection
        from sigma.exceptions import SigmaRuleLocation

        try:
            try:  # libyaml's parser (the same resolver and constructor: the same values)
                raw_docs = list(yaml.load_all(text, Loader=getattr(
                    yaml, "CSafeLoader", yaml.SafeLoader)))
            except yaml.YAMLError:
                raw_docs = list(yaml.safe_load_all(text))  # its messages, as always
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            line = mark.line + 1 if mark is not None else None
            if line is not None:  # "found <stream end>" points past the last line
                line = max(1, min(line, len(text.splitlines())))
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            self._load_report.append(LoadProblem(path, None, line, f"YAML: {problem}"))
            return
        except Exception as e:  # recursion, ...
            self._load_report.append(
                LoadProblem(path, None, None, f"YAML: {type(e).__name__}: {e}"))
            return
        lines = _doc_lines(text)
        docs: list[tuple[dict[str, Any], _Doc | None]] = []
        for i, d in enumerate(raw_docs):
            dl = lines[i] if i < len(lines) else None
            if d is None:
                continue
            if not isinstance(d, dict):
                self._load_report.append(LoadProblem(
                    path, None, dl.start if dl else None,
                    f"YAML document {i + 1} is a {type(d).__name__}, not a rule (mapping)"))
                continue
            docs.append((d, dl))
        if not docs:
            if not raw_docs or all(d is None for d in raw_docs):
                self._load_report.append(LoadProblem(path, None, None, "no rule in file"))
            return
        source = SigmaRuleLocation(Path(path)) if path else None
        parsed: list[tuple[Any, _Doc | None, dict[str, Any] | None]] = []
        coll_errors: list[Any] = []
        try:
            coll = SigmaCollection.from_dicts(
                [d for d, _ in docs], collect_errors=True, source=source,
                collect_filters=True, resolve_references=False)
            objs = list(coll.rules) + list(coll.filters)
            coll_errors = [e for e in coll.errors
                           if not any(e is x for o in objs for x in o.errors)]
            for o in objs:
                dl, dd = _find_doc(o, docs)
                parsed.append((o, dl, dd))
        except Exception:
            # one bad document spoils the whole collection: parse them one by one
            parsed = []
            for d, dl in docs:
                try:
                    c1 = SigmaCollection.from_dicts(
                        [d], collect_errors=True, source=source, collect_filters=True,
                        resolve_references=False)
                    for o in list(c1.rules) + list(c1.filters):
                        parsed.append((o, dl, d))
                    coll_errors.extend(e for e in c1.errors
                                       if not any(e is x for o in c1.rules for x in o.errors))
                except Exception as e:  # noqa: BLE001 - every failure becomes a report line
                    rid = d.get("id")
                    self._load_report.append(LoadProblem(
                        path, str(rid) if rid is not None else d.get("title"),
                        _error_line(e, dl) if dl else None, _reason(e)))
        first = docs[0][1].start if docs[0][1] else None
        for ce in coll_errors:
            self._load_report.append(LoadProblem(path, None, first, _reason(ce)))
        for o, dl, dd in parsed:
            if o.errors:
                for oe in o.errors[:3]:
                    self._load_report.append(LoadProblem(
                        path, _rule_ident(o, dd), _error_line(oe, dl), _reason(oe)))
                continue
            into.append(_Parsed(o, path, dl, filter_file))

    # --- building -------------------------------------------------------------------

    def _build(self) -> None:
        """Apply filters, compile rules and correlations (idempotent: rebuilds all)."""
        import copy

        from sigma.correlations import SigmaCorrelationRule
        from sigma.filters import SigmaFilter
        from sigma.rule import SigmaRule

        built: list[LoadProblem] = []
        base: list[tuple[_Parsed, Any]] = []
        corrs: list[_Parsed] = []
        filts: list[_Parsed] = []
        for p in self._parsed + self._filter_parsed:
            if isinstance(p.obj, SigmaFilter):
                filts.append(p)
            elif isinstance(p.obj, SigmaCorrelationRule):
                corrs.append(p)
            elif isinstance(p.obj, SigmaRule):
                base.append((p, copy.deepcopy(p.obj)))  # filters mutate the rule
        # duplicates
        seen_ids: dict[str, str | None] = {}
        unique: list[tuple[_Parsed, Any]] = []
        for p, r in base:
            rid = _rule_ident(r)
            if rid in seen_ids:
                built.append(LoadProblem(p.path, rid, p.doc.line_for("id") if p.doc else None,
                                         f"duplicate rule id (first in {seen_ids[rid]})"))
                continue
            seen_ids[rid] = p.path
            unique.append((p, r))
        base = unique

        # filters
        self.filters = []
        applied: dict[int, list[str]] = defaultdict(list)
        for fp in filts:
            flt = fp.obj
            fid = _rule_ident(flt)
            targets = flt.filter.rules
            hits = 0
            for _p, r in base:
                try:
                    if flt._should_apply_on_rule(r):
                        flt.apply_on_rule(r)
                        applied[id(r)].append(fid)
                        hits += 1
                except Exception as e:  # noqa: BLE001
                    built.append(LoadProblem(fp.path, fid, _error_line(e, fp.doc),
                                             f"filter cannot apply to rule {_rule_ident(r)}: "
                                             f"{_reason(e)}", runs=True))
            names = ("any" if isinstance(targets, str)
                     else [t.reference for t in targets])
            if isinstance(names, list):
                known = {_rule_ident(r) for _, r in base} | {
                    str(r.name) for _, r in base if r.name}
                for n in names:
                    if n not in known:
                        built.append(LoadProblem(
                            fp.path, fid, fp.doc.line_for("filter.rules") if fp.doc else None,
                            f"filter names rule {n}, which is not loaded", runs=hits > 0))
            self.filters.append({"id": fid, "title": flt.title, "path": fp.path,
                                 "rules": names, "applied": hits})

        # base rules
        from .sigma import Unsupported, compile_detection, kind_of_logsource

        rules: list[CompiledRule] = []
        by_ref: dict[str, CompiledRule] = {}
        cannot: dict[str, str] = {}  # id/name -> reason, for correlations
        for p, r in base:
            rid = _rule_ident(r)
            ls = r.logsource
            try:
                kind = kind_of_logsource(ls.category, ls.product, ls.service)
                comp = compile_detection(r, kind, self.placeholders)
            except Unsupported as e:
                built.append(LoadProblem(p.path, rid, _error_line(e, p.doc), str(e)))
                cannot[rid] = str(e)
                if r.name:
                    cannot[str(r.name)] = str(e)
                continue
            except Exception as e:  # noqa: BLE001 - pySigma errors at condition parse time
                built.append(LoadProblem(p.path, rid, _error_line(e, p.doc), _reason(e)))
                cannot[rid] = _reason(e)
                continue
            cr = _meta(r, p, rid)
            cr.kind = kind
            cr.kinds = [kind]
            cr.fn = comp.fn
            cr.source = comp.source
            cr.fields = sorted(comp.fields)
            cr.index = comp.index
            cr.guards = comp.guards
            cr.filters = applied.get(id(r), [])
            warn = _field_warnings(kind, comp.fields, r)
            for reason, never in warn:
                built.append(LoadProblem(p.path, rid, _error_line(Unsupported(reason), p.doc),
                                         reason, runs=not never))
            if any(never for _, never in warn):
                cannot[rid] = "; ".join(r for r, n in warn if n)
                continue
            rules.append(cr)
            by_ref[rid] = cr
            if r.name:
                by_ref[str(r.name)] = cr

        # correlations (may reference each other: resolve until nothing changes)
        pending = list(corrs)
        progress = True
        while pending and progress:
            progress = False
            still: list[_Parsed] = []
            for p in pending:
                c = p.obj
                refs = _corr_refs(c)
                if any(x not in by_ref and x not in cannot for x in refs) and any(
                        _is_corr_ref(x, pending) for x in refs):
                    still.append(p)
                    continue
                progress = True
                rid = _rule_ident(c)
                try:
                    cr = _compile_correlation(c, p, rid, by_ref, cannot)
                except _CannotRun as e:
                    built.append(LoadProblem(p.path, rid, _error_line(e, p.doc), str(e)))
                    cannot[rid] = str(e)
                    if c.name:
                        cannot[str(c.name)] = str(e)
                    continue
                rules.append(cr)
                by_ref[rid] = cr
                if c.name:
                    by_ref[str(c.name)] = cr
            pending = still
        for p in pending:
            rid = _rule_ident(p.obj)
            built.append(LoadProblem(p.path, rid, p.doc.line_for("correlation") if p.doc
                                     else None, "correlation rules reference each other in a "
                                     "cycle"))

        # generate: base rules referenced by correlations without `generate: true` are silent
        gen: dict[str, bool] = {}
        for cr in rules:
            if cr.correlation:
                for ref in cr.referenced:
                    gen[ref] = gen.get(ref, False) or cr.generate
        for i, cr in enumerate(rules):
            cr.order = i
            cr.generate = gen.get(cr.id, True)
        # load-time problems stay; the ones of a previous build are replaced
        self.report = self._load_report + built
        self.rules = rules


class _CannotRun(Exception):
    pass


def _reason(e: BaseException) -> str:
    """An error message without pySigma's "in <path>" suffix (the path is reported)."""
    msg = str(e)
    src = getattr(e, "source", None)
    if src is not None:
        tail = " in " + str(src)
        if msg.endswith(tail):
            msg = msg[: -len(tail)]
    return msg or type(e).__name__


def _find_doc(o: Any, docs: list[tuple[dict[str, Any], _Doc | None]]
              ) -> tuple[_Doc | None, dict[str, Any] | None]:
    rid = str(o.id) if getattr(o, "id", None) is not None else None
    for d, dl in docs:
        if rid is not None and str(d.get("id")) == rid:
            return dl, d
    for d, dl in docs:
        if d.get("title") == getattr(o, "title", None) and (
                rid is None or d.get("id") is None):
            return dl, d
    return (docs[0][1], docs[0][0]) if len(docs) == 1 else (None, None)


def _files(sources: list[Path], report: list[LoadProblem]) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        if s.is_dir():
            found = sorted(p for p in s.rglob("*") if p.suffix in (".yml", ".yaml")
                           and p.is_file())
            out.extend(found)
        elif s.is_file():
            out.append(s)
        else:
            report.append(LoadProblem(str(s), None, None, "no such file or directory"))
    return out


def _meta(r: Any, p: _Parsed, rid: str) -> CompiledRule:
    tags = [str(t) for t in (r.tags or [])]
    return CompiledRule(
        id=rid,
        title=str(r.title or rid),
        level=str(r.level).lower() if r.level is not None else None,
        tags=tags,
        techniques=techniques_of(tags),
        description=r.description,
        falsepositives=[str(x) for x in (r.falsepositives or [])],
        path=p.path,
        line=p.doc.start if p.doc else None,
        name=str(r.name) if r.name else None,
        status=str(r.status).lower() if r.status is not None else None,
        author=r.author,
        references=[str(x) for x in (r.references or [])],
    )


def _field_warnings(kind: str, fields: set[str], r: Any) -> list[tuple[str, bool]]:
    """(reason, never-matches) for fields the kind does not carry."""
    from .sigma import NEVER_FILLED, known_field

    unknown = sorted(f for f in fields if not known_field(kind, f))
    never_filled = {f: why for f, why in NEVER_FILLED.get(kind, {}).items() if f in fields}
    out: list[tuple[str, bool]] = []
    if not unknown and not never_filled:
        return out
    absent = set(unknown) | set(never_filled)
    can = _satisfiable(r, absent)
    for f in unknown:
        out.append((f"field {f}: not provided by probewatch's {kind} events"
                    + ("" if can else " (the rule can never match)"), not can))
    for f, why in never_filled.items():
        out.append((f"field {f}: {why}" + ("" if can else " (the rule can never match)"),
                    not can))
    return out


def _satisfiable(r: Any, absent: set[str]) -> bool:
    """Whether the condition can be true when the ``absent`` fields are missing."""
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
    )
    from sigma.types import SigmaExists, SigmaNull

    def ev(n: Any) -> bool | None:  # None: unknown
        if isinstance(n, ConditionAND):
            vals = [ev(a) for a in n.args]
            if any(v is False for v in vals):
                return False
            return True if all(v is True for v in vals) else None
        if isinstance(n, ConditionOR):
            vals = [ev(a) for a in n.args]
            if any(v is True for v in vals):
                return True
            return False if all(v is False for v in vals) else None
        if isinstance(n, ConditionNOT):
            v = ev(n.args[0])
            return None if v is None else not v
        if isinstance(n, ConditionFieldEqualsValueExpression) and n.field in absent:
            if isinstance(n.value, SigmaNull):
                return True
            if isinstance(n.value, SigmaExists):
                return not n.value.exists
            return False
        return None

    try:
        return any(ev(c.parse()) is not False for c in r.detection.parsed_condition)
    except Exception:  # noqa: BLE001
        return True


def _corr_refs(c: Any) -> list[str]:
    from sigma.correlations import SigmaExtendedCorrelationCondition

    if c.rules is not None:
        return [x.reference for x in c.rules]
    if isinstance(c.condition, SigmaExtendedCorrelationCondition):
        return list(c.condition.get_referenced_rules())
    return []


def _is_corr_ref(ref: str, pending: list[_Parsed]) -> bool:
    return any(ref in (_rule_ident(p.obj), str(p.obj.name or "")) for p in pending)


def _compile_correlation(c: Any, p: _Parsed, rid: str, by_ref: dict[str, CompiledRule],
                         cannot: dict[str, str]) -> CompiledRule:
    from sigma.correlations import (
        CorrelationConditionAND,
        CorrelationConditionNOT,
        CorrelationConditionOR,
        SigmaExtendedCorrelationCondition,
        SigmaRuleReference,
    )

    ctype = str(c.type.name).lower() if c.type is not None else None
    if ctype is None:
        raise _CannotRun("correlation without type")
    refs = _corr_refs(c)
    if not refs:
        raise _CannotRun("correlation references no rules")
    resolved: list[CompiledRule] = []
    for x in refs:
        if x in by_ref:
            resolved.append(by_ref[x])
        elif x in cannot:
            raise _CannotRun(f"correlation references rule {x}, which cannot run: {cannot[x]}")
        else:
            raise _CannotRun(f"correlation references rule {x}, which is not loaded")
    cond = c.condition
    spec: dict[str, Any] = {
        "type": ctype,
        "timespan_ns": int(c.timespan.seconds) * 1_000_000_000,
        "timespan": c.timespan.spec,
        "group_by": list(c.group_by or []),
        "refs": [r.id for r in resolved],
    }
    if isinstance(cond, SigmaExtendedCorrelationCondition):
        if ctype != "temporal":
            raise _CannotRun(f"extended (boolean) condition with {ctype}: only temporal "
                             "correlations support it here")
        index = {name: i for i, name in enumerate(refs)}

        def build(n: Any) -> Any:
            if isinstance(n, SigmaRuleReference):
                i = index[n.reference]
                return lambda s: i in s
            if isinstance(n, CorrelationConditionNOT):
                a = build(n.args[0])
                return lambda s: not a(s)
            if isinstance(n, CorrelationConditionAND):
                parts = [build(a) for a in n.args]
                return lambda s: all(f(s) for f in parts)
            if isinstance(n, CorrelationConditionOR):
                parts = [build(a) for a in n.args]
                return lambda s: any(f(s) for f in parts)
            raise _CannotRun(f"extended condition element {type(n).__name__}")

        spec["extended"] = build(cond.parsed)
        spec["extended_negates"] = bool(re.search(r"\bnot\b", cond.expression))
        spec["expression"] = cond.expression
        spec["op"], spec["count"] = "gte", 1
    else:
        spec["op"] = cond.op.name.lower()
        spec["count"] = cond.count
        spec["fieldref"] = cond.fieldref
        spec["percentile"] = cond.percentile
    aliases: dict[str, dict[int, str]] = {}
    for al in c.aliases or []:
        m: dict[int, str] = {}
        for ref, fname in al.mapping.items():
            if ref.reference in refs:
                m[refs.index(ref.reference)] = fname
            else:
                raise _CannotRun(f"alias {al.alias} names rule {ref.reference}, "
                                 "which the correlation does not reference")
        aliases[al.alias] = m
    spec["aliases"] = aliases
    cr = _meta(c, p, rid)
    cr.correlation = ctype
    cr.referenced = [r.id for r in resolved]
    cr.generate = bool(c.generate)
    cr.spec = spec
    kinds = sorted({k for r in resolved for k in r.kinds})
    cr.kinds = kinds
    cr.kind = kinds[0] if len(kinds) == 1 else None
    return cr


# --- the engine --------------------------------------------------------------------


class Partial(SigmaEvent):
    """A SigmaEvent carrying only the fields that the rules it could meet read
    (:meth:`Engine.plan`); ``build()`` makes the full event. The engine evaluates
    the candidate rules on the partial fields first and builds the full event only
    when one of them matches (or fails), so a match is the same as on the full event
    while the common no-match costs only the fields the rules look at."""

    __slots__ = ("build",)

    def __init__(self, kind: str, ts: int, pid: int, fields: dict[str, Any], raw: Any,
                 build: Any) -> None:
        SigmaEvent.__init__(self, kind, ts, pid, fields, raw)
        self.build = build


_QUOTED = r"'[^'\\\n]*'"
_READ = re.compile(rf"L\[({_QUOTED})\]|f\.get\(({_QUOTED})\)|({_QUOTED}) in f\b")
_NAMES_FL = re.compile(r"\b[fL]\b")


def rule_reads(r: CompiledRule) -> frozenset[str] | None:
    """The fields a compiled rule's predicate reads, from its generated source; None
    when it may read any (keywords search every field) or the source does not say."""
    src = r.source
    if r.fn is None or not src.startswith("def _rule(f, L):"):
        return None
    body = src.split("\n", 1)[1] if "\n" in src else ""
    names: set[str] = set()

    def take(m: re.Match[str]) -> str:
        q = m.group(1) or m.group(2) or m.group(3)
        names.add(q[1:-1])
        return "_"

    rest = _READ.sub(take, body)
    if _NAMES_FL.search(rest):
        return None  # f or L used otherwise (f.values(), L.text(), for k in f, ...)
    return frozenset(names)


class _KindTable:
    """The rules of one kind: filed under an index field's values, and the rest."""

    def __init__(self, index_fields: tuple[str, ...]) -> None:
        self.index_fields = index_fields
        self.generic: list[CompiledRule] = []
        self.keyed: dict[str, dict[str, list[CompiledRule]]] = {
            f: defaultdict(list) for f in index_fields}
        self.cache: dict[tuple[str | None, ...], tuple[CompiledRule, ...]] = {}
        self.pcache: dict[tuple[str | None, ...], frozenset[str] | None | bool] = {}
        # the same with each rule's predicate next to it (the engine's hot loop)
        self.fcache: dict[tuple[str | None, ...], tuple[tuple[Any, CompiledRule], ...]] = {}
        from .sigma import key_function

        ns = {f"_k{i}": key_function(f) for i, f in enumerate(index_fields)}
        body = ", ".join(f"_k{i}(f.get({f!r}))" for i, f in enumerate(index_fields))
        self._keys = eval(f"lambda f: ({body},)", ns)  # one call per event

    def add(self, r: CompiledRule) -> None:
        if r.index is not None and r.index[0] in self.keyed:
            for k in r.index[1]:
                self.keyed[r.index[0]][k].append(r)
        else:
            self.generic.append(r)

    def keys(self, fields: dict[str, Any]) -> tuple[str | None, ...]:
        return self._keys(fields)

    def candidates(self, keys: tuple[str | None, ...]) -> tuple[CompiledRule, ...]:
        got = self.cache.get(keys)
        if got is not None:
            return got
        rules = list(self.generic)
        for f, k in zip(self.index_fields, keys, strict=True):
            if k is not None:
                rules.extend(self.keyed[f].get(k, ()))
        # a rule that requires keys of another index field meets only events with one
        rules = [r for r in rules if not r.guards or all(
            k in g for f, k in zip(self.index_fields, keys, strict=True)
            if (g := r.guards.get(f)) is not None)]
        rules.sort(key=lambda r: r.order)
        got = tuple(rules)
        if len(self.cache) >= 4096:  # bounded: Image basenames are unbounded
            self.cache.clear()
            self.fcache.clear()
            self.pcache.clear()
        self.cache[keys] = got
        return got

    def __len__(self) -> int:
        return len(self.generic) + len({id(r) for m in self.keyed.values()
                                        for v in m.values() for r in v})


class Engine:
    """Evaluate a RuleSet on SigmaEvents: ``process(sev) -> list[Match]``.

    ``min_level`` drops matches of rules below that level (rules below it that a
    correlation needs are still evaluated); a rule without a level counts as
    ``UNSET_LEVEL`` (medium). Evaluation errors are counted per rule
    in ``errors`` and never raised. ``max_groups`` bounds each correlation's state.
    """

    def __init__(self, rules: RuleSet, min_level: str = "informational",
                 max_groups: int = 10000) -> None:
        from .sigma import INDEX_FIELDS

        self.ruleset = rules
        self.min_level = parse_level(min_level)
        self.errors: dict[str, int] = defaultdict(int)
        self.events = 0
        self.matches = 0
        self._tables: dict[str, _KindTable] = {}
        # who listens to whom: rule id -> [(correlator, ref index, correlation rule)]
        self._listeners: dict[str, list[tuple[Correlator, int, CompiledRule]]] = defaultdict(list)
        self.correlators: dict[str, Correlator] = {}
        self._reads: dict[CompiledRule, frozenset[str] | None] = {}  # per rule object
        by_id = {r.id: r for r in rules.rules}
        needed: set[str] = set()

        def need(r: CompiledRule) -> None:
            if r.id in needed:
                return
            needed.add(r.id)
            for ref in r.referenced:
                if ref in by_id:
                    need(by_id[ref])

        for r in rules.rules:
            if self._emits(r):
                need(r)
        for r in rules.rules:
            if r.id not in needed:
                continue
            if r.correlation:
                s = r.spec or {}
                corr = Correlator(
                    s["type"], s["refs"], s["timespan_ns"], s["group_by"], s["op"],
                    s["count"], s.get("fieldref"), s.get("percentile"), s["aliases"],
                    s.get("extended"), max_groups, s.get("extended_negates", False))
                self.correlators[r.id] = corr
                for i, ref in enumerate(s["refs"]):
                    if i == s["refs"].index(ref):
                        self._listeners[ref].append((corr, i, r))
            elif r.kind is not None:
                t = self._tables.get(r.kind)
                if t is None:
                    t = self._tables[r.kind] = _KindTable(INDEX_FIELDS.get(r.kind, ()))
                t.add(r)
        self._emit = {r.id: self._emits(r) for r in rules.rules}
        # correlations judged when a window closes: any event advances their clock
        self._closing = [(c, next(r for r in rules.rules if r.id == rid))
                         for rid, c in self.correlators.items() if c.closed]
        self._next_tick = -(2**63)

    def _emits(self, r: CompiledRule) -> bool:
        return r.generate and at_least(r.level or UNSET_LEVEL, self.min_level)

    @property
    def evicted(self) -> int:
        """Correlation groups evicted because of the ``max_groups`` bound."""
        return sum(c.evicted for c in self.correlators.values())

    def rules_for(self, kind: str) -> int:
        t = self._tables.get(kind)
        return 0 if t is None else len(t)

    def candidates(self, sev: SigmaEvent) -> tuple[CompiledRule, ...]:
        """The rules ``sev`` is evaluated against (its kind, narrowed by the index)."""
        t = self._tables.get(sev.kind)
        if t is None:
            return ()
        return t.candidates(t.keys(sev.fields))

    def index_fields(self, kind: str) -> tuple[str, ...]:
        """The fields the rules of ``kind`` are indexed by (what :meth:`plan` reads)."""
        t = self._tables.get(kind)
        return () if t is None else t.index_fields

    def plan(self, kind: str, fields: dict[str, Any]) -> frozenset[str] | None | bool:
        """What an event of ``kind`` whose index fields (``Syscall`` for the syscall
        kind, ...) are ``fields`` needs to be evaluated: False when no rule could
        match it (it need not be made at all), None when a candidate rule may read
        any field (make the full event), else the fields the candidate rules read,
        the index fields included (a :class:`Partial` with those suffices)."""
        t = self._tables.get(kind)
        if t is None:
            return False
        keys = t._keys(fields)
        got = t.pcache.get(keys, True)
        if got is not True:
            return got
        cands = t.candidates(keys)
        res: frozenset[str] | None | bool
        if not cands:
            res = False
        else:
            names: set[str] = set(t.index_fields)
            for r in cands:
                if r in self._reads:
                    rr = self._reads[r]
                else:
                    rr = self._reads[r] = rule_reads(r)
                if rr is None:
                    names = set()
                    break
                names |= rr
            res = frozenset(names) if names else None
        t.pcache[keys] = res
        return res

    def process(self, sev: SigmaEvent) -> list[Match]:
        """Matches of every rule (and correlation) ``sev`` completes."""
        self.events += 1
        out: list[Match] = []
        if self._closing and sev.ts >= self._next_tick:
            self._tick(sev.ts, out)
        t = self._tables.get(sev.kind)
        if t is None:
            return out
        f = sev.fields
        keys = t._keys(f)
        cands = t.fcache.get(keys)
        if cands is None:
            cands = t.fcache[keys] = tuple((r.fn, r) for r in t.candidates(keys))
        if not cands:
            return out
        low = _Lowered(f)
        if sev.__class__ is Partial:
            # the candidates on the fields they read: the full event only on a match
            for fn, _ in cands:
                try:
                    if fn(f, low):
                        break
                except Exception:  # noqa: BLE001 - the full event counts it
                    break
            else:
                return out
            sev = sev.build()
            f = sev.fields
            low = _Lowered(f)
        for fn, r in cands:
            try:
                hit = fn(f, low)
            except Exception:  # noqa: BLE001 - counted, never raised
                self.errors[r.id] += 1
                continue
            if hit:
                if self._emit[r.id]:
                    out.append(Match(r, [sev]))
                if r.id in self._listeners:
                    self._correlate(r, sev.ts, f, sev, out, 0)
        self.matches += len(out)
        return out

    def _correlate(self, r: CompiledRule, ts: int, fields: dict[str, Any], ev: Any,
                   out: list[Match], depth: int) -> None:
        if depth > 8:
            return
        for corr, i, crule in self._listeners.get(r.id, ()):
            try:
                fired = corr.feed(i, ts, fields, ev)
            except Exception:  # noqa: BLE001
                self.errors[crule.id] += 1
                continue
            for fi in fired:
                self._fired(crule, fi, ts, out, depth)

    def _fired(self, crule: CompiledRule, fi: Fired, ts: int, out: list[Match],
               depth: int) -> None:
        events = _flatten(fi.events)
        m = Match(crule, events, fi.group, fi.count)
        if self._emit.get(crule.id):
            out.append(m)
        if crule.id in self._listeners:
            fields = dict(events[-1].fields) if events else {}
            if fi.group:
                fields.update(fi.group)
            self._correlate(crule, ts, fields, m, out, depth + 1)

    def _tick(self, ts: int, out: list[Match]) -> None:
        self._next_tick = ts + 100_000_000  # at most every 100 ms of event time
        for corr, crule in self._closing:
            for fi in corr.flush(ts):
                self._fired(crule, fi, ts, out, 0)

    def flush(self, now: int | None = None) -> list[Match]:
        """Close correlation windows ended before ``now`` (all when None): ``lt``-style
        conditions are only decided then. Call at the end of a replay."""
        out: list[Match] = []
        by_id = {r.id: r for r in self.ruleset.rules if r.id in self.correlators}
        for rid, corr in self.correlators.items():
            crule = by_id[rid]
            for fi in corr.flush(now):
                self._fired(crule, fi, now or corr.now, out, 0)
        self.matches += len(out)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "events": self.events, "matches": self.matches,
            "errors": dict(self.errors), "evicted_groups": self.evicted,
            "rules": {k: self.rules_for(k) for k in self._tables},
        }


def _Lowered(f: dict[str, Any]) -> Any:
    from .sigma import Lowered

    globals()["_Lowered"] = Lowered  # bind once: no import per event
    return Lowered(f)


def _flatten(events: list[Any]) -> list[SigmaEvent]:
    out: list[SigmaEvent] = []
    for e in events:
        if isinstance(e, Match):
            out.extend(e.events)
        else:
            out.append(e)
    return out


_ = LEVELS  # re-exported names used by the CLI
