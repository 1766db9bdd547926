"""Architecture calling conventions: where ``argN`` and ``retval`` live, register names.

The kernel's probe fetch-args name registers the way ``struct pt_regs`` does
(``%di`` on x86_64, ``%x0`` on arm64); this module maps the probe-spec grammar
(``arg0``, ``%rdi``, ``%edi``, ``%w0``) onto those names for one architecture.

Example::

    abi = abi_for("x86_64")
    abi.arg_fetch(0)            # '%di'
    abi.arg_fetch(7)            # '$stack2' (at function entry, past the return address)
    abi.register("%edi")        # RegisterRef(name='di', shift=0, size=4)
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

__all__ = ["ArchABI", "RegisterRef", "X86_64", "ARM64", "abi_for", "ABIS"]


@dataclass(frozen=True)
class RegisterRef:
    """A register as the kernel names it, plus what part of it an alias meant.

    ``shift`` is the bit offset of the sub-register (8 for ``%ah``), ``size`` its width
    in bytes (4 for ``%edi``; 0 = the whole register).
    """

    name: str
    shift: int = 0
    size: int = 0

    @property
    def fetch(self) -> str:
        return "%" + self.name


@dataclass(frozen=True)
class ArchABI:
    """One architecture's calling convention, as the kernel's probe fetch-args see it."""

    name: str
    word_size: int
    #: integer/pointer argument registers, in order (kernel pt_regs names)
    arg_registers: tuple[str, ...]
    #: ``$stackN`` index of the first argument passed on the stack, at function entry
    first_stack_slot: int
    #: every register name the kernel accepts as ``%NAME``
    registers: frozenset[str]
    #: other spellings -> (kernel name, bit shift, size in bytes)
    aliases: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    #: ELF e_machine names / uname -m strings that mean this ABI
    machines: tuple[str, ...] = ()

    def arg_fetch(self, n: int) -> str:
        """Fetch-arg text for the n-th (0-based) integer argument at function entry."""
        if n < 0:
            raise ValueError(f"argument index {n} < 0")
        if n < len(self.arg_registers):
            return "%" + self.arg_registers[n]
        return f"$stack{self.first_stack_slot + n - len(self.arg_registers)}"

    def register(self, name: str) -> RegisterRef | None:
        """Map ``%rdi``/``rdi``/``%di``/``%edi`` to the kernel's register; None if unknown."""
        key = name.lstrip("%").lower()
        if key in self.registers:
            return RegisterRef(key)
        alias = self.aliases.get(key)
        if alias is None:
            return None
        return RegisterRef(*alias)

    def register_names(self) -> list[str]:
        return sorted(self.registers)


def _x86_64_aliases() -> dict[str, tuple[str, int, int]]:
    a: dict[str, tuple[str, int, int]] = {}
    for base in ("ax", "bx", "cx", "dx"):
        a["r" + base] = (base, 0, 8)
        a["e" + base] = (base, 0, 4)
        a[base[0] + "l"] = (base, 0, 1)
        a[base[0] + "h"] = (base, 8, 1)
    for base in ("si", "di", "bp", "sp"):
        a["r" + base] = (base, 0, 8)
        a["e" + base] = (base, 0, 4)
        a[base + "l"] = (base, 0, 1)
    for n in range(8, 16):
        r = f"r{n}"
        a[r + "d"] = (r, 0, 4)
        a[r + "w"] = (r, 0, 2)
        a[r + "b"] = (r, 0, 1)
        a[r + "l"] = (r, 0, 1)
    a["rip"] = ("ip", 0, 8)
    a["eip"] = ("ip", 0, 4)
    a["rflags"] = ("flags", 0, 8)
    a["eflags"] = ("flags", 0, 4)
    return a


# arch/x86/kernel/ptrace.c regoffset_table (x86_64)
X86_64 = ArchABI(
    name="x86_64",
    word_size=8,
    arg_registers=("di", "si", "dx", "cx", "r8", "r9"),
    # at entry 0(%sp) is the return address: the 7th argument is $stack1
    first_stack_slot=1,
    registers=frozenset(
        ["ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "flags", "cs", "ss", "orig_ax"]
        + [f"r{n}" for n in range(8, 16)]
    ),
    aliases=_x86_64_aliases(),
    machines=("x86_64", "amd64", "EM_X86_64"),
)


def _arm64_aliases() -> dict[str, tuple[str, int, int]]:
    a: dict[str, tuple[str, int, int]] = {f"w{n}": (f"x{n}", 0, 4) for n in range(31)}
    a["lr"] = ("x30", 0, 8)
    a["fp"] = ("x29", 0, 8)
    a["wsp"] = ("sp", 0, 4)
    return a


# arch/arm64/kernel/ptrace.c regoffset_table
ARM64 = ArchABI(
    name="arm64",
    word_size=8,
    arg_registers=tuple(f"x{n}" for n in range(8)),
    # AAPCS64: no return address on the stack, the 9th argument is at [sp]
    first_stack_slot=0,
    registers=frozenset([f"x{n}" for n in range(31)] + ["sp", "pc", "pstate"]),
    aliases=_arm64_aliases(),
    machines=("aarch64", "arm64", "EM_AARCH64"),
)

ABIS: tuple[ArchABI, ...] = (X86_64, ARM64)


def abi_for(machine: str | None = None) -> ArchABI:
    """The ABI for an ELF ``e_machine`` name or ``uname -m`` string (default: this machine).

    Raises ValueError for an architecture probewatch has no table for.
    """
    m = machine or platform.machine()
    for abi in ABIS:
        if m in abi.machines or m.lower() in abi.machines:
            return abi
    known = ", ".join(a.name for a in ABIS)
    raise ValueError(f"no calling-convention table for architecture {m!r} (known: {known})")
