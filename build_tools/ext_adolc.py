"""Build of ``adjointbench._adolc`` (backends ``adolc`` and ``adolc-retape``): the C++ models
on ADOL-C's ``adouble`` (kernels/adolc/lorenz_adolc.cpp) behind a Cython wrapper
(kernels/adolc/_adolc.pyx), linked with ``-ladolc``.

ADOL-C is a system library (Debian/Ubuntu: libadolc-dev, installed by tools/system-deps.sh).
The ``prebuild`` hook first compiles, links and runs a three-line ADOL-C program; when that
fails the build of this one extension fails with the reason and the install line, which
setup.py records and the backends report as why they are unavailable.  Link with
``-ladolc`` alone: ADOL-C's pkg-config file adds ``-lboost_system``, which is not installed
with it.  Cython runs in the hook too, writing its C++ into the build directory (nothing
generated lands in kernels/).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from setuptools import Extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "adjointbench._adolc"
PYX = os.path.join("kernels", "adolc", "_adolc.pyx")
CPP = os.path.join("kernels", "adolc", "lorenz_adolc.cpp")
CXXFLAGS = ["-O3", "-std=c++11"]
INSTALL = "apt-get install -y libadolc-dev (tools/system-deps.sh)"

PROBE = """#include <adolc/adolc.h>
int main() { double x = 3.0, y, g; trace_on(1); { adouble a; a <<= x; adouble b = a * a; b >>= y; } trace_off();
  gradient(1, 1, &x, &g); removeTape(1, ADOLC_REMOVE_COMPLETELY); return (y == 9.0 && g == 6.0) ? 0 : 1; }
"""


def _path(rel: str) -> str:
    return os.path.relpath(os.path.join(ROOT, rel))


def adolc_unavailable(cmd) -> str:
    """'' when the build's C++ compiler compiles, links and runs an ADOL-C program, else why not."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "adolc_probe.cpp")
        with open(src, "w") as f:
            f.write(PROBE)
        try:
            objs = cmd.compiler.compile([src], output_dir=tmp, extra_postargs=["-std=c++11"])
            cmd.compiler.link_executable(objs, "adolc_probe", output_dir=tmp, libraries=["adolc"], target_lang="c++")
            run = subprocess.run([os.path.join(tmp, "adolc_probe")], cwd=tmp, capture_output=True, timeout=60)
            if run.returncode != 0:
                return f"the ADOL-C probe program ran but failed (exit {run.returncode}): {run.stderr.decode(errors='replace')[:200]}"
        except Exception as e:  # noqa: BLE001 - any failure: no usable ADOL-C
            return " ".join(f"{type(e).__name__}: {e}".split())[:300]
    return ""


def adolc_version() -> str:
    """ADOL-C's version from pkg-config (its .pc file), or 'unknown'."""
    try:
        run = subprocess.run(["pkg-config", "--modversion", "adolc"], capture_output=True, text=True, timeout=30)
        if run.returncode == 0 and run.stdout.strip():
            return run.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def _prebuild(cmd, ext: Extension) -> None:
    why = adolc_unavailable(cmd)
    if why:
        raise RuntimeError(f"ADOL-C (libadolc-dev) not usable: {why}; install it: {INSTALL}")
    version = "".join(c for c in adolc_version() if c.isalnum() or c in ".-+~")  # a safe C string literal
    ext.define_macros = [m for m in ext.define_macros if m[0] != "AB_ADOLC_VERSION"]
    ext.define_macros.append(("AB_ADOLC_VERSION", f'"{version or "unknown"}"'))
    try:
        from Cython.Build import cythonize
    except ImportError as e:
        raise RuntimeError(f"Cython is needed to build {ext.name} ({e})") from None
    out = os.path.join(cmd.build_temp, "adolc_cython")
    os.makedirs(out, exist_ok=True)
    (built,) = cythonize(
        [Extension(ext.name, [_path(PYX)], language="c++")], build_dir=out,
        compiler_directives={"language_level": 3}, quiet=True,
    )
    ext.sources = [s for s in built.sources if s.endswith(".cpp")] + [_path(CPP)]


def extensions() -> list[Extension]:
    ext = Extension(
        NAME, sources=[_path(CPP)], depends=[_path(PYX), _path(CPP)], language="c++",
        libraries=["adolc"], extra_compile_args=list(CXXFLAGS),
    )
    ext.prebuild = _prebuild
    return [ext]
