"""The fleet wire format: subjects, message ids and one compressed batch per message.

A batch is one JetStream message on ``probewatch.<host>.<kind>`` (kind: ``events``,
``alerts``, ``processes`` or ``status``) with the header ``Nats-Msg-Id:
<host>:<boot id>:<seq>`` (the stream stores a retried batch once) and the body
``b"PW1z" + zlib(msgpack([meta, records]))``. ``meta`` says who sent it (host, boot
id, sequence, kind, the agent's clock offset, its drop counters); ``records`` are

- events: ``[ts, cpu, pid, tid, comm, event, probe, fields]`` lists (an Event; bytes
  stay bytes; a string holding undecodable bytes is a msgpack extension of its raw
  bytes, so the collector gets the exact string back);
- alerts: the ``alerts`` capture row of each alert (:func:`probewatch.detect.pipeline.
  alert_row`, JSON-ready);
- processes: process-table records (:meth:`probewatch.analyze.proctable.Process.
  to_dict`);
- status: none (a heartbeat: the meta is the message).

Decoding never trusts the sender: a body that is not a batch, too large once inflated,
or with records of the wrong shape raises :class:`WireError`.

Example::

    body = encode_batch({"host": "web1", "boot": b, "seq": 7, "kind": "events"},
                        [event_record(ev)])
    meta, records = decode_batch(body)
    [record_event(r) for r in records]
"""

from __future__ import annotations

import os
import re
import zlib
from typing import Any

from ..errors import ProbewatchError
from ..event import Event

__all__ = [
    "KINDS", "STREAM", "PREFIX", "MAGIC", "WireError", "host_token", "boot_id",
    "subject", "msg_id", "parse_msg_id", "encode_batch", "decode_batch", "event_record",
    "record_event",
]

KINDS = ("events", "alerts", "processes", "status")
#: the stream every agent publishes into (``probewatch fleet init`` creates it)
STREAM = "PROBEWATCH"
PREFIX = "probewatch"
MAGIC = b"PW1z"
#: the most a batch may inflate to (a zip bomb stops here)
MAX_INFLATED = 64 << 20
_EXT_SURROGATE = 1


class WireError(ProbewatchError):
    """A message that is not a well-formed probewatch batch."""


_BAD = re.compile(r"[^A-Za-z0-9_-]")


def host_token(name: str) -> str:
    """A host name as one NATS subject token: letters, digits, ``-`` and ``_`` (every
    other character, the dots of a domain name too, becomes ``_``).

    >>> host_token("web1.example.com")
    'web1_example_com'
    """
    t = _BAD.sub("_", name.strip())[:64]
    return t or "unknown"


def boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    """This boot's id (the kernel's random boot_id, dashes dropped)."""
    try:
        with open(path) as f:
            return f.read().strip().replace("-", "") or "noboot"
    except OSError:
        return "noboot"


def subject(host: str, kind: str) -> str:
    return f"{PREFIX}.{host}.{kind}"


def msg_id(host: str, boot: str, seq: int) -> str:
    return f"{host}:{boot}:{seq}"


def parse_msg_id(text: str) -> tuple[str, str, int]:
    """``host:boot:seq`` -> (host, boot, seq); WireError when malformed."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit():
        raise WireError(f"bad Nats-Msg-Id {text[:80]!r}")
    return parts[0], parts[1], int(parts[2])


def event_record(ev: Event) -> list[Any]:
    return [ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, ev.event, ev.probe, ev.fields]


def record_event(r: Any) -> Event:
    """An events record back into an Event (WireError when it has the wrong shape)."""
    if (type(r) is not list or len(r) != 8 or type(r[0]) is not int
            or type(r[1]) is not int or type(r[2]) is not int or type(r[3]) is not int
            or type(r[4]) is not str or type(r[5]) is not str or type(r[6]) is not str
            or type(r[7]) is not dict):
        raise WireError("an event record has the wrong shape")
    return Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])


_encoder: Any = None
_decoder: Any = None


def _codec() -> tuple[Any, Any]:
    global _encoder, _decoder
    if _encoder is None:
        import msgspec

        def ext_hook(code: int, data: memoryview) -> Any:
            if code == _EXT_SURROGATE:
                return bytes(data).decode("utf-8", "surrogateescape")
            raise WireError(f"unknown msgpack extension {code}")

        _encoder = msgspec.msgpack.Encoder()
        _decoder = msgspec.msgpack.Decoder(ext_hook=ext_hook)
    return _encoder, _decoder


def _escape_surrogates(v: Any) -> Any:
    """Strings that UTF-8 cannot encode (undecodable bytes kept by surrogateescape)
    become msgpack extensions of their raw bytes; the rest is unchanged."""
    import msgspec

    if isinstance(v, str):
        try:
            v.encode("utf-8")
            return v
        except UnicodeEncodeError:
            return msgspec.msgpack.Ext(_EXT_SURROGATE,
                                       v.encode("utf-8", "surrogateescape"))
    if isinstance(v, list | tuple):
        return [_escape_surrogates(x) for x in v]
    if isinstance(v, dict):
        return {_escape_surrogates(k) if isinstance(k, str) else k: _escape_surrogates(x)
                for k, x in v.items()}
    return v


def encode_batch(meta: dict[str, Any], records: list[Any], level: int = 1) -> bytes:
    """One message body: MAGIC + zlib(msgpack([meta, records]))."""
    enc, _ = _codec()
    try:
        raw = enc.encode([meta, records])
    except UnicodeEncodeError:
        raw = enc.encode([meta, _escape_surrogates(records)])
    return MAGIC + zlib.compress(raw, level)


def raw_size(records: list[Any]) -> int:
    """Bytes of the records before compression (the 256 KB batch limit)."""
    enc, _ = _codec()
    try:
        return len(enc.encode(records))
    except UnicodeEncodeError:
        return len(enc.encode(_escape_surrogates(records)))


def decode_batch(body: bytes) -> tuple[dict[str, Any], list[Any]]:
    """A message body -> (meta, records); WireError for anything else."""
    import msgspec

    if not body.startswith(MAGIC):
        raise WireError("not a probewatch batch (bad magic)")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(memoryview(body)[len(MAGIC):], MAX_INFLATED)
    except zlib.error as e:
        raise WireError(f"bad compressed batch ({e})") from None
    if d.unconsumed_tail:
        raise WireError(f"batch inflates beyond {MAX_INFLATED} bytes")
    if not d.eof:
        raise WireError("truncated batch")
    _, dec = _codec()
    try:
        obj = dec.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise WireError(f"bad batch encoding ({e})") from None
    if (type(obj) is not list or len(obj) != 2 or type(obj[0]) is not dict
            or type(obj[1]) is not list):
        raise WireError("a batch is not [meta, records]")
    meta, records = obj
    for k, t in (("host", str), ("boot", str), ("seq", int), ("kind", str)):
        if type(meta.get(k)) is not t:
            raise WireError(f"batch meta lacks {k}")
    if meta["kind"] not in KINDS:
        raise WireError(f"unknown batch kind {meta['kind'][:20]!r}")
    return meta, records


def default_host() -> str:
    return host_token(os.uname().nodename)
