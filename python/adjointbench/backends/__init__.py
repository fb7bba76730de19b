"""Backend registry: every module in this package that defines ``BACKENDS`` contributes them.

A new backend is one new module here (GradBench-style, one tool per module); nothing else
needs editing.  Modules must import without their optional dependencies (import heavy
libraries inside methods), so that a missing toolchain only marks a backend unavailable.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..workload import TBL3_ITERATIONS, TBL3_STEP, DescentResult, python_descent
from .base import Backend, Prepared

#: display order of the public backend names (DESIGN.md); unknown names follow alphabetically
ORDER = (
    "numpy", "numba", "cython", "fortran", "enzyme", "enzyme-jit", "adolc", "adolc-retape", "jax", "jax-nojit",
    "enzyme-jax", "jax-sharded", "torch", "torch-compile", "drjit", "warp", "tensorflow", "tensorflow-xla",
    "autograd", "pytensor", "casadi", "complex-step", "fd",
)


@lru_cache(maxsize=1)
def _registry() -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for b in getattr(module, "BACKENDS", ()):
            if b.name in found:
                raise RuntimeError(f"backend name {b.name!r} registered twice")
            found[b.name] = b
    rank = {n: i for i, n in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def names() -> list[str]:
    """All registered backend names, available or not, in display order."""
    return list(_registry())


def backend(name: str) -> Backend:
    """Look a backend up by name; an unknown name is a ValueError listing the known ones."""
    reg = _registry()
    if not isinstance(name, str) or name not in reg:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(reg)}")
    return reg[name]


def all_backends() -> list[Backend]:
    return list(_registry().values())


__all__ = [
    "Backend", "DescentResult", "Prepared", "TBL3_ITERATIONS", "TBL3_STEP", "all_backends",
    "backend", "names", "python_descent",
]
