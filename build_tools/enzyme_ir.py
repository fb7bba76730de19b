"""Make enzyme-ad's LLVM IR readable by llvmlite, and emit it as an x86-64 object file.

enzyme-ad 0.0.16 embeds an unreleased clang/LLVM (24-git); the IR it writes uses two
constructs that llvmlite's LLVM 22 rejects:

* the ``target_mem`` location in memory effects, e.g. ``memory(readwrite, target_mem: none)``
  (the parser stops at it).  Dropping a ``target_mem: none`` entry leaves the default access
  kind for that location, which only *widens* what the function may touch, so it is always
  sound; any other ``target_mem`` access is refused, since dropping it could narrow it.
* alias-scope domains with an extra ``i1 false`` operand, ``distinct !{!7, i1 false, !"name"}``
  (written by Enzyme's noalias scopes; the verifier says "domain must have one or two
  operands").  ScopedNoAliasAA identifies a domain by the node itself, so removing the flag
  gives the classic ``!{!7, !"name"}`` domain; ``i1 true`` (meaning unknown) is refused.

Everything else must parse and verify unchanged: ``parse`` names the first construct LLVM 22
rejects, so a newer enzyme-ad that emits something new fails the build loudly, with the
reason recorded by setup.py, instead of producing a wrong object.
"""

from __future__ import annotations

import re
from typing import Iterable

#: the ``memory(...)`` attribute of a function or call site
_MEMORY = re.compile(r"\bmemory\(([^()]*)\)")
#: one ``location: access`` entry of it whose location is a target memory (target_mem, target_mem0...)
_TARGET_MEM = re.compile(r"^\s*(target_mem\w*)\s*:\s*(\w+)\s*$")
#: a distinct metadata node whose second operand is an i1 constant (Enzyme's scope domains)
_FLAGGED_DOMAIN = re.compile(r"distinct !\{(![0-9]+), i1 (\w+), (![0-9]+|!\"(?:[^\"\\]|\\.)*\")\}")


class UnsupportedIR(ValueError):
    """The IR uses a construct this fix-up does not know how to make LLVM 22 accept."""


def _fix_memory(match: re.Match) -> str:
    kept = []
    for entry in match.group(1).split(","):
        tm = _TARGET_MEM.match(entry)
        if tm is None:
            kept.append(entry.strip())
        elif tm.group(2) != "none":
            raise UnsupportedIR(
                f"memory effect '{tm.group(1)}: {tm.group(2)}' in {match.group(0)!r}: dropping it "
                "could narrow the function's memory effects; extend build_tools/enzyme_ir.py"
            )
    if not kept:  # memory(target_mem: none) alone: every other location has the default, none
        kept = ["none"]
    return f"memory({', '.join(kept)})"


def _fix_domain(match: re.Match) -> str:
    node, flag, name = match.groups()
    if flag != "false":
        raise UnsupportedIR(f"alias-scope domain with flag 'i1 {flag}' in {match.group(0)!r}; extend build_tools/enzyme_ir.py")
    return f"distinct !{{{node}, {name}}}"


def fix_up(text: str) -> str:
    """The textual fix-ups above; raises UnsupportedIR for a variant it cannot fix soundly."""
    text = _MEMORY.sub(_fix_memory, text)
    return _FLAGGED_DOMAIN.sub(_fix_domain, text)


def _rejected_construct(message: str) -> str:
    """The offending token and line of an LLVM parser error, or the verifier's first lines."""
    lines = message.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*<string>:(\d+):(\d+): error: (.*)", line)
        if m and i + 2 < len(lines) and "^" in lines[i + 2]:
            src, col = lines[i + 1], lines[i + 2].index("^")
            token = re.match(r"[\w.$\"-]+|\S", src[col:])
            return f"{token.group(0) if token else src[col:col + 20]!r} at line {m.group(1)} ({m.group(3)}): {src.strip()}"
        if m:
            return f"line {m.group(1)}: {m.group(3)}"
    return " | ".join(line.strip() for line in lines[:3] if line.strip()) or message


def parse(text: str, name: str = "<ir>", context=None):
    """Fix up, parse and verify IR with llvmlite; UnsupportedIR names what LLVM 22 rejects.

    ``context``: the LLVM context to parse into (default: llvmlite's global one, where the
    modules of one object are linked).  Named struct types are unique per context: a second
    module declaring ``%struct.Problem`` in the same context gets ``%struct.Problem.0``, so
    modules compared as text need a fresh context each.
    """
    import llvmlite.binding as llvm

    fixed = fix_up(text)
    try:
        module = llvm.parse_assembly(fixed, context)
        module.verify()
    except RuntimeError as e:
        raise UnsupportedIR(
            f"{name}: LLVM {'.'.join(map(str, llvm.llvm_version_info))} (llvmlite) rejects "
            f"{_rejected_construct(str(e))}; extend build_tools/enzyme_ir.py"
        ) from None
    module.name = name
    return module


def emit_object(modules: Iterable[tuple], path: str) -> None:
    """Link IR modules into one x86-64 object file at ``path``.

    ``modules`` holds (name, IR text, symbol) or (name, IR text, symbol, renames): each
    module's ``entry`` function (the ABI of enzyme_ad's compile_to_llvm) is renamed to
    ``symbol``, a name the extension can own, and several modules may share one object.
    ``renames`` maps other functions the module declares to the names the extension defines
    instead (Lorenz-96 sends Enzyme's tape ``malloc``/``free`` to a reusing allocator, see
    kernels/enzyme_lorenz96.pyx); the replacement must have the same contract.
    Position-independent code for generic x86-64: the object goes into a shared library that
    must run wherever the wheel is installed.
    """
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    linked = None
    for name, text, symbol, *rest in modules:
        module = parse(text, name)
        entry = module.get_function("entry")
        entry.name = symbol
        for old, new in (rest[0] if rest else {}).items():
            try:
                fn = module.get_function(old)
            except NameError:
                continue  # the module does not use it
            if not fn.is_declaration:
                raise UnsupportedIR(f"{name}: cannot rename {old!r}, the module defines it")
            fn.name = new
        if linked is None:
            linked = module
        else:
            linked.link_in(module)
    if linked is None:
        raise ValueError("emit_object needs at least one module")
    linked.verify()
    triple = linked.triple
    host = llvm.get_default_triple()
    if not (triple.startswith("x86_64-") and host.startswith("x86_64-") and "linux" in host):
        raise UnsupportedIR(f"the Enzyme IR targets {triple}; this machine is {host}")
    target = llvm.Target.from_triple(triple)
    machine = target.create_target_machine(cpu="x86-64", features="", opt=3, reloc="pic", codemodel="default")
    # enzyme-ad's pipeline optimised the IR already (running LLVM's -O3 again here changed
    # the gradient's time by under 1%); code generation at -O3 for generic x86-64 remains.
    with open(path, "wb") as f:
        f.write(machine.emit_object(linked))
