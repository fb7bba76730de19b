"""The Fortran hand adjoints (backend ``fortran``): one shared library, loaded with ctypes.

    kernels/fortran/lorenz63_adjoint.f90  (module ab_lorenz63)
    kernels/fortran/lorenz96_adjoint.f90  (module ab_lorenz96)   -> adjointbench/_fortran_adjoint<EXT_SUFFIX>

The library has no Python in it: its routines are ``bind(c)`` (iso_c_binding) and the
backend calls them through ctypes.  setuptools does not compile Fortran, so the Extension has
no sources of its own: its ``prebuild`` hook runs gfortran on the two files into objects in
the build's temporary folder (``-J`` there too, so the ``.mod`` files stay out of the tree),
and build_ext then links those objects, with libgfortran and OpenMP, into a shared object named
like an extension module (``_fortran_adjoint.cpython-311-x86_64-linux-gnu.so``), which the
in-place build copies into the package like every other extension.

Flags: ``-O3 -fPIC``, no ``-march=native`` (a wheel built here may run on another CPU), and
``-ffp-contract=off`` so that no target (aarch64, or x86-64 with FMA) fuses a*b + c: the
kernels then give the Python hand adjoints' numbers to the bit (Lorenz-63) or to rounding in
the reductions only (Lorenz-96).  ``-fopenmp`` when gfortran compiles with it (the batches'
``!$omp parallel do``); otherwise (or with ADJOINTBENCH_NO_OPENMP=1) without, and the batches
run their rows serially (the library's ``ab_openmp()`` says which).

Without gfortran the build fails with the install line, setup.py records it in
``_native_build.json``, and the backend reports it as the reason it is unavailable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from setuptools import Extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "adjointbench._fortran_adjoint"
FLAGS = ["-O3", "-fPIC", "-ffp-contract=off"]
#: source -> its own extra flags.  Lorenz-63 works on 3-vectors: the basic-block (SLP) vectoriser
#: packs them into SSE pairs and shuffles, and its List 2 took ~15% longer (fused Tbl. 3 loop,
#: CPU time per iteration 1.56 vs 1.32 us on the 2-thread EPYC VM); Lorenz-96 keeps it
SOURCES = {
    os.path.join("kernels", "fortran", "lorenz63_adjoint.f90"): ["-fno-tree-slp-vectorize"],
    os.path.join("kernels", "fortran", "lorenz96_adjoint.f90"): [],
}
OPENMP_FLAGS = ["-fopenmp"]
#: the reason recorded when gfortran is missing (the backend repeats it)
MISSING = "gfortran not found: apt-get install -y gfortran (tools/system-deps.sh)"


def _path(rel: str) -> str:
    # setuptools wants paths relative to the project root, which is the cwd of a pip build
    return os.path.relpath(os.path.join(ROOT, rel))


def _gfortran() -> str:
    exe = shutil.which("gfortran")
    if not exe:
        raise RuntimeError(MISSING)
    return exe


def _compile(fc: str, flags: list[str], outdir: str) -> list[str]:
    """gfortran ``flags`` -c on each source into ``outdir``; the .mod files go to a scratch -J."""
    objs = []
    with tempfile.TemporaryDirectory() as moddir:
        for src, extra in SOURCES.items():
            out = os.path.join(outdir, os.path.splitext(os.path.basename(src))[0] + ".o")
            cmd = [fc, *flags, *extra, "-J", moddir, "-c", _path(src), "-o", out]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {(res.stderr or res.stdout).strip()[-400:]}")
            objs.append(out)
    return objs


def _library_dir(fc: str) -> str | None:
    """The folder of gfortran's own libgfortran.so (the C compiler that links may not search it)."""
    res = subprocess.run([fc, "-print-file-name=libgfortran.so"], capture_output=True, text=True)
    path = res.stdout.strip()
    return os.path.dirname(path) if res.returncode == 0 and os.path.isabs(path) else None


def _prebuild(cmd, ext: Extension) -> None:
    fc = _gfortran()
    os.makedirs(cmd.build_temp, exist_ok=True)
    outdir = os.path.join(cmd.build_temp, "fortran")
    os.makedirs(outdir, exist_ok=True)
    openmp = os.environ.get("ADJOINTBENCH_NO_OPENMP", "") in ("", "0")
    try:
        objs = _compile(fc, FLAGS + (OPENMP_FLAGS if openmp else []), outdir)
    except RuntimeError as e:
        if not openmp:
            raise
        cmd.warn(f"{ext.name}: gfortran -fopenmp failed ({' '.join(str(e).split())[:200]}); building without OpenMP")
        openmp = False
        objs = _compile(fc, FLAGS, outdir)
    if not openmp:
        cmd.warn(f"{ext.name}: built without OpenMP; its batched gradients run serially")
    ext.extra_objects = objs
    ext.extra_link_args = list(OPENMP_FLAGS) if openmp else []
    libdir = _library_dir(fc)
    ext.library_dirs = [libdir] if libdir else []
    ext.libraries = ["gfortran", "m"]


def extensions() -> list[Extension]:
    # no sources: the object comes from the prebuild hook; depends makes build_ext relink when
    # a Fortran file (or this recipe) changes
    ext = Extension(NAME, sources=[], depends=[*(_path(s) for s in SOURCES), _path("build_tools/ext_fortran.py")])
    ext.prebuild = _prebuild
    return [ext]
