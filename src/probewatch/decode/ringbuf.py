"""Decode binary ring-buffer pages read from ``per_cpu/cpuN/trace_pipe_raw``.

A page (a *sub-buffer*, ``buffer_subbuf_size_kb``; 4 KiB by default) is::

    u64  timestamp          absolute time of the page (trace clock, ns for most clocks)
    long commit             low 30 bits: bytes of event data; bit 31 RB_MISSED_EVENTS
                            (events were lost before this page), bit 30 RB_MISSED_STORED
                            (the lost count is stored as a long right after the data)
    data[commit & 0x3fffffff]
    [long missed]           when RB_MISSED_STORED

followed by zero fill. Events are 4-byte aligned; each starts with a u32 whose low
``type_len`` bits (5) say what follows and whose high 27 bits are a time delta:

    1..28   data event, payload of type_len*4 bytes right after the header
    0       data event, payload length (+4) in the next u32, payload after it
    29      padding: time_delta == 0 -> the rest of the page; else a discarded
            event of length array[0] (its delta still counts: the next event's
            delta is relative to it, as libtraceevent also assumes)
    30      time extend: delta = time_delta | array[0] << 27 (8 bytes)
    31      absolute time stamp: time_delta | array[0] << 27; only 59 bits are
            stored, the top 5 come from the current time (kernel rb_fix_abs_ts)

The payload of a data event is a record whose layout is its event's ``format``
(see :mod:`probewatch.decode.format`); its first field ``common_type`` is the event id.

Example::

    layout = load_page_layout(inst_path)
    dec = PageDecoder(layout, {f.id: f for f in formats})
    out: list[Event] = []
    missed = dec.decode_page(os.read(fd, layout.page_size), cpu, out)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from itertools import accumulate, repeat
from operator import rshift
from typing import Any, NamedTuple

from ..errors import DecodeError
from ..event import Event, EventRun
from .format import (
    _CODES,
    DEFAULT_LAYOUT,
    KIND_ARRAY,
    KIND_INT,
    KIND_POINTER,
    EventFormat,
    PageLayout,
)

__all__ = ["PageDecoder", "run_layout", "PageHeader", "page_header", "iter_records",
           "RB_MISSED_EVENTS", "RB_MISSED_STORED", "COMMIT_MASK"]

RB_MISSED_EVENTS = 1 << 31  #: commit flag: events were lost before this page
RB_MISSED_STORED = 1 << 30  #: commit flag: the lost count follows the data
COMMIT_MASK = (1 << 30) - 1  #: commit bits that hold the data length
TS_SHIFT = 27
TS_MSB = 0xF8 << 56  #: top 5 bits an absolute TIME_STAMP event does not store
_ABS_WRAP = 1 << 59

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_PAD = bytes(16)  # appended so fixed-size header reads near the page end stay in bounds


class PageHeader(NamedTuple):
    """What a page header says: timestamp, data length, missed events (0, n or -1)."""

    ts: int
    size: int
    missed: int


def _header(page: Any, layout: PageLayout) -> tuple[int, int, int, int]:
    """-> (timestamp, data start, data end, missed) after checking the page is sane."""
    n = len(page)
    doff = layout.data_offset
    if n < doff:
        raise DecodeError(f"ring-buffer page is {n} bytes, shorter than its {doff}-byte header")
    ts = _U64.unpack_from(page, layout.ts_offset)[0]
    if layout.commit_size == 8:
        commit = _U64.unpack_from(page, layout.commit_offset)[0]
    else:
        commit = _U32.unpack_from(page, layout.commit_offset)[0]
    # Only the low 32 bits matter: the kernel adds RB_MISSED_EVENTS as the int
    # (1 << 31), which sign-extends into the upper half of a 64-bit local_t.
    size = commit & COMMIT_MASK
    end = doff + size
    if end > n:
        raise DecodeError(
            f"ring-buffer page truncated or corrupt: commit says {size} bytes of data, "
            f"the {n}-byte page holds {n - doff}"
        )
    missed = 0
    if commit & RB_MISSED_EVENTS:
        missed = -1
        if commit & RB_MISSED_STORED:
            ls = layout.commit_size
            if end + ls <= n:
                fmt = _U64 if ls == 8 else _U32
                missed = fmt.unpack_from(page, end)[0]
    return ts, doff, end, missed


def page_header(page: Any, layout: PageLayout = DEFAULT_LAYOUT) -> PageHeader:
    """Decode just the page header.

    Example::

        page_header(page).missed   # 0: nothing lost before this page
    """
    ts, doff, end, missed = _header(page, layout)
    return PageHeader(ts, end - doff, missed)


def _fix_abs_ts(abs_ts: int, cur: int) -> int:
    """Re-insert the 5 MSBs an absolute time stamp event does not store."""
    if cur & TS_MSB:
        abs_ts |= cur & TS_MSB
        if abs_ts < cur:
            abs_ts += _ABS_WRAP
    return abs_ts


def iter_records(
    page: Any, layout: PageLayout = DEFAULT_LAYOUT, type_offset: int = 0, type_size: int = 2
) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(ts, type_id, start, end)`` for every data event on ``page``.

    ``page[start:end]`` is the record (``end`` includes the ring buffer's 4-byte
    alignment). A straightforward reference walker: :class:`PageDecoder` is the fast
    one and the tests check that both agree. Raises DecodeError on a corrupt page.

    Example::

        for ts, type_id, start, end in iter_records(page):
            print(ts, type_id, end - start)
    """
    ts, pos, end, _missed = _header(page, layout)
    tl_mask = (1 << layout.type_len_bits) - 1
    shift = layout.type_len_bits
    tcode = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}.get(type_size)
    if tcode is None:
        raise DecodeError(f"common_type size {type_size} is not 1, 2, 4 or 8")
    while pos < end:
        if pos + 4 > end:
            raise DecodeError(f"corrupt page: event header at page offset {pos} crosses the end")
        hdr = _U32.unpack_from(page, pos)[0]
        tl = hdr & tl_mask
        delta = hdr >> shift
        if tl == layout.padding_type:
            if delta == 0:
                return  # the rest of the page is padding
            if pos + 8 > end:
                raise DecodeError(f"corrupt page: padding at page offset {pos} is cut off")
            length = _U32.unpack_from(page, pos + 4)[0]
            ts += delta
            nxt = pos + 4 + length
            if nxt > end:
                raise DecodeError(f"corrupt page: padding of {length} bytes runs past the data")
            pos = nxt
            continue
        if tl in (layout.time_extend_type, layout.time_stamp_type):
            if pos + 8 > end:
                raise DecodeError(f"corrupt page: time event at page offset {pos} is cut off")
            val = (_U32.unpack_from(page, pos + 4)[0] << TS_SHIFT) | delta
            ts = ts + val if tl == layout.time_extend_type else _fix_abs_ts(val, ts)
            pos += 8
            continue
        if tl > layout.data_max_type_len:
            raise DecodeError(f"corrupt page: unknown event type_len {tl}")
        if tl == 0:
            if pos + 8 > end:
                raise DecodeError(f"corrupt page: long event at page offset {pos} is cut off")
            length = _U32.unpack_from(page, pos + 4)[0]
            if length < 4:
                raise DecodeError(f"corrupt page: long event with length {length}")
            start = pos + 8
            stop = start + ((length - 4 + 3) & ~3)
        else:
            start = pos + 4
            stop = start + tl * 4
        if stop > end:
            raise DecodeError(
                f"corrupt page: event at page offset {pos} ({stop - pos} bytes) runs past "
                f"the end of the data"
            )
        if stop - start < type_offset + type_size:
            raise DecodeError(f"corrupt page: event at page offset {pos} has no room for its id")
        ts += delta
        type_id = struct.unpack_from(tcode, page, start + type_offset)[0]
        yield ts, type_id, start, stop
        pos = stop


def run_layout(fmt: EventFormat, payload: int
               ) -> tuple[str, tuple[str, ...], tuple[int, ...]] | None:
    """The struct code of one ring-buffer event of ``fmt`` whose payload is ``payload``
    bytes (its u32 header, then common_type, common_pid and the event's own fields, pad
    bytes between), the own field names in the order the code yields them after
    (header, common_type, common_pid), and per field how many values it takes (0: one
    integer; N: a fixed array of N integers, one value each). None when a page of such
    events cannot be decoded as columns: a field that is not an integer, a pointer or
    an array of integers (strings, bytes, dynamic fields), fields that overlap, or a
    record longer than the payload.

    Example::

        run_layout(getppid_format, 16)   # ('I H 2x i i 4x', ('__syscall_nr',), (0,))
    """
    ct = fmt.common("common_type")
    pid = fmt.common("common_pid")
    if ct is None or pid is None or pid.kind != KIND_INT:
        return None
    own = sorted(fmt.fields, key=lambda f: f.offset)  # the order decode() gives them
    parts = ["I"]
    counts: list[int] = []
    pos = 0
    for i, f in enumerate([ct, pid, *own]):
        if f.offset < pos:
            return None
        code = _CODES.get((f.elem_size, f.elem_signed))
        if code is None:
            return None
        if f.kind in (KIND_INT, KIND_POINTER):
            k, width = 0, f.elem_size
        elif f.kind == KIND_ARRAY and i >= 2 and f.count > 0:
            k, width = f.count, f.elem_size * f.count
        else:
            return None
        if f.offset > pos:
            parts.append(f"{f.offset - pos}x")
        parts.append(f"{k}{code}" if k else code)
        pos = f.offset + width
        if i >= 2:
            counts.append(k)
    if pos > payload:
        return None
    if payload > pos:
        parts.append(f"{payload - pos}x")
    return " ".join(parts), tuple(f.name for f in own), tuple(counts)


#: decode_page_runs per (id, type_len): (struct code of one event, field names,
#: values per event, "system:name", values per field or None when one each)
_RunSpec = tuple[str, tuple[str, ...], int, str, "tuple[int, ...] | None"]


class PageDecoder:
    """Decode ring-buffer pages into :class:`~probewatch.event.Event` records.

    ``formats`` maps event id -> EventFormat; events with other ids are skipped and
    counted in :attr:`unknown`. :attr:`last_missed` is what the last page said about
    lost events. One decoder serves every CPU of an instance.

    Example::

        dec = PageDecoder(layout, {fmt.id: fmt})
        out: list[Event] = []
        missed = dec.decode_page(page, cpu=0, out=out)
        out[0].event, out[0].fields     # ('syscalls:sys_enter_getppid', {'__syscall_nr': 110})
    """

    def __init__(self, layout: PageLayout, formats: dict[int, EventFormat]) -> None:
        self.layout = layout
        self.formats: dict[int, EventFormat] = dict(formats)
        self.unknown = 0
        self.last_missed = 0
        places: dict[tuple[int, int], str] = {}
        for f in self.formats.values():
            ct = f.common("common_type")
            if ct is None:
                raise DecodeError(f"format of {f.event_name} has no common_type field")
            places.setdefault((ct.offset, ct.size), f.event_name)
        if len(places) > 1:
            raise DecodeError(
                "formats disagree on where common_type is: "
                + ", ".join(f"{ev} (offset {o}, size {s})" for (o, s), ev in places.items())
            )
        toff, tsize = next(iter(places), (0, 2))
        tcode = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(tsize)
        if tcode is None:
            raise DecodeError(f"common_type size {tsize} is not 1, 2, 4 or 8")
        self.type_offset = toff
        self.type_size = tsize
        self._makers: dict[int, Callable[[Any, int, int, int, int], Event]] = {
            i: f.maker for i, f in self.formats.items()
        }
        # header u32 and the common_type right after it, in one unpack
        self._hdr_type = struct.Struct(f"<I{toff}x{tcode}" if toff else f"<I{tcode}").unpack_from
        self._type = struct.Struct(f"<{tcode}").unpack_from
        # decode_page_runs: (id, type_len) -> (unit code, names, values per event, event)
        self._run_specs: dict[tuple[int, int], _RunSpec | None] = {}
        self._run_structs: dict[tuple[int, int, int], Callable[..., tuple[Any, ...]]] = {}
        tl_mask = (1 << layout.type_len_bits) - 1
        self._tl_table = bytes(b & tl_mask for b in range(256))

    # -- the hot path ------------------------------------------------------------

    def _run_spec(self, typ: int, tl: int) -> _RunSpec | None:
        fmt = self.formats.get(typ)
        spec = None
        if fmt is not None and self.layout.type_len_bits <= 8:
            lay = run_layout(fmt, tl * 4)
            if lay is not None and tl * 4 >= fmt.min_size:
                code, names, counts = lay
                spec = (code, names, 3 + sum(k or 1 for k in counts), fmt.event_name,
                        counts if any(counts) else None)
        self._run_specs[(typ, tl)] = spec
        return spec

    def decode_page_runs(self, page: Any, cpu: int, out: list[Any],
                         ids: set[int] | frozenset[int] | None = None) -> int:
        """Like :meth:`decode_page`, but a page that holds events of one type only (an id
        in ``ids``, or any id when None), all of one thread, with integer and pointer
        fields only and nothing else between them (no time extends, no padding), becomes
        a single :class:`~probewatch.event.EventRun`, decoded as columns with one
        precompiled struct for the whole page. Other pages are decoded as by
        :meth:`decode_page`. The result is the same events either way.

        Example::

            out: list = []
            dec.decode_page_runs(page, 0, out)
            out[0].tss[:2], out[0].cols    # ([5066.., 5066..], [(110, 110, ...)])
        """
        layout = self.layout
        ts, pos, end, missed = _header(page, layout)
        n = end - pos
        if type(page) is not bytes:
            page = bytes(page)
        if n >= 8:
            hdr = _U32.unpack_from(page, pos)[0]
            tl = hdr & ((1 << layout.type_len_bits) - 1)
            if 0 < tl <= layout.data_max_type_len:
                stride = 4 + (tl << 2)
                k, rem = divmod(n, stride)
                typ = self._type(page, pos + 4 + self.type_offset)[0]
                if not rem and (ids is None or typ in ids):
                    key = (typ, tl)
                    if key in self._run_specs:
                        spec = self._run_specs[key]
                    else:
                        spec = self._run_spec(typ, tl)
                    if spec is not None and (
                        page[pos:end:stride].translate(self._tl_table) == bytes((tl,)) * k
                    ):
                        code, names, m, event, counts = spec
                        skey = (typ, tl, k)
                        unpack = self._run_structs.get(skey)
                        if unpack is None:
                            if len(self._run_structs) > 1024:
                                self._run_structs.clear()
                            unpack = struct.Struct("<" + " ".join([code] * k)).unpack_from
                            self._run_structs[skey] = unpack
                        flat = unpack(page, pos)
                        tids = flat[2::m]
                        if flat[1::m].count(typ) == k and tids.count(tids[0]) == k:
                            tss = list(accumulate(
                                map(rshift, flat[0::m], repeat(layout.type_len_bits)),
                                initial=ts))
                            del tss[0]
                            self.last_missed = missed
                            out.append(EventRun(cpu, tids[0], event, tss, names,
                                                [flat[j::m] for j in range(3, m)], counts))
                            return missed
        return self.decode_page(page, cpu, out)

    def decode_page(self, page: Any, cpu: int, out: list[Any]) -> int:
        """Append one Event per data event on ``page`` to ``out``.

        Returns the number of events the kernel reports lost before this page: 0
        if none, -1 if the loss flag is set but no count was stored. On a corrupt
        page raises DecodeError; records decoded before the corruption stay in
        ``out``.
        """
        layout = self.layout
        ts, pos, end, missed = _header(page, layout)
        self.last_missed = missed
        buf = bytes(page) + _PAD
        tl_mask = (1 << layout.type_len_bits) - 1
        shift = layout.type_len_bits
        max_tl = layout.data_max_type_len
        pad_t = layout.padding_type
        ext_t = layout.time_extend_type
        abs_t = layout.time_stamp_type
        toff = self.type_offset
        tneed = toff + self.type_size
        hdr_type = self._hdr_type
        u32 = _U32.unpack_from
        get = self._makers.get
        ap = out.append
        unknown = 0
        try:
            while pos < end:
                hdr, typ = hdr_type(buf, pos)
                tl = hdr & tl_mask
                if 0 < tl <= max_tl:
                    ts += hdr >> shift
                    d = pos + 4
                    pos = d + (tl << 2)
                    if pos > end:
                        _overrun(d - 4, pos - d + 4)
                    mk = get(typ)
                    if mk is None:
                        unknown += 1
                    else:
                        ap(mk(buf, d, pos, ts, cpu))
                elif tl == 0:
                    length = u32(buf, pos + 4)[0]
                    d = pos + 8
                    nxt = d + ((length - 1) & ~3)  # d + round_up(length - 4, 4)
                    if length < 4 or nxt > end:
                        _bad_long(pos, length)
                    ts += hdr >> shift
                    if nxt - d < tneed:
                        _bad_long(pos, length)
                    typ = self._type(buf, d + toff)[0]
                    mk = get(typ)
                    pos = nxt
                    if mk is None:
                        unknown += 1
                    else:
                        ap(mk(buf, d, nxt, ts, cpu))
                elif tl == ext_t:
                    if pos + 8 > end:
                        _cut(pos, "time extend")
                    ts += (u32(buf, pos + 4)[0] << TS_SHIFT) | (hdr >> shift)
                    pos += 8
                elif tl == abs_t:
                    if pos + 8 > end:
                        _cut(pos, "time stamp")
                    ts = _fix_abs_ts((u32(buf, pos + 4)[0] << TS_SHIFT) | (hdr >> shift), ts)
                    pos += 8
                elif tl == pad_t:
                    delta = hdr >> shift
                    if delta == 0:
                        break  # the rest of the page is padding
                    if pos + 8 > end:
                        _cut(pos, "padding")
                    nxt = pos + 4 + u32(buf, pos + 4)[0]
                    if nxt > end:
                        _overrun(pos, nxt - pos)
                    ts += delta
                    pos = nxt
                else:
                    raise DecodeError(
                        f"corrupt page: event at page offset {pos} has unknown type_len {tl}"
                    )
        except struct.error as e:  # pragma: no cover - bounds are checked above
            raise DecodeError(f"corrupt page: {e}") from None
        finally:
            self.unknown += unknown
        return missed

    def count_page(self, page: Any, counts: dict[int, int] | None = None) -> dict[int, int]:
        """Count data events per event id (every id, known or not); no decoding.

        Adds into ``counts`` when given and returns it. :attr:`last_missed` is set
        as by :meth:`decode_page`.

        Example::

            totals: dict[int, int] = {}
            dec.count_page(page, totals)     # {452: 255}
        """
        if counts is None:
            counts = {}
        layout = self.layout
        ts, pos, end, missed = _header(page, layout)
        self.last_missed = missed
        buf = bytes(page) + _PAD
        tl_mask = (1 << layout.type_len_bits) - 1
        max_tl = layout.data_max_type_len
        pad_t = layout.padding_type
        tneed = self.type_offset + self.type_size
        hdr_type = self._hdr_type
        u32 = _U32.unpack_from
        cget = counts.get
        while pos < end:
            hdr, typ = hdr_type(buf, pos)
            tl = hdr & tl_mask
            if 0 < tl <= max_tl:
                pos += 4 + (tl << 2)
                if pos > end:
                    _overrun(pos - 4 - (tl << 2), 4 + (tl << 2))
                counts[typ] = cget(typ, 0) + 1
            elif tl == 0:
                length = u32(buf, pos + 4)[0]
                d = pos + 8
                nxt = d + ((length - 1) & ~3)
                if length < 4 or nxt > end or nxt - d < tneed:
                    _bad_long(pos, length)
                typ = self._type(buf, d + self.type_offset)[0]
                counts[typ] = cget(typ, 0) + 1
                pos = nxt
            elif tl == pad_t:
                if hdr >> layout.type_len_bits == 0:
                    break
                if pos + 8 > end:
                    _cut(pos, "padding")
                nxt = pos + 4 + u32(buf, pos + 4)[0]
                if nxt > end:
                    _overrun(pos, nxt - pos)
                pos = nxt
            elif tl == layout.time_extend_type or tl == layout.time_stamp_type:
                if pos + 8 > end:
                    _cut(pos, "time event")
                pos += 8
            else:
                raise DecodeError(f"corrupt page: unknown event type_len {tl}")
        return counts

    def iter_records(self, page: Any) -> Iterator[tuple[int, int, int, int]]:
        """:func:`iter_records` with this decoder's layout and common_type position."""
        return iter_records(page, self.layout, self.type_offset, self.type_size)


def _overrun(pos: int, length: int) -> None:
    raise DecodeError(
        f"corrupt page: event at page offset {pos} ({length} bytes) runs past the end of the data"
    )


def _bad_long(pos: int, length: int) -> None:
    raise DecodeError(f"corrupt page: long event at page offset {pos} has bad length {length}")


def _cut(pos: int, what: str) -> None:
    raise DecodeError(f"corrupt page: {what} at page offset {pos} is cut off by the end of data")
