"""perf_event_open(2) through ctypes: the attr struct and the syscall, nothing more.

``PerfEventAttr`` follows ``struct perf_event_attr`` of linux/perf_event.h up to
``config3`` (PERF_ATTR_SIZE_VER8, 136 bytes). The C bitfield word (disabled,
inherit, ...) is the single ``flags`` field; set it with the ``ATTR_*`` bits.
Older kernels accept the larger struct as long as the fields they do not know are 0.

Example::

    attr = tracepoint_attr(tracepoint_id)          # events/sched/sched_switch/id
    fd = perf_event_open(attr, pid=-1, cpu=0)
    os.close(fd)
"""

from __future__ import annotations

import ctypes

from .bpfsys import SyscallError, syscall, syscall_nr

SYS_PERF_EVENT_OPEN = {
    "x86_64": 298,
    "i386": 336,
    "i686": 336,
    "aarch64": 241,
    "arm64": 241,
    "riscv64": 241,
    "loongarch64": 241,
    "armv7l": 364,
    "armv6l": 364,
    "ppc64le": 319,
    "ppc64": 319,
    "s390x": 331,
    "mips64": 5292,
}

# enum perf_type_id
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2

# enum perf_sw_ids
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_DUMMY = 9

# enum perf_event_sample_format (subset)
PERF_SAMPLE_IP = 1 << 0
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_CPU = 1 << 7
PERF_SAMPLE_PERIOD = 1 << 8
PERF_SAMPLE_RAW = 1 << 10

# bits of the flags word (the bitfield after read_format)
ATTR_DISABLED = 1 << 0
ATTR_INHERIT = 1 << 1
ATTR_PINNED = 1 << 2
ATTR_EXCLUSIVE = 1 << 3
ATTR_EXCLUDE_USER = 1 << 4
ATTR_EXCLUDE_KERNEL = 1 << 5
ATTR_EXCLUDE_HV = 1 << 6
ATTR_EXCLUDE_IDLE = 1 << 7
ATTR_MMAP = 1 << 8
ATTR_COMM = 1 << 9
ATTR_FREQ = 1 << 10
ATTR_INHERIT_STAT = 1 << 11
ATTR_ENABLE_ON_EXEC = 1 << 12
ATTR_TASK = 1 << 13
ATTR_WATERMARK = 1 << 14
# precise_ip is 2 bits at 15..16
ATTR_MMAP_DATA = 1 << 17
ATTR_SAMPLE_ID_ALL = 1 << 18
ATTR_EXCLUDE_HOST = 1 << 19
ATTR_EXCLUDE_GUEST = 1 << 20
ATTR_EXCLUDE_CALLCHAIN_KERNEL = 1 << 21
ATTR_EXCLUDE_CALLCHAIN_USER = 1 << 22
ATTR_MMAP2 = 1 << 23
ATTR_COMM_EXEC = 1 << 24
ATTR_USE_CLOCKID = 1 << 25
ATTR_CONTEXT_SWITCH = 1 << 26
ATTR_WRITE_BACKWARD = 1 << 27

# perf_event_open flags
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

PERF_ATTR_SIZE_VER0 = 64
PERF_ATTR_SIZE_VER5 = 112
PERF_ATTR_SIZE_VER7 = 128
PERF_ATTR_SIZE_VER8 = 136


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (PERF_ATTR_SIZE_VER8 layout); unions named by first member."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),  # union with sample_freq
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),  # the bitfield word: ATTR_* bits
        ("wakeup_events", ctypes.c_uint32),  # union with wakeup_watermark
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),  # union: bp_addr, kprobe_func, uprobe_path
        ("config2", ctypes.c_uint64),  # union: bp_len, kprobe_addr, probe_offset
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("reserved_3", ctypes.c_uint32),
        ("sig_data", ctypes.c_uint64),
        ("config3", ctypes.c_uint64),
    ]


assert ctypes.sizeof(PerfEventAttr) == PERF_ATTR_SIZE_VER8


class PerfError(SyscallError):
    """perf_event_open(2) failed; ``errno`` is set."""


def sys_perf_event_open_nr(machine: str | None = None) -> int:
    return syscall_nr(
        SYS_PERF_EVENT_OPEN, "perf_event_open syscall number unknown for ", PerfError, machine
    )


def new_attr(type_: int, config: int, flags: int = 0) -> PerfEventAttr:
    """A zeroed attr of this struct's size with type, config and flag bits set."""
    attr = PerfEventAttr()
    attr.type = type_
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.config = config
    attr.flags = flags
    return attr


def tracepoint_attr(tp_id: int, disabled: bool = True) -> PerfEventAttr:
    """Attr for a tracepoint counter (``tp_id`` from tracefs events/<sys>/<name>/id)."""
    return new_attr(PERF_TYPE_TRACEPOINT, tp_id, ATTR_DISABLED if disabled else 0)


def perf_event_open(
    attr: PerfEventAttr,
    pid: int = -1,
    cpu: int = 0,
    group_fd: int = -1,
    flags: int = PERF_FLAG_FD_CLOEXEC,
) -> int:
    """Open a perf event; return its fd or raise PerfError."""
    ret = syscall(
        sys_perf_event_open_nr(),
        ctypes.byref(attr),
        ctypes.c_int(pid),
        ctypes.c_int(cpu),
        ctypes.c_int(group_fd),
        ctypes.c_ulong(flags),
    )
    if ret < 0:
        what = f"perf_event_open(type {attr.type}, config {attr.config})"
        raise PerfError(ctypes.get_errno(), what)
    return ret


__all__ = [
    "PerfEventAttr",
    "PerfError",
    "perf_event_open",
    "new_attr",
    "tracepoint_attr",
    "PERF_TYPE_TRACEPOINT",
    "PERF_TYPE_SOFTWARE",
    "PERF_FLAG_FD_CLOEXEC",
]
