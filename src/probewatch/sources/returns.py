"""Functions that return twice, or never: where a uretprobe must not go, or is useless.

Example::

    "__sigsetjmp" in RETURNS_TWICE   # True: refuse ur:...:__sigsetjmp
"""

from __future__ import annotations

__all__ = ["RETURNS_TWICE", "NO_RETURN", "base_name"]

#: functions that return twice or on another stack. A uretprobe must never go on them:
#: it replaces the return address with the kernel's trampoline, which setjmp saves in
#: its jmp_buf; the longjmp back returns through the trampoline with no return
#: instance left, and the kernel kills the process with SIGILL. A uprobe (entry) on
#: their PLT stub or code is harmless. (Uprobes are per file, so this would hit every
#: process that runs the file, not only the traced one.)
RETURNS_TWICE = frozenset({
    "setjmp", "_setjmp", "__setjmp", "sigsetjmp", "__sigsetjmp", "savectx",
    "getcontext", "swapcontext", "vfork", "__vfork", "clone", "clone3", "__clone",
    "__clone3", "__libc_vfork",
})
#: functions that never return: no uretprobe either (it would never fire)
NO_RETURN = frozenset({
    "exit", "_exit", "_Exit", "abort", "longjmp", "_longjmp", "siglongjmp",
    "__longjmp_chk", "pthread_exit", "__stack_chk_fail", "__assert_fail",
    "__fortify_fail", "__chk_fail", "quick_exit", "err", "errx", "verr", "verrx",
    "__cxa_throw", "_Unwind_Resume", "setcontext", "execl", "execle", "execlp",
})


def base_name(symbol: str) -> str:
    """``__sigsetjmp@GLIBC_2.2.5`` -> ``__sigsetjmp``."""
    return symbol.split("@", 1)[0]
