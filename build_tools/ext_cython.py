"""The Cython hand adjoint (backend ``cython``): kernels/lorenz63_hand.pyx -> adjointbench._cython_hand.

Cython runs in the extension's ``prebuild`` hook, not when setup.py is read, so that a missing
or failing Cython disables only this backend (setup.py records the reason) instead of failing
the install.  Only ``-O3``: no ``-march=native``, because a wheel built here may run on another
CPU (and without FMA contraction the results match the Python hand adjoint to the last bit).
The generated C file is not committed (.gitignore); it is regenerated at every build.
"""

from __future__ import annotations

import os

from setuptools import Extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYX = os.path.join("kernels", "lorenz63_hand.pyx")


def _path(rel: str) -> str:
    # setuptools wants sources relative to the project root, which is the cwd of a pip build
    return os.path.relpath(os.path.join(ROOT, rel))


def _cythonize(cmd, ext: Extension) -> None:
    try:
        from Cython.Build import cythonize
    except ImportError as e:
        raise RuntimeError(f"Cython is needed to build {ext.name} ({e})") from None
    # the module name comes from the Extension, not from the file name
    cythonize([Extension(ext.name, [_path(PYX)])], compiler_directives={"language_level": 3}, quiet=True)


def extensions() -> list[Extension]:
    ext = Extension(
        "adjointbench._cython_hand",
        [_path(PYX[: -len(".pyx")] + ".c")],
        depends=[_path(PYX), _path("kernels/_buffers.pxi")],
        extra_compile_args=["-O3"],
    )
    ext.prebuild = _cythonize
    return [ext]
