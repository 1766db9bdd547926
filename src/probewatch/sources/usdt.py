"""USDT probes -> ``uprobe_events`` lines.

A ``usdt:TARGET:[PROVIDER:]NAME`` spec names a probe from the target's
``.note.stapsdt``; each location of that probe becomes one uprobe at the note's file
offset, with the semaphore (when the probe has one) passed as the uprobe
``(ref_ctr_offset)`` so the kernel turns the probe on in every process while armed.

Without arguments in the spec every probe argument is recorded as ``arg0..argN`` with
the size and sign the note gives; with arguments, ``argN`` means the N-th probe
argument (``usdt:/bin/x:prov:req path=arg1:string``).

Example::

    [p] = resolve_usdt(parse_spec("usdt:/usr/bin/pw_target:pwtest:withsem"))
    p.definition
    # 'p:probewatch_1234/pwtest_withsem_0 /usr/bin/pw_target:0x0000000000001433(0x3068)
    #  arg0=%di:s32'
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from ..elf.apk import probe_file
from ..elf.libs import resolve_target
from ..elf.symbols import ElfImage, open_image, symbol_address
from ..elf.usdt import UsdtArg, UsdtProbe, read_usdt_probes
from ..errors import NotFound
from .args import ArchABI, abi_for
from .spec import ArgRef, ProbeSpec, has_glob
from .uprobe import (
    DynamicProbe,
    check_group,
    check_target_path,
    default_group,
    event_name,
    render_args,
    uprobe_definition,
)

__all__ = ["resolve_usdt", "usdt_fetcharg", "find_usdt_probes", "DEFAULT_MAX_LOCATIONS"]

DEFAULT_MAX_LOCATIONS = 64


def usdt_fetcharg(
    arg: UsdtArg,
    abi: ArchABI,
    img: ElfImage,
    probe: UsdtProbe,
    debug_roots: Sequence[str] | None = None,
) -> tuple[str, str]:
    """(fetch-arg, type) for one USDT argument; ValueError when it cannot be expressed.

    ``8@foo(%rip)`` becomes ``@+X``: the uprobe tracer reads ``@+X`` at
    ``probe address - probe file offset + X``, so X is foo's address minus the
    (p_vaddr - p_offset) of the segment holding the probe.
    """
    typ = arg.type
    if arg.kind == "const":
        return f"\\{arg.const}", typ
    if arg.kind in ("reg", "mem"):
        assert arg.register is not None
        ref = abi.register(arg.register)
        if ref is None:
            raise ValueError(f"register {arg.register!r} is unknown on {abi.name}")
        if arg.kind == "reg":
            if ref.shift:
                return ref.fetch, f"b{arg.size * 8}@{ref.shift}/{abi.word_size * 8}"
            return ref.fetch, typ
        sign = "-" if arg.offset < 0 else "+"
        return f"{sign}{abs(arg.offset)}({ref.fetch})", typ
    if arg.kind == "sym":
        assert arg.symbol is not None
        try:
            addr = symbol_address(img.path, arg.symbol, debug_roots) + arg.offset
        except NotFound as e:
            raise ValueError(str(e)) from None
        seg = next((s for s in img.segments if s.contains(probe.pc)), None)
        if seg is None:
            raise ValueError(f"probe address 0x{probe.pc:x} is in no loadable segment")
        rel = addr - (seg.vaddr - seg.offset)
        if rel < 0:
            raise ValueError(f"{arg.symbol} lies before the probe's segment")
        return f"@+0x{rel:x}", typ
    raise ValueError(f"argument {arg.text!r} cannot be expressed as a uprobe fetch-arg")


def find_usdt_probes(spec: ProbeSpec, path: str) -> list[UsdtProbe]:
    """The probe locations in ``path`` that a usdt spec names (globs allowed).

    Raises NotFound (no such probe; lists the nearest ones) and SpecError (a name
    without provider that several providers define).
    """
    assert spec.name is not None
    probes = read_usdt_probes(path)
    if not probes:
        raise NotFound(f"{path} has no USDT probes (no .note.stapsdt section)")
    prov = spec.provider
    hits = [
        p
        for p in probes
        if fnmatch.fnmatchcase(p.name, spec.name)
        and (prov is None or fnmatch.fnmatchcase(p.provider, prov))
    ]
    if not hits:
        names = sorted({p.full_name for p in probes})
        want = f"{prov}:{spec.name}" if prov else spec.name
        pool = names if prov else sorted({p.name for p in probes}) + names
        close = difflib.get_close_matches(want, pool, n=5, cutoff=0.5)
        listed = ", ".join(close or names[:20])
        label = "nearest" if close else "available"
        raise NotFound(f"no USDT probe {want!r} in {path} ({label}: {listed})")
    if prov is None and not has_glob(spec.name):
        providers = sorted({p.provider for p in hits})
        if len(providers) > 1:
            raise spec.error(
                f"USDT probe {spec.name!r} is defined by several providers in {path}"
                f" ({', '.join(providers)}): write usdt:TARGET:PROVIDER:{spec.name}",
                part="name",
            )
    return hits


def resolve_usdt(
    spec: ProbeSpec,
    pid: int | None = None,
    group: str | None = None,
    *,
    max_matches: int = DEFAULT_MAX_LOCATIONS,
    debug_roots: Sequence[str] | None = None,
) -> list[DynamicProbe]:
    """Resolve a ``usdt:`` spec to ``uprobe_events`` lines, one per probe location.

    ``group`` defaults to ``probewatch_<our pid>``. Raises SpecError or NotFound.
    Arguments a uprobe cannot read (indexed operands) are skipped with a warning.

    Example::

        for p in resolve_usdt(parse_spec("usdt:/usr/bin/pw_target:pwtest:*")):
            print(p.definition, p.ref_ctr_offset)
    """
    if spec.kind != "usdt":
        raise spec.error(f"resolve_usdt needs a usdt spec, not {spec.kind}", "kind")
    grp = check_group(group or default_group())
    assert spec.target is not None
    path = resolve_target(spec.target, pid)
    check_target_path(spec, path)
    img = open_image(path)
    try:
        abi = abi_for(img.machine)
    except ValueError as e:
        raise spec.error(f"{path}: {e}", part="target") from None
    hits = find_usdt_probes(spec, path)
    probe_path, base = probe_file(path)  # inside an APK: the APK, at the entry's offset
    if len(hits) > max_matches:
        raise spec.error(
            f"{len(hits)} USDT probe locations match in {path}, more than the limit of"
            f" {max_matches}; narrow the name or raise the limit",
            part="name",
        )
    out = []
    for probe in hits:
        warnings: list[str] = []
        fetched: list[tuple[str, str] | None] = []
        for a in probe.args:
            try:
                fetched.append(usdt_fetcharg(a, abi, img, probe, debug_roots))
            except ValueError as e:
                fetched.append(None)
                warnings.append(f"{probe.full_name} argument {a.text!r} skipped: {e}")
        if spec.args:
            def leaf(
                ref: ArgRef, p: UsdtProbe = probe, fetched: list[tuple[str, str] | None] = fetched
            ) -> str:
                n = len(p.args)
                if ref.index >= n:
                    have = f"arg0..arg{n - 1}" if n else "none"
                    raise spec.error(
                        f"USDT probe {p.full_name} has {n} argument(s) ({have})", pos=ref.pos
                    )
                f = fetched[ref.index]
                if f is None:
                    raise spec.error(
                        f"{p.full_name} arg{ref.index} ({p.args[ref.index].text!r}) cannot be"
                        " read by a uprobe",
                        pos=ref.pos,
                    )
                return f[0]

            def leaf_type(
                ref: ArgRef, p: UsdtProbe = probe, fetched: list[tuple[str, str] | None] = fetched
            ) -> str | None:
                f = fetched[ref.index] if ref.index < len(p.args) else None
                return f[1] if f else None

            args = render_args(spec, abi, user_memory=True, leaf=leaf, leaf_type=leaf_type)
        else:
            args = [f"arg{i}={f[0]}:{f[1]}" for i, f in enumerate(fetched) if f is not None]
        name = event_name(grp, f"{probe.provider}_{probe.name}")
        sem = probe.semaphore_offset + base if probe.semaphore_offset is not None else None
        out.append(
            DynamicProbe(
                group=grp,
                name=name,
                definition=uprobe_definition(
                    "uprobe", grp, name, probe_path, probe.offset + base, args, sem
                ),
                spec_text=spec.text or spec.canonical(),
                target_path=probe_path,
                offset=probe.offset + base,
                warnings=warnings,
                kind="usdt",
                symbol=probe.full_name,
                ref_ctr_offset=sem,
                elf_path=path if path != probe_path else "",
            )
        )
    return out
