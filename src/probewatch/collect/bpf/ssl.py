"""Records of sslsniff.bpf.c (``sslsniff.h``) -> ``tls:write`` / ``tls:read`` Events.

A TLS call longer than one chunk comes as several records (same tid and start
time, increasing offsets); :class:`SslDecoder` joins them into one Event when the
last chunk arrives. Fields (docs/detection.md, "TLS"): ``lib``, ``function``,
``direction`` (write/read), ``len`` (bytes the call moved), ``captured`` (bytes
copied), ``cut`` (len - captured: never shown), ``data`` (str, bytes that are not
UTF-8 kept by surrogateescape), ``latency_ns``, ``fd`` (-1: unknown), ``family``,
``saddr``, ``sport``, ``daddr``, ``dport`` (when the socket was seen), ``conn`` (the
TLS object's address), ``uid``, ``ppid``; ``lost_bytes`` when chunks were lost.

Example::

    dec = SslDecoder({1: ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "openssl")})
    ev = dec.decode(record_bytes)     # None until the call's last chunk
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ...event import Event
from .loader import HDR

EV_SSL = 32
CHUNK = 8192
MAX_CHUNKS = 512
# pw_ssl.flags
CUT, FAULT, SOCK, LAST = 1, 2, 4, 8
# stats slots
STAT_SSL_BYTES, STAT_SSL_CUT = 4, 5
# function ids (cookie & 0xff)
F_WRITE, F_READ, F_WRITE_EX, F_READ_EX, F_GNUTLS_SEND, F_GNUTLS_RECV = 1, 2, 3, 4, 5, 6
F_GO_WRITE, F_GO_READ = 7, 8
FUNC_IDS = {
    "SSL_write": F_WRITE, "SSL_read": F_READ, "SSL_write_ex": F_WRITE_EX,
    "SSL_read_ex": F_READ_EX, "gnutls_record_send": F_GNUTLS_SEND,
    "gnutls_record_recv": F_GNUTLS_RECV, "crypto/tls.(*Conn).Write": F_GO_WRITE,
    "crypto/tls.(*Conn).Read": F_GO_READ,
}
FUNC_NAMES = {v: k for k, v in FUNC_IDS.items()}
WRITES = frozenset({F_WRITE, F_WRITE_EX, F_GNUTLS_SEND, F_GO_WRITE})

# struct pw_ssl after the header, then struct pw_ssl_conn and padding
SSL = struct.Struct("<QQIIIIII")
CONN = struct.Struct("<iHHHH16s16s4x")
SSL_SIZE = HDR.size + SSL.size + CONN.size  # 152
_MAX_PENDING = 4096


def _addr(fam: int, raw: bytes) -> str:
    if fam == 2:
        return str(IPv4Address(raw[:4]))
    if fam == 10:
        return str(IPv6Address(raw))
    return ""


class SslDecoder:
    """sslsniff ring records -> Events. ``libs``: cookie >> 8 -> (path, library)."""

    def __init__(self, libs: dict[int, tuple[str, str]], probe: str = "bpf:sslsniff") -> None:
        self.libs = libs
        self.probe = probe
        self.unknown = 0
        self.lost_bytes = 0
        self._pending: dict[tuple[int, int], tuple[Event, list[bytes], int]] = {}
        self._stale: list[Event] = []

    def decode(self, rec: bytes) -> Event | None:
        if len(rec) < SSL_SIZE:
            self.unknown += 1
            return None
        (kind, _f, cpu, ts, pid, tid, ppid, uid, _gid, _pad, _cg, comm) = HDR.unpack_from(rec)
        if kind != EV_SSL:
            self.unknown += 1
            return None
        start, obj, cookie, flags, ln, captured, off, clen = SSL.unpack_from(rec, HDR.size)
        data = rec[SSL_SIZE : SSL_SIZE + clen]
        key = (tid, start)
        pend = self._pending.get(key)
        if pend is None:
            # a previous call of this thread whose last chunk never came: out with it
            for k in [k for k in self._pending if k[0] == tid]:
                old = self._finish(k)
                if old is not None:
                    self._stale.append(old)
            ev = self._new(rec, cpu, ts, pid, tid, ppid, uid, comm, start, obj, cookie,
                           flags, ln, captured)
            pend = (ev, [], 0)
        ev, parts, got = pend
        if off != got:  # chunks lost in between (ring buffer full): counted
            ev.fields["lost_bytes"] = ev.fields.get("lost_bytes", 0) + max(off - got, 0)
        if flags & FAULT:
            ev.fields.setdefault("faults", ["data"])
        parts.append(data)
        got = off + clen
        if flags & LAST or got >= captured:
            self._pending.pop(key, None)
            return self._complete(ev, parts, got)
        self._pending[key] = (ev, parts, got)
        if len(self._pending) > _MAX_PENDING:
            old = self._finish(next(iter(self._pending)))
            if old is not None:
                self._stale.append(old)
        return None

    def take_stale(self) -> list[Event]:
        """Events whose last chunk was lost, completed with what arrived."""
        out, self._stale = self._stale, []
        return out

    def _finish(self, key: tuple[int, int]) -> Event | None:
        pend = self._pending.pop(key, None)
        if pend is None:
            return None
        ev, parts, got = pend
        return self._complete(ev, parts, got)

    def _complete(self, ev: Event, parts: list[bytes], got: int) -> Event:
        raw = b"".join(parts)
        f = ev.fields
        missing = f["captured"] - len(raw)
        if missing > 0 and "faults" not in f:
            f["lost_bytes"] = missing
        if f.get("lost_bytes"):
            self.lost_bytes += f["lost_bytes"]
        f["data"] = raw.decode("utf-8", "surrogateescape")
        return ev

    def _new(self, rec: bytes, cpu: int, ts: int, pid: int, tid: int, ppid: int, uid: int,
             comm: bytes, start: int, obj: int, cookie: int, flags: int, ln: int,
             captured: int) -> Event:
        fd, fam, sport, dport, _p, sa, da = CONN.unpack_from(rec, HDR.size + SSL.size)
        fn = cookie & 0xFF
        path, lib = self.libs.get(cookie >> 8, ("?", "?"))
        fields: dict[str, Any] = {
            "ppid": ppid,
            "uid": uid,
            "lib": path,
            "library": lib,
            "function": FUNC_NAMES.get(fn, f"func{fn}"),
            "direction": "write" if fn in WRITES else "read",
            "len": ln,
            "captured": captured,
            "cut": ln - captured,
            "latency_ns": max(ts - start, 0),
            "conn": f"{obj:#x}",
            "fd": fd if flags & SOCK else -1,
        }
        if flags & SOCK and fam in (2, 10):
            fields.update(family=fam, saddr=_addr(fam, sa), sport=sport,
                          daddr=_addr(fam, da), dport=dport)
        elif flags & SOCK:
            fields["family"] = fam
        if flags & CUT:
            fields["truncated"] = ["data"]
        c = comm.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        name = "tls:write" if fn in WRITES else "tls:read"
        return Event(ts, cpu, pid, tid, c, name, self.probe, fields)


__all__ = ["SslDecoder", "FUNC_IDS", "FUNC_NAMES", "EV_SSL", "CHUNK", "MAX_CHUNKS",
           "STAT_SSL_BYTES", "STAT_SSL_CUT", "SSL_SIZE"]
