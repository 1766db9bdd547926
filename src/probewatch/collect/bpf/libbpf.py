"""A thin ctypes wrapper over libbpf.so.1 (Debian: ``apt-get install libbpf1``).

Only what probewatch needs: open an object from memory, set .rodata and map sizes
before load, load (the verifier's log lands in the raised error), attach programs
(tracepoint, uprobe; every attachment is an fd-based link the kernel drops when it
is closed), look up maps and poll a BPF ring buffer.

libbpf's own log (the verifier output included) is routed through
:func:`libbpf_set_print` into a per-process buffer; :class:`BpfLoadError` carries its
last lines. ctypes callbacks are kept referenced for as long as libbpf may call them.

Example::

    with BpfObject.open(data, "syscalls") as obj:
        obj.rodata["filter_pids"] = 1
        obj.load()
        obj.attach_tracepoint("pw_raw_enter", "raw_syscalls", "sys_enter")
        rb = obj.ring_buffer("events", lambda b: print(len(b)))
        rb.poll(100)
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno as _errno
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import FeatureUnavailable, KernelRejected, ProbewatchError

LIB_NAME = "libbpf.so.1"

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
LIBBPF_STRICT_ALL = 0xFFFFFFFF

# BTF kinds
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


class BpfLibError(ProbewatchError):
    """A libbpf call failed. ``errno`` and the last lines of libbpf's log are kept."""

    def __init__(self, message: str, err: int = 0, log: str = "") -> None:
        self.errno = err
        self.log = log
        text = message
        if err:
            text += f": {_errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
        if log:
            text += "\n" + log
        super().__init__(text)


class BpfLoadError(BpfLibError, KernelRejected):
    """bpf_object__load failed: the kernel (usually the verifier) rejected a program."""


class BpfOpenError(BpfLibError):
    """The object bytes are not a loadable BPF ELF object."""


# ---------------------------------------------------------------- the library

#: threads that close links at once in :meth:`BpfObject.detach`
DETACH_THREADS = 128
_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None
_lib_lock = threading.Lock()

PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

# the last lines libbpf printed (WARN/INFO; DEBUG too when PROBEWATCH_LIBBPF_DEBUG=1)
_log: collections.deque[str] = collections.deque(maxlen=400)
_print_cb: Any = None  # keeps the ctypes callback alive for the life of the process
_print_buf: Any = None
_print_debug = os.environ.get("PROBEWATCH_LIBBPF_DEBUG") == "1"


def _on_print(level: int, fmt: bytes | None, va_list: int | None) -> int:
    try:
        if level == LIBBPF_DEBUG and not _print_debug:
            return 0
        assert _libc is not None
        global _print_buf
        if _print_buf is None:
            # one buffer, large enough for a whole verifier log (a va_list is consumed
            # by one vsnprintf, so there is no retry with a bigger one)
            _print_buf = ctypes.create_string_buffer(1 << 21)
        buf = _print_buf
        n = _libc.vsnprintf(buf, len(buf), fmt, ctypes.c_void_p(va_list))
        text = buf.value.decode(errors="replace") if n >= 0 else ""
        for line in text.splitlines():
            _log.append(line)
    except Exception:  # never let an exception escape into C
        pass
    return 0


def _declare(lib: ctypes.CDLL) -> None:
    vp, cp, i, u32, sz = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32,
                          ctypes.c_size_t)
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "libbpf_set_print": (vp, [PRINT_FN]),
        "libbpf_set_strict_mode": (i, [ctypes.c_uint]),
        "libbpf_num_possible_cpus": (i, []),
        "bpf_object__open_mem": (vp, [vp, sz, vp]),
        "bpf_object__load": (i, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__btf": (vp, [vp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_object__find_program_by_name": (vp, [vp, cp]),
        "bpf_object__next_map": (vp, [vp, vp]),
        "bpf_object__next_program": (vp, [vp, vp]),
        "bpf_map__name": (cp, [vp]),
        "bpf_map__fd": (i, [vp]),
        "bpf_map__set_max_entries": (i, [vp, u32]),
        "bpf_map__reuse_fd": (i, [vp, i]),
        "bpf_map__max_entries": (u32, [vp]),
        "bpf_map__key_size": (u32, [vp]),
        "bpf_map__value_size": (u32, [vp]),
        "bpf_map__type": (i, [vp]),
        "bpf_map__initial_value": (vp, [vp, ctypes.POINTER(sz)]),
        "bpf_map__set_initial_value": (i, [vp, vp, sz]),
        "bpf_program__name": (cp, [vp]),
        "bpf_program__set_autoload": (i, [vp, ctypes.c_bool]),
        "bpf_program__fd": (i, [vp]),
        "bpf_prog_test_run_opts": (i, [i, vp]),
        "bpf_program__attach_tracepoint_opts": (vp, [vp, cp, cp, vp]),
        "bpf_program__attach_raw_tracepoint": (vp, [vp, cp]),
        "bpf_program__attach_trace": (vp, [vp]),
        "bpf_program__attach_uprobe_opts": (vp, [vp, i, cp, sz, vp]),
        "bpf_link__destroy": (i, [vp]),
        "ring_buffer__new": (vp, [i, SAMPLE_FN, vp, vp]),
        "ring_buffer__poll": (i, [vp, i]),
        "ring_buffer__consume": (i, [vp]),
        "ring_buffer__free": (None, [vp]),
        "ring_buffer__epoll_fd": (i, [vp]),
        "bpf_map_lookup_elem": (i, [i, vp, vp]),
        "bpf_map_update_elem": (i, [i, vp, vp, ctypes.c_uint64]),
        "bpf_map_delete_elem": (i, [i, vp]),
        "bpf_map_get_next_key": (i, [i, vp, vp]),
        "btf__find_by_name_kind": (i, [vp, cp, u32]),
        "btf__type_by_id": (vp, [vp, u32]),
        "btf__name_by_offset": (cp, [vp, u32]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def lib() -> ctypes.CDLL:
    """The loaded libbpf (once per process); FeatureUnavailable when it is missing."""
    global _lib, _libc, _print_cb
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        try:
            handle = ctypes.CDLL(os.environ.get("PROBEWATCH_LIBBPF", LIB_NAME), use_errno=True)
        except OSError as e:
            raise FeatureUnavailable(
                f"cannot load {LIB_NAME} ({e}): install libbpf 1.x "
                "(Debian/Ubuntu: apt-get install libbpf1; Fedora: dnf install libbpf)"
            ) from None
        try:
            _declare(handle)
        except AttributeError as e:
            raise FeatureUnavailable(f"{LIB_NAME} is too old (missing {e}); need libbpf >= 1.0")\
                from None
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.vsnprintf.restype = ctypes.c_int
        libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                   ctypes.c_void_p]
        _libc = libc
        _print_cb = PRINT_FN(_on_print)
        handle.libbpf_set_print(_print_cb)
        # libbpf 1.x is always strict; on 0.x this turns it on. RLIMIT_MEMLOCK is left
        # alone: kernels >= 5.11 account BPF memory to the memory cgroup.
        handle.libbpf_set_strict_mode(LIBBPF_STRICT_ALL)
        _lib = handle
        return handle


def log_tail(n: int = 25, since: int = 0) -> str:
    """The last ``n`` lines libbpf logged (after mark ``since`` from :func:`log_mark`)."""
    lines = list(_log)[since:] if since <= len(_log) else []
    return "\n".join(lines[-n:])


def log_mark() -> int:
    """A mark for :func:`log_tail`: lines logged after it belong to the next operation."""
    _log.clear()
    return 0


def num_possible_cpus() -> int:
    n = int(lib().libbpf_num_possible_cpus())
    if n <= 0:
        raise BpfLibError("libbpf_num_possible_cpus failed", -n)
    return n


def _err() -> int:
    return ctypes.get_errno() or _errno.EINVAL


# ---------------------------------------------------------------- objects


class _OpenOpts(ctypes.Structure):
    # struct bpf_object_open_opts of libbpf 1.0/1.1 (sz makes it forward compatible)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_pad1", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


class _TracepointOpts(ctypes.Structure):
    # struct bpf_tracepoint_opts (libbpf >= 0.8)
    _fields_ = [("sz", ctypes.c_size_t), ("bpf_cookie", ctypes.c_uint64)]


class _UprobeOpts(ctypes.Structure):
    # struct bpf_uprobe_opts (libbpf 1.0/1.1)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ref_ctr_offset", ctypes.c_size_t),
        ("bpf_cookie", ctypes.c_uint64),
        ("retprobe", ctypes.c_bool),
        ("func_name", ctypes.c_char_p),
        ("attach_mode", ctypes.c_int),
    ]


class _TestRunOpts(ctypes.Structure):
    # struct bpf_test_run_opts (libbpf 1.0/1.1)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class Rodata:
    """The .rodata variables of an opened (not yet loaded) object, by name.

    Offsets and sizes come from the object's BTF (DATASEC ".rodata"); values are
    written into libbpf's mmaped initial image, which load() hands to the kernel.
    """

    def __init__(self, obj: BpfObject) -> None:
        self._obj = obj
        self._vars: dict[str, tuple[int, int]] = {}
        self._base = 0
        self._size = 0
        m = obj._find_map_ptr(".rodata")
        if m is None:
            return
        L = lib()
        sz = ctypes.c_size_t(0)
        base = L.bpf_map__initial_value(m, ctypes.byref(sz))
        if not base:
            return
        self._base, self._size = base, sz.value
        btf = L.bpf_object__btf(obj._ptr)
        if not btf:
            return
        sec_id = L.btf__find_by_name_kind(btf, b".rodata", BTF_KIND_DATASEC)
        if sec_id < 0:
            return
        t = L.btf__type_by_id(btf, sec_id)
        # struct btf_type { u32 name_off; u32 info; u32 size; } + vlen * btf_var_secinfo
        hdr = (ctypes.c_uint32 * 3).from_address(t)
        vlen = hdr[1] & 0xFFFF
        infos = (ctypes.c_uint32 * (3 * vlen)).from_address(t + 12)
        for j in range(vlen):
            type_id, off, size = infos[3 * j], infos[3 * j + 1], infos[3 * j + 2]
            vt = L.btf__type_by_id(btf, type_id)
            name_off = ctypes.c_uint32.from_address(vt).value
            name = (L.btf__name_by_offset(btf, name_off) or b"").decode()
            self._vars[name] = (off, size)

    def names(self) -> list[str]:
        return sorted(self._vars)

    def _slot(self, name: str) -> tuple[int, int]:
        if self._obj._loaded:
            raise BpfLibError(f".rodata is read-only after load (setting {name!r})")
        try:
            return self._vars[name]
        except KeyError:
            raise BpfLibError(
                f"{self._obj.name}: no .rodata variable {name!r} (have: {', '.join(self.names())})"
            ) from None

    def __setitem__(self, name: str, value: int | bool | bytes) -> None:
        off, size = self._slot(name)
        if off + size > self._size:
            raise BpfLibError(f".rodata variable {name!r} lies outside the map image")
        if isinstance(value, bytes):
            raw = value[:size].ljust(size, b"\0")
        else:
            raw = int(value).to_bytes(size, "little", signed=int(value) < 0)
        ctypes.memmove(self._base + off, raw, size)

    def __getitem__(self, name: str) -> bytes:
        off, size = self._slot(name)
        return ctypes.string_at(self._base + off, size)

    def __contains__(self, name: object) -> bool:
        return name in self._vars


class Link:
    """One attachment (an fd-based bpf_link); :meth:`destroy` detaches it."""

    def __init__(self, ptr: int, what: str) -> None:
        self._ptr: int | None = ptr
        self.what = what

    def destroy(self) -> None:
        if self._ptr:
            lib().bpf_link__destroy(self._ptr)
            self._ptr = None


class BpfMap:
    """A map of a loaded object: fd, sizes, and simple element access."""

    def __init__(self, ptr: int, name: str) -> None:
        L = lib()
        self._ptr = ptr
        self.name = name
        self.key_size = int(L.bpf_map__key_size(ptr))
        self.value_size = int(L.bpf_map__value_size(ptr))
        self.type = int(L.bpf_map__type(ptr))

    @property
    def fd(self) -> int:
        return int(lib().bpf_map__fd(self._ptr))

    def _vbuf(self, percpu: bool) -> ctypes.Array[ctypes.c_char]:
        n = self.value_size
        if percpu:
            n = ((n + 7) // 8) * 8 * num_possible_cpus()
        return ctypes.create_string_buffer(n)

    def lookup(self, key: bytes, percpu: bool = False) -> bytes | None:
        """The value (per-CPU maps: every CPU's value, 8-aligned, back to back) or None."""
        v = self._vbuf(percpu)
        k = ctypes.create_string_buffer(key, self.key_size)
        if lib().bpf_map_lookup_elem(self.fd, k, v) != 0:
            err = ctypes.get_errno()
            if err == _errno.ENOENT:
                return None
            raise BpfLibError(f"lookup in map {self.name}", err)
        return v.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        k = ctypes.create_string_buffer(key, self.key_size)
        v = ctypes.create_string_buffer(value, len(value))
        if lib().bpf_map_update_elem(self.fd, k, v, flags) != 0:
            raise BpfLibError(f"update of map {self.name}", _err())

    def delete(self, key: bytes) -> bool:
        k = ctypes.create_string_buffer(key, self.key_size)
        return lib().bpf_map_delete_elem(self.fd, k) == 0

    def keys(self) -> Iterator[bytes]:
        L = lib()
        fd = self.fd
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            if L.bpf_map_get_next_key(fd, cur, nxt) != 0:
                return
            key = nxt.raw
            yield key
            cur = ctypes.create_string_buffer(key, self.key_size)

    def items(self, percpu: bool = False) -> Iterator[tuple[bytes, bytes]]:
        for k in list(self.keys()):
            v = self.lookup(k, percpu)
            if v is not None:
                yield k, v


class RingBuffer:
    """A libbpf ring_buffer over one BPF_MAP_TYPE_RINGBUF map.

    ``callback(data: bytes)`` gets each record (a copy); returning nothing continues.
    """

    def __init__(self, map_fd: int, callback: Callable[[bytes], object],
                 raw: Callable[[int, int], object] | None = None) -> None:
        L = lib()
        string_at = ctypes.string_at
        self._exc: BaseException | None = None
        if raw is not None:
            rawcb = raw

            def sample(ctx: int | None, data: int | None, size: int) -> int:
                try:
                    rawcb(data or 0, size)
                except BaseException as e:  # noqa: B036 - must not unwind through C
                    self._exc = e
                    return -_errno.ECANCELED
                return 0
        else:
            cb = callback

            def sample(ctx: int | None, data: int | None, size: int) -> int:
                try:
                    cb(string_at(data or 0, size))
                except BaseException as e:  # noqa: B036 - must not unwind through C
                    self._exc = e
                    return -_errno.ECANCELED
                return 0

        self._cb = SAMPLE_FN(sample)  # referenced for as long as the ring buffer lives
        ptr = L.ring_buffer__new(map_fd, self._cb, None, None)
        if not ptr:
            raise BpfLibError("ring_buffer__new", _err(), log_tail(5))
        self._ptr: int | None = ptr

    def _check(self, n: int, what: str) -> int:
        if self._exc is not None:
            e, self._exc = self._exc, None
            raise e
        if n < 0 and n != -_errno.EINTR:
            raise BpfLibError(what, -n)
        return max(n, 0)

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for data, deliver what is there; returns records delivered."""
        if not self._ptr:
            return 0
        return self._check(int(lib().ring_buffer__poll(self._ptr, timeout_ms)),
                           "ring_buffer__poll")

    def consume(self) -> int:
        """Deliver everything available now without waiting."""
        if not self._ptr:
            return 0
        return self._check(int(lib().ring_buffer__consume(self._ptr)), "ring_buffer__consume")

    def epoll_fd(self) -> int:
        return int(lib().ring_buffer__epoll_fd(self._ptr)) if self._ptr else -1

    def free(self) -> None:
        if self._ptr:
            lib().ring_buffer__free(self._ptr)
            self._ptr = None


class BpfObject:
    """One BPF ELF object: open (from bytes) -> configure -> load -> attach -> close.

    Closing destroys every link and ring buffer made through it, then the object
    (its programs and maps). Use it as a context manager.
    """

    def __init__(self, ptr: int, name: str, keep: Any) -> None:
        self._ptr: int | None = ptr
        self.name = name
        self._keep = keep  # the ELF bytes libbpf may still point into
        self._loaded = False
        self._links: list[Link] = []
        self._rbs: list[RingBuffer] = []
        self._rodata: Rodata | None = None

    @classmethod
    def open(cls, data: bytes, name: str) -> BpfObject:
        """Open an object from its ELF bytes; BpfOpenError when they are not one."""
        L = lib()
        buf = ctypes.create_string_buffer(data, len(data))
        opts = _OpenOpts()
        opts.sz = ctypes.sizeof(_OpenOpts)
        cname = name.encode()
        opts.object_name = cname
        log_mark()
        ctypes.set_errno(0)
        ptr = L.bpf_object__open_mem(buf, len(data), ctypes.byref(opts))
        if not ptr:
            raise BpfOpenError(
                f"cannot open BPF object {name!r} ({len(data)} bytes)", _err(), log_tail(5)
            )
        return cls(ptr, name, (buf, cname))

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _need(self) -> int:
        if not self._ptr:
            raise BpfLibError(f"BPF object {self.name!r} is closed")
        return self._ptr

    def _find_map_ptr(self, name: str) -> int | None:
        L = lib()
        p = L.bpf_object__find_map_by_name(self._need(), name.encode())
        if p:
            return int(p)
        # internal maps are named "<obj prefix>.rodata"; match on the suffix
        m = L.bpf_object__next_map(self._ptr, None)
        while m:
            mn = (L.bpf_map__name(m) or b"").decode()
            if mn == name or (name.startswith(".") and mn.endswith(name)):
                return int(m)
            m = L.bpf_object__next_map(self._ptr, m)
        return None

    @property
    def rodata(self) -> Rodata:
        if self._rodata is None:
            self._rodata = Rodata(self)
        return self._rodata

    def map(self, name: str) -> BpfMap:
        p = self._find_map_ptr(name)
        if p is None:
            raise BpfLibError(f"{self.name}: no map {name!r}")
        return BpfMap(p, name)

    def set_max_entries(self, map_name: str, n: int) -> None:
        p = self._find_map_ptr(map_name)
        if p is None:
            raise BpfLibError(f"{self.name}: no map {map_name!r}")
        rc = lib().bpf_map__set_max_entries(p, n)
        if rc:
            raise BpfLibError(f"set max_entries of {map_name} to {n}", -rc)

    def reuse_map(self, map_name: str, fd: int) -> None:
        """Before load: make map ``map_name`` the existing map behind ``fd`` (another
        object's), so that both objects' programs share it (a ring buffer, a pid set)."""
        p = self._find_map_ptr(map_name)
        if p is None:
            raise BpfLibError(f"{self.name}: no map {map_name!r}")
        rc = lib().bpf_map__reuse_fd(p, fd)
        if rc:
            raise BpfLibError(f"reuse of map {map_name}", -rc)

    def _prog(self, name: str) -> int:
        p = lib().bpf_object__find_program_by_name(self._need(), name.encode())
        if not p:
            raise BpfLibError(f"{self.name}: no program {name!r}")
        return int(p)

    def program_names(self) -> list[str]:
        L = lib()
        out = []
        p = L.bpf_object__next_program(self._need(), None)
        while p:
            out.append((L.bpf_program__name(p) or b"").decode())
            p = L.bpf_object__next_program(self._ptr, p)
        return out

    def set_autoload(self, prog: str, on: bool) -> None:
        rc = lib().bpf_program__set_autoload(self._prog(prog), on)
        if rc:
            raise BpfLibError(f"set autoload of {prog}", -rc)

    def load(self) -> None:
        """Load every (autoload) program and create the maps.

        BpfLoadError when the kernel refuses; its text ends with the verifier log.
        """
        ptr = self._need()
        log_mark()
        rc = lib().bpf_object__load(ptr)
        if rc:
            err = -rc
            log = log_tail(30)
            hint = ""
            if err == _errno.EPERM or (err == _errno.EACCES and os.geteuid() != 0):
                hint = " (needs root: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
            raise BpfLoadError(
                f"the kernel refused BPF object {self.name!r}{hint}; libbpf/verifier log",
                err,
                log,
            )
        self._loaded = True

    def _link(self, ptr: int | None, what: str) -> Link:
        if not ptr:
            err = _err()
            hint = ""
            if err == _errno.ENOENT:
                hint = " (no such tracepoint or file on this kernel)"
            raise BpfLibError(f"cannot attach {what}{hint}", err, log_tail(5))
        link = Link(ptr, what)
        self._links.append(link)
        return link

    def attach_tracepoint(self, prog: str, category: str, name: str, cookie: int = 0) -> Link:
        """Attach to tracepoint ``category:name``.

        ``cookie`` is what the program's bpf_get_attach_cookie() returns.
        """
        p = self._prog(prog)
        opts = _TracepointOpts(ctypes.sizeof(_TracepointOpts), cookie)
        log_mark()
        ctypes.set_errno(0)
        ptr = lib().bpf_program__attach_tracepoint_opts(p, category.encode(), name.encode(),
                                                        ctypes.byref(opts))
        return self._link(ptr, f"{prog} to tracepoint {category}:{name}")

    def attach_raw_tracepoint(self, prog: str, name: str) -> Link:
        p = self._prog(prog)
        log_mark()
        ctypes.set_errno(0)
        ptr = lib().bpf_program__attach_raw_tracepoint(p, name.encode())
        return self._link(ptr, f"{prog} to raw tracepoint {name}")

    def attach_btf_tracepoint(self, prog: str) -> Link:
        """Attach a ``tp_btf/NAME`` program to the raw tracepoint its section names."""
        p = self._prog(prog)
        log_mark()
        ctypes.set_errno(0)
        ptr = lib().bpf_program__attach_trace(p)
        return self._link(ptr, f"{prog} to its BTF tracepoint")

    def attach_uprobe(self, prog: str, path: str, offset: int, retprobe: bool = False,
                      pid: int = -1, cookie: int = 0) -> Link:
        """Attach at file ``offset`` of ``path`` (all processes unless ``pid``).

        ``cookie`` is what the program's bpf_get_attach_cookie() returns.
        """
        p = self._prog(prog)
        opts = _UprobeOpts()
        opts.sz = ctypes.sizeof(_UprobeOpts)
        opts.retprobe = retprobe
        opts.bpf_cookie = cookie
        log_mark()
        ctypes.set_errno(0)
        ptr = lib().bpf_program__attach_uprobe_opts(p, pid, path.encode(), offset,
                                                    ctypes.byref(opts))
        kind = "uretprobe" if retprobe else "uprobe"
        return self._link(ptr, f"{prog} as {kind} to {path}+{offset:#x}")

    def test_run(self, prog: str) -> int:
        """Run a loaded program once (BPF_PROG_TEST_RUN, no input); returns its r0."""
        fd = lib().bpf_program__fd(self._prog(prog))
        opts = _TestRunOpts()
        opts.sz = ctypes.sizeof(_TestRunOpts)
        rc = lib().bpf_prog_test_run_opts(fd, ctypes.byref(opts))
        if rc:
            raise BpfLibError(f"test run of {prog}", -rc if rc < 0 else _err())
        return int(opts.retval)

    def ring_buffer(self, map_name: str, callback: Callable[[bytes], object],
                    raw: Callable[[int, int], object] | None = None) -> RingBuffer:
        rb = RingBuffer(self.map(map_name).fd, callback, raw)
        self._rbs.append(rb)
        return rb

    def detach(self) -> None:
        """Destroy every link (the programs stop running); maps stay readable.

        Closing a tracepoint or uprobe link waits for an RCU grace period in the
        kernel (tens of ms each): many links are closed from parallel threads (ctypes
        releases the GIL), so their waits overlap instead of adding up (720 syscall
        tracepoints: under a second instead of about a minute).
        """
        links, self._links = self._links, []
        if len(links) <= 2:
            for link in links:
                link.destroy()
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(DETACH_THREADS, len(links)),
                                thread_name_prefix="probewatch-detach") as ex:
            for _ in ex.map(Link.destroy, links):
                pass

    def close(self) -> None:
        """Detach, free ring buffers, close the object (programs and maps). Idempotent."""
        if not self._ptr:
            return
        try:
            self.detach()
            for rb in self._rbs:
                rb.free()
            self._rbs.clear()
        finally:
            ptr, self._ptr = self._ptr, None
            lib().bpf_object__close(ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None


__all__ = [
    "BpfLibError",
    "BpfLoadError",
    "BpfOpenError",
    "BpfObject",
    "BpfMap",
    "RingBuffer",
    "Link",
    "Rodata",
    "lib",
    "log_tail",
    "num_possible_cpus",
]
