"""Build of the native extensions (metadata lives in pyproject.toml).

Each native backend contributes its extensions from a module ``build_tools/ext_*.py`` that
defines ``extensions() -> list[Extension]``; an Extension may carry a ``prebuild(cmd, ext)``
attribute (e.g. to produce an object file from LLVM IR) run just before it is compiled.

Native backends are optional: a failed build is reported as a warning and recorded, with its
reason, in ``adjointbench/_native_build.json`` so that the backend can say why it is
unavailable; the pure-Python package always installs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from glob import glob

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
STATUS_FILE = "_native_build.json"
#: native sources that run-time code compiles itself (C yardstick, Enzyme JIT route): shipped
#: inside the package as adjointbench/_kernels/<path> so an installed wheel has them too
RUNTIME_SOURCES = (
    "c_reference/lorenz63_adjoint.c", "c_reference/lorenz96_adjoint.c", "lorenz63_enzyme.cpp", "lorenz96_enzyme.cpp",
)


def _load(path: str):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def native_extensions() -> list:
    sys.path.insert(0, os.path.join(HERE, "build_tools"))
    exts = []
    for path in sorted(glob(os.path.join(HERE, "build_tools", "ext_*.py"))):
        exts.extend(_load(path).extensions())
    return exts


class OptionalBuildExt(build_ext):
    """build_ext where each extension may fail without failing the install."""

    def run(self) -> None:
        self._status: dict[str, dict] = {}
        super().run()
        self._write_status()

    def build_extension(self, ext) -> None:
        try:
            prebuild = getattr(ext, "prebuild", None)
            if prebuild is not None:
                prebuild(self, ext)
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001 - any toolchain failure disables only this backend
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:500]
            self.warn(f"native extension {ext.name} not built ({reason}); its backend will be unavailable")
            self._status[ext.name] = {"built": False, "reason": reason}
        else:
            self._status[ext.name] = {"built": True, "reason": ""}

    def _write_status(self) -> None:
        root = os.path.join(HERE, "python") if self.inplace else self.build_lib
        target = os.path.join(root, "adjointbench", STATUS_FILE)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            json.dump(self._status, f, indent=1)

    def copy_extensions_to_source(self) -> None:
        # in-place/editable builds copy each built .so into the tree: skip the ones that failed
        failed = {n for n, s in self._status.items() if not s["built"]}
        kept, self.extensions = self.extensions, [e for e in self.extensions if e.name not in failed]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = kept

    def get_outputs(self):
        outputs = super().get_outputs()
        if not self.inplace:
            outputs.append(os.path.join(self.build_lib, "adjointbench", STATUS_FILE))
        return outputs


class BuildPyWithKernels(build_py):
    """build_py that also ships RUNTIME_SOURCES from kernels/ inside the package."""

    def run(self) -> None:
        super().run()
        for rel in RUNTIME_SOURCES:
            src = os.path.join(HERE, "kernels", rel)
            if os.path.isfile(src):
                dst = os.path.join(self.build_lib, "adjointbench", "_kernels", rel)
                self.mkpath(os.path.dirname(dst))
                self.copy_file(src, dst)


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithKernels})
