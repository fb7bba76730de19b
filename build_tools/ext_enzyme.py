"""Build of ``adjointbench._enzyme`` (Lorenz-63) and ``adjointbench._enzyme96`` (Lorenz-96):
Enzyme-generated IR -> x86-64 object -> Cython extension, one object per extension.

The IR in kernels/generated/ was produced from kernels/lorenz{63,96}_enzyme.cpp by enzyme-ad
(build_tools/regenerate_enzyme_ir.py) and is shipped, so the build needs only llvmlite (a
build requirement in pyproject.toml) and Cython.  If the C++ source has changed since the IR
was generated, the build regenerates it with enzyme-ad when that is installed and otherwise
fails (setup.py then records why and the backend ``enzyme`` reports it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import regenerate_enzyme_ir as regen  # noqa: E402  (build_tools/ is not a package)


#: extension -> (Cython source, front doors linked into its object, object file name)
EXTENSIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "adjointbench._enzyme": ("kernels/enzyme_lorenz63.pyx", ("lorenz63_entry",), "lorenz63_enzyme.o"),
    "adjointbench._enzyme96": ("kernels/enzyme_lorenz96.pyx", ("lorenz96_entry",), "lorenz96_enzyme.o"),
}


def _ir_texts(front_doors: tuple[str, ...]) -> list[tuple[str, str, str, dict[str, str]]]:
    """(name, IR, symbol, renames) for each front door: the shipped IR, or fresh IR if it is stale."""
    modules = []
    for front_door in front_doors:
        fd = regen.FRONT_DOORS[front_door]
        source = regen.source_text(front_door)
        path = regen.ir_path(front_door)
        text = path.read_text() if path.exists() else ""
        if regen.shipped_digest(text) != regen.source_digest(source):
            try:
                text = regen.generate(front_door, source)
            except ImportError:
                raise RuntimeError(
                    f"{path.relative_to(ROOT)} does not match kernels/{fd.source} and enzyme-ad "
                    "is not installed to regenerate it (run build_tools/regenerate_enzyme_ir.py)"
                ) from None
        modules.append((front_door, text, fd.symbol, dict(fd.renames)))
    return modules


def _prebuild(cmd, ext: Extension) -> None:
    import enzyme_ir

    _, front_doors, obj_name = EXTENSIONS[ext.name]
    obj = os.path.join(cmd.build_temp, obj_name)
    os.makedirs(cmd.build_temp, exist_ok=True)
    enzyme_ir.emit_object(_ir_texts(front_doors), obj)
    if obj not in ext.extra_objects:
        ext.extra_objects.append(obj)


def extensions() -> list[Extension]:
    exts = []
    for name, (pyx, front_doors, _) in EXTENSIONS.items():
        ext = Extension(
            name,
            sources=[pyx],
            depends=[
                *(f"kernels/{regen.FRONT_DOORS[fd].source}" for fd in front_doors),
                "kernels/_buffers.pxi",
                "build_tools/enzyme_ir.py",
                *(f"kernels/generated/{fd}.ll" for fd in front_doors),
            ],
        )
        ext.prebuild = _prebuild
        exts.append(ext)
    return exts
