"""The one interface every gradient backend implements (DESIGN.md "The one interface").

A backend is looked up by name, says whether it can run here (``available()``), and turns a
problem into a value-and-gradient callable in ``prepare()``, where all set-up, compilation and
tracing happen, so that what is timed afterwards is the gradient alone.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..problem import Lorenz63Problem

#: the Tbl. 3 workload: 101 value-and-gradient evaluations of steepest descent on the state
TBL3_ITERATIONS = 101
TBL3_STEP = 5e-4

VG = Callable[[np.ndarray], "tuple[float, np.ndarray]"]


@dataclass(frozen=True)
class DescentResult:
    """Outcome of steepest descent: final control and J at each evaluated iterate."""

    u: np.ndarray
    costs: np.ndarray


class Prepared:
    """What ``Backend.prepare`` returns: ``vg(u) -> (J, grad)`` plus what was prepared.

    ``device``/``dtype`` say where and in what precision it actually runs; ``compile_s`` is the
    backend's own account of JIT/AOT time spent in prepare (None when there is none);
    ``info`` holds anything else worth recording with a result (e.g. library versions).
    """

    __slots__ = ("_fn", "problem", "device", "dtype", "compile_s", "info")

    def __init__(
        self, fn: VG, problem: Lorenz63Problem, *, device: str = "cpu", dtype: str = "float64",
        compile_s: float | None = None, info: dict[str, Any] | None = None,
    ) -> None:
        self._fn = fn
        self.problem = problem
        self.device = device
        self.dtype = dtype
        self.compile_s = compile_s
        self.info = dict(info or {})

    def __call__(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        return self._fn(u)

    def __repr__(self) -> str:
        return f"Prepared(device={self.device!r}, dtype={self.dtype!r}, compile_s={self.compile_s!r})"


def python_descent(
    vg: Callable[[np.ndarray], tuple[float, np.ndarray]], u0: np.ndarray,
    iterations: int = TBL3_ITERATIONS, step: float = TBL3_STEP,
) -> DescentResult:
    """Steepest descent driven from Python: u <- u - step * grad, ``iterations`` evaluations.

    This is the Tbl. 3 workload for every backend; a fused driver must reproduce its iterates.
    """
    u = np.array(u0, dtype=np.float64)
    costs = np.empty(iterations)
    for i in range(iterations):
        J, g = vg(u)
        costs[i] = J
        u = u - step * g
    return DescentResult(u=u, costs=costs)


def native_descent(
    descent: Callable[[np.ndarray, int, float], "tuple[np.ndarray, np.ndarray]"], iterations: int, step: float,
) -> Callable[[np.ndarray], DescentResult]:
    """The fused driver of a native kernel whose ``descent(u0, iterations, step)`` returns (u, costs)."""

    def run(u0: np.ndarray) -> DescentResult:
        u, costs = descent(u0, iterations, step)
        return DescentResult(u=u, costs=costs)

    return run


def check_descent_args(iterations: int, step: float) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if not (isinstance(step, (int, float, np.floating)) and np.isfinite(step)):
        raise ValueError(f"step must be a finite number, got {step!r}")


def missing_modules(*modules: str) -> str | None:
    """Reason string when any of the modules cannot be found (without importing them)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"missing Python package(s): {', '.join(missing)}"
    return None


class Backend:
    """Base class: subclasses set ``name``, ``kind``, ``description`` and implement ``_prepare``.

    Optional: ``fused = True`` and ``_prepare_descent`` for a descent loop compiled inside the
    backend; ``devices()``/``dtypes`` for accelerators and precisions other than CPU/float64.
    Heavy imports belong inside methods so that importing the package never needs them.
    """

    name: str = ""
    kind: str = ""
    description: str = ""
    fused: bool = False
    #: seconds per call, not microseconds (e.g. eager JAX): tests and quick benchmarks use short windows
    slow: bool = False
    dtypes: tuple[str, ...] = ("float64",)
    #: modules that must be importable for ``available()``
    requires: tuple[str, ...] = ()
    #: native extension ``adjointbench.<native_module>`` that must have been built, if any
    native_module: str | None = None

    def available(self) -> tuple[bool, str]:
        reason = missing_modules(*self.requires)
        if reason:
            return False, reason
        if self.native_module:
            from .. import native

            mod, reason = native.load(self.native_module)
            if mod is None:
                return False, reason
        return True, ""

    def devices(self) -> list[str]:
        """Devices this backend can run on here (first is the default)."""
        return ["cpu"]

    def _check_options(self, device: str | None, dtype: str) -> str:
        ok, reason = self.available()
        if not ok:
            raise ValueError(f"backend {self.name!r} is unavailable: {reason}")
        if dtype not in self.dtypes:
            raise ValueError(f"backend {self.name!r} supports dtype {', '.join(self.dtypes)}, not {dtype!r}")
        devices = self.devices()
        device = device or devices[0]
        if device not in devices:
            raise ValueError(f"backend {self.name!r} cannot run on device {device!r} here (has {', '.join(devices)})")
        return device

    def prepare(self, problem: Lorenz63Problem, *, device: str | None = None, dtype: str = "float64") -> Prepared:
        """Compile/trace for ``problem``; return the value-and-gradient callable."""
        if not isinstance(problem, Lorenz63Problem):
            raise ValueError(f"prepare() needs a Lorenz63Problem, got {type(problem).__name__}")
        device = self._check_options(device, dtype)
        return self._prepare(problem, device=device, dtype=dtype)

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        raise NotImplementedError

    def prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int = TBL3_ITERATIONS, step: float = TBL3_STEP,
        device: str | None = None, dtype: str = "float64",
    ) -> Callable[[np.ndarray], DescentResult]:
        """The fused driver: ``run(u0) -> DescentResult`` with the whole loop inside the backend."""
        if not self.fused:
            raise ValueError(f"backend {self.name!r} has no fused descent driver")
        if not isinstance(problem, Lorenz63Problem):
            raise ValueError(f"prepare_descent() needs a Lorenz63Problem, got {type(problem).__name__}")
        check_descent_args(iterations, step)
        device = self._check_options(device, dtype)
        return self._prepare_descent(problem, iterations=int(iterations), step=float(step), device=device, dtype=dtype)

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<backend {self.name} ({self.kind})>"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds) — for backends that report their own compile time."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
