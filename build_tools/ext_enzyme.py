"""Build of ``adjointbench._enzyme``: Enzyme-generated IR -> x86-64 object -> Cython extension.

The IR in kernels/generated/ was produced from kernels/lorenz63_enzyme.cpp by enzyme-ad
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


def _ir_texts() -> list[tuple[str, str, str]]:
    """(name, IR, symbol) for each front door: the shipped IR, or fresh IR if it is stale."""
    source = regen.SOURCE.read_text()
    digest = regen.source_digest(source)
    modules = []
    for front_door, symbol in regen.FRONT_DOORS.items():
        path = regen.ir_path(front_door)
        text = path.read_text() if path.exists() else ""
        if regen.shipped_digest(text) != digest:
            try:
                text = regen.generate(front_door, source)
            except ImportError:
                raise RuntimeError(
                    f"{path.relative_to(ROOT)} does not match kernels/lorenz63_enzyme.cpp and enzyme-ad "
                    "is not installed to regenerate it (run build_tools/regenerate_enzyme_ir.py)"
                ) from None
        modules.append((front_door, text, symbol))
    return modules


def _prebuild(cmd, ext: Extension) -> None:
    import enzyme_ir

    obj = os.path.join(cmd.build_temp, "lorenz63_enzyme.o")
    os.makedirs(cmd.build_temp, exist_ok=True)
    enzyme_ir.emit_object(_ir_texts(), obj)
    if obj not in ext.extra_objects:
        ext.extra_objects.append(obj)


def extensions() -> list[Extension]:
    ext = Extension(
        "adjointbench._enzyme",
        sources=["kernels/enzyme_lorenz63.pyx"],
        depends=[
            "kernels/lorenz63_enzyme.cpp",
            "kernels/_buffers.pxi",
            "build_tools/enzyme_ir.py",
            *(f"kernels/generated/{name}.ll" for name in regen.FRONT_DOORS),
        ],
    )
    ext.prebuild = _prebuild
    return [ext]
