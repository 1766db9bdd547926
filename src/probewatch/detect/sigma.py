"""Sigma rules compiled once into Python predicates over :class:`SigmaEvent` fields.

pySigma (the reference implementation) parses the YAML, applies the value modifiers
and parses the condition; this module walks the resulting condition tree ONCE per
rule and generates a plain Python function from it. No pySigma object is touched
per event.

Matching semantics (the Sigma specification, as probewatch applies it):

* strings compare case-insensitively unless ``|cased``; ``*`` and ``?`` are wildcards;
  equality / ``startswith`` / ``endswith`` / ``contains`` use str methods, any other
  wildcard pattern a precompiled regex; all plain patterns of one field in one ``or``
  are merged into one test (a frozenset, a tuple for startswith/endswith, one regex);
* ``|re`` is a Python regex, searched (not anchored), case-sensitive unless ``|i``;
  ``|m`` and ``|s`` set MULTILINE and DOTALL;
* an ``int`` (or ``bool``) field matches a rule's number or numeric string (``bool`` as
  ``true``/``false``); ``gt/gte/lt/lte`` compare numbers and numeric strings;
* a list field (``argv``) matches when any element matches;
* ``null`` matches an absent, ``None`` or empty field; ``|exists`` tests presence;
* a keyword (field-less) value is searched in every field of the event (contains);
* ``|fieldref`` compares with another field of the same event (case-insensitively,
  with ``startswith``/``endswith``/``contains`` when combined);
* ``|cidr`` tests an IP address field against the network;
* ``|base64``, ``|base64offset``, ``|windash`` are expanded by pySigma into strings;
* ``|wide``/``|utf16*`` (UTF-16 bytes), timestamp parts (``|minute`` ...) and
  ``|expand`` placeholders without a definition cannot match probewatch's text fields:
  such rules are reported, not run.

Example::

    >>> from sigma.rule import SigmaRule
    >>> r = SigmaRule.from_yaml('''
    ... title: t
    ... logsource: {category: process_creation, product: linux}
    ... detection:
    ...   sel: {Image|endswith: /nc, CommandLine|contains: ' -e '}
    ...   condition: sel
    ... ''')
    >>> c = compile_detection(r, "process_creation")
    >>> c.predicate({"Image": "/usr/bin/nc", "CommandLine": "nc -e /bin/sh h 1"})
    True
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.modifiers import (
    SigmaTimestampModifier,
    SigmaUTF16BEModifier,
    SigmaUTF16Modifier,
    SigmaWideModifier,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

__all__ = [
    "CompiledDetection",
    "Lowered",
    "Unsupported",
    "compile_detection",
    "kind_of_logsource",
    "known_field",
    "normalize",
]


class Unsupported(Exception):
    """A rule uses something probewatch cannot evaluate; the message says what."""


# --- logsources and fields ---------------------------------------------------------

_CATEGORY_KIND = {
    "process_creation": "process_creation",
    "file_event": "file_event",
    "file_create": "file_event",
    "file_change": "file_event",
    "file_rename": "file_event",
    "file_delete": "file_event",
    "network_connection": "network_connection",
    "syscall": "syscall",
    # the user-space layer (probewatch's own): lines typed into bash, TLS plaintext
    "shell_command": "shell_command",
    "tls": "tls",
    "audit": "audit",
}

PROCESS_FIELDS = frozenset({
    "Image", "CommandLine", "Argv0", "Comm", "CurrentDirectory", "ProcessId",
    "ParentProcessId", "ParentImage", "ParentCommandLine", "GrandparentImage", "User",
    "Uid", "Euid", "Gid", "Egid", "LogonId", "ContainerId", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "BASH_ENV", "HISTFILE", "HISTSIZE",
    "HISTFILESIZE", "PROMPT_COMMAND", "SSH_CONNECTION", "ExeName",
})

KIND_FIELDS: dict[str, frozenset[str]] = {
    # Std*Target: what fds 0-2 refer to (detect/mapping.py, beyond the contract)
    "process_creation": PROCESS_FIELDS | {"OriginalArgv0", "Argv1", "ExecSyscall",
                                          "StdinTarget", "StdoutTarget", "StderrTarget"},
    "file_event": PROCESS_FIELDS | {
        "TargetFilename", "Operation", "SourceFilename", "Flags", "Mode", "Syscall", "Success",
    },
    "network_connection": PROCESS_FIELDS | {
        "DestinationIp", "DestinationPort", "SourceIp", "SourcePort", "DestinationIsIpv6",
        "Initiated", "Protocol", "Fd", "Success", "Syscall",
    },
    "shell_command": PROCESS_FIELDS | {"Command", "Shell", "Truncated"},
    "tls": PROCESS_FIELDS | {
        "Direction", "Data", "DataLength", "Captured", "Cut", "Library", "LibraryPath",
        "Function", "Fd", "DestinationIp", "DestinationPort", "SourceIp", "SourcePort",
    },
    # probewatch audit's findings (audit/events.py; docs/detection.md)
    "audit": PROCESS_FIELDS | {
        "Finding", "Change", "Key", "Summary", "Owner", "Instance", "ProbeType", "Target",
        "TargetPath", "TargetSymbol", "TargetClass", "Group", "Event", "ProgId", "ProgType",
        "ProgName", "ProgTag", "AttachType", "Attached", "Holders", "TracedPid",
        "TracedImage", "TracedCommandLine", "Filter", "Trigger", "Tracer", "TaintFlags",
        "Module", "Variable", "Value", "Count",
    },
    # audit.log's names; the mapper adds the process fields to each record too
    "auditd": PROCESS_FIELDS | {
        "type", "argc", "SYSCALL", "exe", "comm", "uid", "euid", "auid", "success", "exit",
        "name", "nametype",
    },
}
_AUDIT_ARG = re.compile(r"a\d+")

#: fields the contract names but that probewatch never fills
NEVER_FILLED = {"network_connection": {"DestinationHostname": "never looked up (no DNS)"}}


def kind_of_logsource(category: str | None, product: str | None, service: str | None) -> str:
    """The SigmaEvent kind for a rule's logsource; Unsupported says why there is none.

    >>> kind_of_logsource("process_creation", "linux", None)
    'process_creation'
    >>> kind_of_logsource(None, "linux", "sshd")
    Traceback (most recent call last):
    ...
    probewatch.detect.sigma.Unsupported: logsource service sshd: no event source
    """
    if product is not None and product.lower() != "linux":
        raise Unsupported(f"logsource product {product}: no event source (probewatch is linux)")
    if category is None:
        if service is not None and service.lower() == "auditd":
            return "auditd"
        if service is not None:
            raise Unsupported(f"logsource service {service}: no event source")
        raise Unsupported(f"logsource product {product or '(none)'} without category or "
                          "service (generic log lines): no event source")
    kind = _CATEGORY_KIND.get(category.lower())
    if kind is None:
        raise Unsupported(f"logsource category {category}: no event source")
    if service is not None and not (kind == "syscall" and service.lower() == "auditd"):
        raise Unsupported(f"logsource category {category} with service {service}: "
                          "no event source")
    return kind


def known_field(kind: str, name: str) -> bool:
    """Whether events of ``kind`` can carry field ``name`` (syscall: any argument name)."""
    if kind == "syscall":
        return True
    if kind == "auditd" and _AUDIT_ARG.fullmatch(name):
        return True
    return name in KIND_FIELDS.get(kind, ()) or name in NEVER_FILLED.get(kind, {})


# --- value normalisation ----------------------------------------------------------


def _norm(v: Any, lower: bool) -> Any:
    """A field value as matchers see it: str (lowered unless cased), a tuple of them, None."""
    if v is None:
        return None
    c = v.__class__
    if c is str:
        return v.lower() if lower else v
    if c is bool:
        return "true" if v else "false"
    if c is int:
        return str(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return tuple(x for x in (_norm(e, lower) for e in v) if x is not None and
                     x.__class__ is str)
    if isinstance(v, (bytes, bytearray)):
        s = bytes(v).decode("utf-8", "surrogateescape")
        return s.lower() if lower else s
    s = str(v)
    return s.lower() if lower else s


def normalize(v: Any) -> Any:
    """The lowered form of a field value (what case-insensitive matchers compare)."""
    return _norm(v, True)


class Lowered(dict):
    """Per-event lazy cache of lowered field values: ``L["Image"]`` lowers once per event."""

    __slots__ = ("f", "_text")

    def __init__(self, f: dict[str, Any]) -> None:
        self.f = f
        self._text: str | None = None

    def __missing__(self, k: str) -> Any:
        v = self.f.get(k)
        r = v.lower() if v.__class__ is str else _norm(v, True)
        self[k] = r
        return r

    def text(self) -> str:
        """Every field value, lowered, NUL-separated: what keywords are searched in."""
        t = self._text
        if t is None:
            parts: list[str] = []
            for k in self.f:
                v = self[k]
                if v.__class__ is str:
                    parts.append(v)
                elif v:
                    parts.extend(v)
            t = self._text = "\0".join(parts)
        return t


# --- string patterns ------------------------------------------------------------


@dataclass
class _Patterns:
    """Plain string patterns of one field: each kind of test merged into one."""

    eq: set[str] = field(default_factory=set)
    starts: set[str] = field(default_factory=set)
    ends: set[str] = field(default_factory=set)
    contains: set[str] = field(default_factory=set)
    regex: list[str] = field(default_factory=list)
    anything: bool = False  # '*': any present string

    def add(self, s: SigmaString, lower: bool, keyword: bool = False) -> None:
        parts = [p.lower() if (lower and isinstance(p, str)) else p for p in s.s]
        star, qm = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
        if keyword:  # a keyword is found anywhere in a field, like a full-text search
            if not parts or parts[0] is not star:
                parts.insert(0, star)
            if parts[-1] is not star:
                parts.append(star)
        if any(isinstance(p, Placeholder) for p in parts):  # pragma: no cover - expanded before
            raise Unsupported("placeholder left in value")
        if not parts:
            self.eq.add("")
        elif all(isinstance(p, str) for p in parts):
            self.eq.add("".join(parts))  # type: ignore[arg-type]
        elif parts == [star]:
            self.anything = True
        elif len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
            self.ends.add(parts[1])
        elif len(parts) == 2 and parts[1] is star and isinstance(parts[0], str):
            self.starts.add(parts[0])
        elif (len(parts) == 3 and parts[0] is star and parts[2] is star
              and isinstance(parts[1], str)):
            self.contains.add(parts[1])
        else:
            rx = []
            for p in parts:
                if p is star:
                    rx.append(".*")
                elif p is qm:
                    rx.append(".")
                else:
                    rx.append(re.escape(str(p)))
            self.regex.append("".join(rx))

    def required_dir1(self) -> set[str] | None:
        """First path components these patterns can only match (None: any)."""
        if self.anything or self.ends or self.contains or self.regex:
            return None
        out = set()
        for e in self.eq:
            d = _dir1(e.lower())
            if d is None:
                return None
            out.add(d)
        for e in self.starts:
            e = e.lower()
            if not e.startswith("/") or "/" not in e[1:]:
                return None
            d = _dir1(e)
            if d is None:
                return None
            out.add(d)
        return out

    def required_basenames(self) -> set[str] | None:
        """Image basenames these patterns can only match (None: any)."""
        if self.anything or self.starts or self.contains or self.regex:
            return None
        out = set()
        for e in self.eq:
            out.add(e.rsplit("/", 1)[-1].lower())
        for e in self.ends:
            if "/" not in e:
                return None
            out.add(e.rsplit("/", 1)[-1].lower())
        return out


def _str_test_source(p: _Patterns, ns: dict[str, Any], var: str) -> str:
    """Python source of a boolean expression testing the str ``var`` against ``p``."""
    terms = []
    if p.anything:
        return "True"
    if p.eq:
        if len(p.eq) == 1:
            ns_name = _const(ns, next(iter(p.eq)))
            terms.append(f"{var} == {ns_name}")
        else:
            terms.append(f"{var} in {_const(ns, frozenset(p.eq))}")
    if p.starts:
        terms.append(f"{var}.startswith({_const(ns, tuple(sorted(p.starts)))})")
    if p.ends:
        terms.append(f"{var}.endswith({_const(ns, tuple(sorted(p.ends)))})")
    if p.contains:
        cs = sorted(p.contains)
        if len(cs) <= 4:
            terms.extend(f"{_const(ns, c)} in {var}" for c in cs)
        else:
            rx = re.compile("|".join(re.escape(c) for c in cs), re.DOTALL)
            terms.append(f"{_const(ns, rx.search)}({var}) is not None")
    if p.regex:
        rx = re.compile("(?:" + ")|(?:".join(p.regex) + ")", re.DOTALL)
        terms.append(f"{_const(ns, rx.fullmatch)}({var}) is not None")
    return " or ".join(f"({t})" for t in terms) if terms else "False"


def _const(ns: dict[str, Any], obj: Any) -> str:
    name = f"_k{len(ns)}"
    ns[name] = obj
    return name


# --- matchers on raw values -------------------------------------------------------


def _to_number(v: Any) -> float | int | None:
    if v.__class__ is int:
        return v
    if v.__class__ is bool:
        return int(v)
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s, 10)
        except ValueError:
            try:
                return float(s)
            except ValueError:
                return None
    return None


def _any_value(v: Any, test: Callable[[Any], bool]) -> bool:
    if v is None:
        return False
    if isinstance(v, (list, tuple)):
        return any(e is not None and test(e) for e in v)
    return test(v)


def _number_matcher(n: int | float) -> Callable[[Any], bool]:
    def test(e: Any) -> bool:
        x = _to_number(e)
        return x is not None and x == n

    return lambda v: _any_value(v, test)


_OPS: dict[CompareOperators, Callable[[Any, Any], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


def _compare_matcher(op: CompareOperators, n: int | float) -> Callable[[Any], bool]:
    fn = _OPS[op]

    def test(e: Any) -> bool:
        x = _to_number(e)
        return x is not None and fn(x, n)

    return lambda v: _any_value(v, test)


@functools.lru_cache(maxsize=8192)
def _ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    s = s.strip()
    if s.startswith("[") and "]" in s:
        s = s[1:s.index("]")]
    s = s.split("%", 1)[0]
    try:
        a = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def _cidr_matcher(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Callable[[Any], bool]:
    def test(e: Any) -> bool:
        a = _ip(e) if isinstance(e, str) else None
        return a is not None and a.version == net.version and a in net

    return lambda v: _any_value(v, test)


def _regex_matcher(rx: re.Pattern[str]) -> Callable[[Any], bool]:
    search = rx.search

    def test(e: Any) -> bool:
        return search(e) is not None

    def m(v: Any) -> bool:
        return _any_value(_norm(v, False), test)

    return m


def _fieldref_matcher(sw: bool, ew: bool) -> Callable[[Any, Any], bool]:
    # |fieldref|startswith: the field starts with the referenced field's value, etc.
    def test1(a: str, b: str) -> bool:
        if sw and ew:
            return b in a
        if sw:
            return a.startswith(b)
        if ew:
            return a.endswith(b)
        return a == b

    def m(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        la = a if isinstance(a, tuple) else (a,)
        lb = b if isinstance(b, tuple) else (b,)
        return any(test1(x, y) for x in la for y in lb)

    return m


# --- compilation ---------------------------------------------------------------


@dataclass
class CompiledDetection:
    """A rule's detection as one Python function of (fields, lowered cache).

    ``predicate(fields)`` is the convenience form; the engine calls ``fn(fields, L)``
    with one :class:`Lowered` per event shared by all rules. ``index`` is
    ``(field, keys)`` when the rule can only fire for those values of an index field
    (``Syscall`` names, ``type`` of auditd records, Image basenames). ``guards``: the
    same for every index field of the kind the rule requires (the index one included):
    the rule cannot fire when an event's key of such a field is not among them.
    """

    fn: Callable[[dict[str, Any], Lowered], bool]
    source: str
    fields: set[str]
    index: tuple[str, frozenset[str]] | None
    keyword: bool
    ns: dict[str, Any] = field(repr=False)
    guards: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def predicate(self, fields: dict[str, Any]) -> bool:
        return bool(self.fn(fields, Lowered(fields)))


#: per kind, the index fields in order of preference: a rule is filed under the first
#: one its condition requires (Syscall names, audit SYSCALL name, PATH name's first
#: directory or record type, Image basename, first directory of TargetFilename); other
#: rules are evaluated for every event of the kind. The other index fields a rule
#: requires are its guards: it is no candidate for an event whose key of one of them
#: is not required (an openat rule on /etc/shadow never meets an open in /usr)
INDEX_FIELDS: dict[str, tuple[str, ...]] = {
    "syscall": ("Syscall", "TargetFilename"),
    "auditd": ("SYSCALL", "name", "type"),
    "process_creation": ("Image",),
    "file_event": ("Image", "TargetFilename"),
    "network_connection": ("Image",),
    "shell_command": ("Image",),
    "tls": ("Image",),
    "audit": ("Finding",),
}


#: index fields holding absolute paths: keyed by their first directory
PATH_INDEX = frozenset({"TargetFilename", "name"})


def index_key(fieldname: str, value: Any) -> str | None:
    """The index key of an event's value of an index field.

    >>> index_key("Image", "/usr/bin/Curl"), index_key("TargetFilename", "/etc/cron.d/x")
    ('curl', 'etc')
    """
    if value is None or value.__class__ is not str:
        return None
    if fieldname == "Image":
        return value.rsplit("/", 1)[-1].lower()
    if fieldname in PATH_INDEX:
        return _dir1(value.lower())
    return value.lower()


def key_function(fieldname: str) -> Callable[[Any], str | None]:
    """``index_key`` specialised for one field (the engine calls it per event)."""
    if fieldname == "Image":
        return lambda v: v.rsplit("/", 1)[-1].lower() if v.__class__ is str else None
    if fieldname in PATH_INDEX:
        return lambda v: _dir1(v.lower()) if v.__class__ is str else None
    return lambda v: v.lower() if v.__class__ is str else None


def _dir1(v: str) -> str | None:
    """The first component of an absolute path ('etc' for /etc/passwd)."""
    if not v.startswith("/"):
        return None
    return v[1:].split("/", 1)[0]


def _walk_items(det: SigmaDetection | SigmaDetectionItem) -> Iterable[SigmaDetectionItem]:
    if isinstance(det, SigmaDetectionItem):
        yield det
    else:
        for d in det.detection_items:
            yield from _walk_items(d)


def check_items(rule: SigmaRule) -> None:
    """Raise Unsupported for modifiers whose values probewatch's text fields cannot carry."""
    for name, det in rule.detection.detections.items():
        for item in _walk_items(det):
            where = f"detection {name.split('_filt_')[-1]!s}, field {item.field or '(keyword)'}"
            for mod in item.modifiers:
                if issubclass(mod, (SigmaWideModifier, SigmaUTF16Modifier,
                                    SigmaUTF16BEModifier)):
                    raise Unsupported(
                        f"{where}: modifier {_modname(mod)} (UTF-16 encoded values; "
                        "probewatch fields are text)")
                if issubclass(mod, SigmaTimestampModifier):
                    raise Unsupported(
                        f"{where}: modifier {_modname(mod)} (no wall-clock timestamp field)")


def _modname(mod: type) -> str:
    from sigma.modifiers import reverse_modifier_mapping

    return reverse_modifier_mapping.get(mod.__name__, mod.__name__)


class _Compiler:
    def __init__(self, kind: str, placeholders: dict[str, list[str]] | None) -> None:
        self.kind = kind
        self.ns: dict[str, Any] = {"_any": _any_value, "_str": str}
        self.fields: set[str] = set()
        self.placeholders = placeholders or {}
        self.keyword = False

    # values -> flat list of leaf values (SigmaExpansion and placeholders expanded)
    def _expand(self, v: SigmaType, fld: str | None = None) -> list[SigmaType]:
        if isinstance(v, SigmaExpansion):
            return [x for e in v.values for x in self._expand(e, fld)]
        if isinstance(v, SigmaString) and v.contains_placeholder():
            missing = [p.name for p in v.s if isinstance(p, Placeholder)
                       and p.name not in self.placeholders]
            if missing:
                raise Unsupported(f"field {fld or '(keyword)'}: placeholder %{missing[0]}% "
                                  "(|expand) is not defined")
            cased = isinstance(v, SigmaCasedString)

            def cb(p: Placeholder) -> Iterable[SigmaString]:
                for val in self.placeholders[p.name]:
                    yield SigmaString(val)

            out: list[SigmaType] = []
            for s in v.replace_placeholders(cb):  # type: ignore[arg-type]
                out.append(SigmaCasedString.from_sigma_string(s) if cased else s)
            return out
        if isinstance(v, SigmaRegularExpression) and v.contains_placeholder():
            raise Unsupported(f"field {fld or '(keyword)'}: placeholder in a regular "
                              "expression (|expand) is not supported")
        return [v]

    def compile(self, node: Any) -> str:
        if isinstance(node, ConditionAND):
            return "(" + " and ".join(self.compile(a) for a in node.args) + ")"
        if isinstance(node, ConditionOR):
            return self._or(node.args)
        if isinstance(node, ConditionNOT):
            return f"(not {self.compile(node.args[0])})"
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self._or([node])
        if isinstance(node, ConditionValueExpression):
            return self._or([node])
        if node is None:
            raise Unsupported("empty condition")
        raise Unsupported(f"condition element {type(node).__name__}")

    def _or(self, args: list[Any]) -> str:
        """OR of args; plain string leaves of one field are merged into one test."""
        groups: dict[tuple[str | None, bool], _Patterns] = {}
        order: list[tuple[str | None, bool] | str] = []
        for a in args:
            if isinstance(a, (ConditionFieldEqualsValueExpression, ConditionValueExpression)):
                fld = a.field if isinstance(a, ConditionFieldEqualsValueExpression) else None
                for v in self._expand(a.value, fld):
                    if isinstance(v, SigmaString):
                        cased = isinstance(v, SigmaCasedString)
                        key = (fld, cased)
                        if key not in groups:
                            groups[key] = _Patterns()
                            order.append(key)
                        groups[key].add(v, lower=not cased, keyword=fld is None)
                    else:
                        order.append(self._leaf(fld, v))
            else:
                order.append(self.compile(a))
        terms = []
        for o in order:
            if isinstance(o, tuple):
                terms.append(self._strings(o[0], o[1], groups[o]))
            else:
                terms.append(o)
        if len(terms) == 1:
            return terms[0]
        return "(" + " or ".join(terms) + ")"

    def _strings(self, fld: str | None, cased: bool, p: _Patterns) -> str:
        src = _str_test_source(p, self.ns, "s")
        fn_src = (
            "def _t(v):\n"
            "    if v.__class__ is str:\n"
            "        s = v\n"
            f"        return {src}\n"
            "    if v is None:\n"
            "        return False\n"
            "    for s in v:\n"
            f"        if {src}:\n"
            "            return True\n"
            "    return False\n"
        )
        local: dict[str, Any] = {}
        exec(compile(fn_src, "<sigma>", "exec"), self.ns, local)
        test = _const(self.ns, local["_t"])
        self.ns[test + "_src"] = fn_src
        if fld is None:
            self.keyword = True
            if cased:
                return f"any({test}(_n(v)) for v in f.values())"
            if p.contains and not (p.eq or p.starts or p.ends or p.regex or p.anything) and \
                    not any("\0" in c for c in p.contains):
                # substrings: one search in all values joined (a NUL never matches)
                return f"{test}(L.text())"
            return f"any({test}(L[k]) for k in f)"
        self.fields.add(fld)
        var = f"_v{len(self.ns)}"
        inline = _str_test_source(p, self.ns, var)
        get = f"_n(f.get({fld!r}))" if cased else f"L[{fld!r}]"
        # the common case (a str value) inline; lists, numbers and None through _t
        expr = f"(({inline}) if ({var} := {get}).__class__ is _str else {test}({var}))"
        if fld not in _ALWAYS:  # often absent: a cheap `in` before any lowering
            expr = f"({fld!r} in f and {expr})"
        return expr

    def _leaf(self, fld: str | None, v: SigmaType) -> str:
        if fld is not None:
            self.fields.add(fld)
        raw = f"f.get({fld!r})"
        if isinstance(v, SigmaRegularExpression):
            flags = re.NOFLAG
            for fl in v.flags:
                flags |= {
                    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
                    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
                    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
                }[fl]
            try:
                rx = re.compile(str(v.regexp), flags)
            except re.error as e:
                raise Unsupported(f"regular expression {str(v.regexp)!r}: {e}") from None
            m = _const(self.ns, _regex_matcher(rx))
            if fld is None:
                self.keyword = True
                return f"any({m}(v) for v in f.values())"
            return f"{m}({raw})"
        if fld is None:
            if isinstance(v, SigmaNumber) and not isinstance(v, SigmaTimestampPart):
                p = _Patterns()
                p.add(SigmaString(str(v.number)), lower=True, keyword=True)
                return self._strings(None, False, p)
            raise Unsupported(f"keyword value of type {type(v).__name__}")
        if isinstance(v, SigmaTimestampPart):
            raise Unsupported(f"field {fld}: timestamp part modifier (no wall-clock field)")
        if isinstance(v, SigmaNumber):
            return f"{_const(self.ns, _number_matcher(v.number))}({raw})"
        if isinstance(v, SigmaCompareExpression):
            m = _const(self.ns, _compare_matcher(v.op, v.number.number))
            return f"{m}({raw})"
        if isinstance(v, SigmaBool):
            want = "true" if v.boolean else "false"
            p = _Patterns()
            p.add(SigmaString(want), lower=True)
            return self._strings(fld, False, p)
        if isinstance(v, SigmaNull):
            return f"(L[{fld!r}] in (None, '', ()))"
        if isinstance(v, SigmaExists):
            return f"(({raw} is not None) is {bool(v.exists)})"
        if isinstance(v, SigmaCIDRExpression):
            return f"{_const(self.ns, _cidr_matcher(v.network))}({raw})"
        if isinstance(v, SigmaFieldReference):
            self.fields.add(v.field)
            m = _const(self.ns, _fieldref_matcher(v.starts_with, v.ends_with))
            return f"{m}(L[{fld!r}], L[{v.field!r}])"
        raise Unsupported(f"field {fld}: value type {type(v).__name__}")


def _required(node: Any, fld: str, comp: _Compiler) -> set[str] | None:
    """Values of index field ``fld`` without which the condition cannot be true."""
    if isinstance(node, ConditionAND):
        best: set[str] | None = None
        for a in node.args:
            r = _required(a, fld, comp)
            if r is not None and (best is None or len(r) < len(best)):
                best = r
        return best
    if isinstance(node, ConditionOR):
        out: set[str] = set()
        for a in node.args:
            r = _required(a, fld, comp)
            if r is None:
                return None
            out |= r
        return out
    if isinstance(node, ConditionFieldEqualsValueExpression) and node.field == fld:
        try:
            vals = comp._expand(node.value, fld)
        except Unsupported:
            return None
        p = _Patterns()
        for v in vals:
            if not isinstance(v, SigmaString):
                return None
            p.add(v, lower=True)
        if fld == "Image":
            return p.required_basenames()
        if fld in PATH_INDEX:
            return p.required_dir1()
        if p.starts or p.ends or p.contains or p.regex or p.anything:
            return None
        return set(p.eq)
    return None


#: fields (nearly) every event of their kinds carries: no presence guard for them
_ALWAYS = PROCESS_FIELDS - {"ContainerId", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
                            "PYTHONPATH", "BASH_ENV", "HISTFILE", "HISTSIZE", "HISTFILESIZE",
                            "PROMPT_COMMAND", "SSH_CONNECTION", "GrandparentImage"} | {
    "Syscall", "type", "TargetFilename", "Success", "Operation", "DestinationIp",
    "DestinationPort", "Initiated", "Protocol"}


def _union(sets: list[set[str] | None]) -> set[str] | None:
    out: set[str] = set()
    for x in sets:
        if x is None:
            return None
        out |= x
    return out


def _presence(node: Any) -> set[str] | None:
    """Fields of which at least one must be present for the condition to be true."""
    if isinstance(node, ConditionAND):
        best: set[str] | None = None
        for a in node.args:
            r = _presence(a)
            if r is not None and (best is None or len(r) < len(best)):
                best = r
        return best
    if isinstance(node, ConditionOR):
        return _union([_presence(a) for a in node.args])
    if isinstance(node, ConditionFieldEqualsValueExpression):
        v = node.value
        if isinstance(v, SigmaNull) or (isinstance(v, SigmaExists) and not v.exists):
            return None
        if isinstance(v, SigmaString) and v.s == [SpecialChars.WILDCARD_MULTI]:
            return {node.field}
        return {node.field}
    return None


def compile_detection(
    rule: SigmaRule,
    kind: str,
    placeholders: dict[str, list[str]] | None = None,
) -> CompiledDetection:
    """Compile a pySigma rule's condition(s) into one Python predicate.

    Several conditions (a list under ``condition``) are OR-ed, as the specification says.
    Raises :class:`Unsupported` (with the reason) when the rule cannot run.
    """
    check_items(rule)
    comp = _Compiler(kind, placeholders)
    trees = []
    for cond in rule.detection.parsed_condition:
        trees.append(cond.parse())
    exprs = [comp.compile(t) for t in trees]
    expr = exprs[0] if len(exprs) == 1 else "(" + " or ".join(exprs) + ")"
    # a rule that needs one of a few rarely present fields first checks that one is
    # there (cheap), before any value is lowered
    present = _union([_presence(t) for t in trees])
    if present is not None and not present & _ALWAYS and len(present) <= 8:
        guard = " or ".join(f"{k!r} in f" for k in sorted(present))
        expr = f"({guard}) and {expr}"
    comp.ns["_n"] = lambda v: _norm(v, False)
    src = f"def _rule(f, L):\n    return {expr}\n"
    local: dict[str, Any] = {}
    exec(compile(src, f"<sigma {rule.title}>", "exec"), comp.ns, local)
    index = None
    guards: dict[str, frozenset[str]] = {}
    for fld in INDEX_FIELDS.get(kind, ()):
        req: set[str] | None = None
        allreq = [_required(t, fld, comp) for t in trees]
        if all(r is not None for r in allreq):
            req = set().union(*[r for r in allreq if r is not None])
        if req is not None:
            guards[fld] = frozenset(req)
            if index is None:
                index = (fld, frozenset(req))
    return CompiledDetection(
        fn=local["_rule"], source=src, fields=comp.fields, index=index,
        keyword=comp.keyword, ns=comp.ns, guards=guards,
    )
