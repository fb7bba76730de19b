"""The Cython hand adjoints (backend ``cython``):

    kernels/lorenz63_hand.pyx -> adjointbench._cython_hand      (Lorenz-63)
    kernels/lorenz96_hand.pyx -> adjointbench._cython_lorenz96  (Lorenz-96)

Cython runs in the extension's ``prebuild`` hook, not when setup.py is read, so that a missing
or failing Cython disables only this backend (setup.py records the reason) instead of failing
the install.  Only ``-O3``: no ``-march=native``, because a wheel built here may run on another
CPU (and without FMA contraction the results match the Python hand adjoint to the last bit).
The generated C files are not committed (.gitignore); they are regenerated at every build.

The batched gradients run their members on OpenMP threads (``prange``): ``-fopenmp`` is added
to the compile and link flags when a probe program builds with it.  Where it does not (a
compiler without OpenMP, or ADJOINTBENCH_NO_OPENMP=1), the extensions are built without it and
``prange`` is a serial loop; each module's ``OPENMP`` says which, and the build prints a warning.
"""

from __future__ import annotations

import os
import tempfile

from setuptools import Extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {
    "adjointbench._cython_hand": os.path.join("kernels", "lorenz63_hand.pyx"),
    "adjointbench._cython_lorenz96": os.path.join("kernels", "lorenz96_hand.pyx"),
}
OPENMP_FLAGS = ["-fopenmp"]
_openmp_probe: dict[str, str] = {}  # one probe per build: {"reason": ""} when OpenMP works


def _path(rel: str) -> str:
    # setuptools wants sources relative to the project root, which is the cwd of a pip build
    return os.path.relpath(os.path.join(ROOT, rel))


def _openmp_unavailable(cmd) -> str:
    """'' when the build's C compiler compiles and links an OpenMP program, else why not."""
    if "reason" not in _openmp_probe:
        if os.environ.get("ADJOINTBENCH_NO_OPENMP", "") not in ("", "0"):
            reason = "ADJOINTBENCH_NO_OPENMP is set"
        else:
            reason = ""
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "omp_probe.c")
                with open(src, "w") as f:
                    f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
                try:
                    objs = cmd.compiler.compile([src], output_dir=tmp, extra_postargs=OPENMP_FLAGS)
                    cmd.compiler.link_executable(objs, "omp_probe", output_dir=tmp, extra_postargs=OPENMP_FLAGS)
                except Exception as e:  # noqa: BLE001 - any failure means: build without OpenMP
                    reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        _openmp_probe["reason"] = reason
    return _openmp_probe["reason"]


def _cythonize(cmd, ext: Extension) -> None:
    try:
        from Cython.Build import cythonize
    except ImportError as e:
        raise RuntimeError(f"Cython is needed to build {ext.name} ({e})") from None
    why = _openmp_unavailable(cmd)
    if why:
        cmd.warn(f"{ext.name}: built without OpenMP ({why}); its batched gradients run serially")
        ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in OPENMP_FLAGS]
        ext.extra_link_args = [a for a in ext.extra_link_args if a not in OPENMP_FLAGS]
    # the module name comes from the Extension, not from the file name
    cythonize([Extension(ext.name, [_path(MODULES[ext.name])])], compiler_directives={"language_level": 3}, quiet=True)


def extensions() -> list[Extension]:
    exts = []
    for name, pyx in MODULES.items():
        ext = Extension(
            name,
            [_path(pyx[: -len(".pyx")] + ".c")],
            depends=[_path(pyx), _path("kernels/_buffers.pxi")],
            extra_compile_args=["-O3", *OPENMP_FLAGS],
            extra_link_args=list(OPENMP_FLAGS),
        )
        ext.prebuild = _cythonize
        exts.append(ext)
    return exts
