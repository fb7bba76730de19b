"""The one interface every gradient backend implements (DESIGN.md "The one interface").

A backend is looked up by name, says whether it can run here (``available()``), and turns a
problem into a value-and-gradient callable in ``prepare()``, where all set-up, compilation and
tracing happen, so that what is timed afterwards is the gradient alone.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import Problem, is_problem

# the Tbl. 3 workload (``workload.py``): the fused drivers' defaults and results
from ..workload import TBL3_ITERATIONS, TBL3_STEP, VG, DescentResult

VGB = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


class Prepared:
    """What ``Backend.prepare`` returns: ``vg(u) -> (J, grad)`` plus what was prepared.

    ``device``/``dtype`` say where and in what precision it actually runs; ``compile_s`` is the
    backend's own account of JIT/AOT time spent in prepare (None when there is none);
    ``info`` holds anything else worth recording with a result (e.g. library versions).
    """

    __slots__ = ("_fn", "problem", "device", "dtype", "compile_s", "info")

    def __init__(
        self, fn: VG, problem: Problem, *, device: str = "cpu", dtype: str = "float64",
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


class PreparedBatch(Prepared):
    """What ``Backend.prepare_batch`` returns: ``vgb(U) -> (J[B], G[B, n_u])`` (docs/DESIGN.md).

    ``idiom`` says how the batch is computed ("vmap", "batch axis", "threads", "loop", ...);
    "loop" is the base class's fallback that calls ``vg`` once per row.
    """

    __slots__ = ("idiom",)

    def __init__(self, fn: VGB, problem: Problem, *, idiom: str, **kw: Any) -> None:
        super().__init__(fn, problem, **kw)  # type: ignore[arg-type]
        self.idiom = idiom

    def __call__(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        return self._fn(U)  # type: ignore[return-value]


class BatchCost:
    """What ``Backend.prepare_cost_batch`` returns: forward-only ``costs(U) -> J[B]``.

    ``idiom`` says how the members are computed, as ``PreparedBatch.idiom``; "loop" is the base
    class's fallback that calls the single forward-only cost once per row.  The scaling study
    divides a batch's gradient time by this one's only when both use the same idiom.
    """

    __slots__ = ("_fn", "idiom")

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], idiom: str) -> None:
        self._fn = fn
        self.idiom = idiom

    def __call__(self, U: np.ndarray) -> np.ndarray:
        return self._fn(U)


def check_controls(problem: Problem, U: Any) -> np.ndarray:
    """``U`` as a C-contiguous float64 array of shape (B, n_control), B >= 1, or ValueError."""
    arr = np.asarray(U)
    if arr.ndim != 2 or arr.shape[1] != problem.n_control:
        raise ValueError(
            f"batched controls must have shape (B, {problem.n_control}) for control {problem.control!r}, got {arr.shape}"
        )
    if arr.shape[0] < 1:
        raise ValueError("batched controls must have at least one row (B >= 1)")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"batched controls must be real, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~np.all(np.isfinite(arr), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"batched controls must be finite ({rows.size} row(s) with non-finite entries, first row {rows[0]})")
    return arr


def native_descent(
    descent: Callable[[np.ndarray, int, float], tuple[np.ndarray, np.ndarray]], iterations: int, step: float,
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


#: the thread count of the OpenMP batches (cython, fortran): the user's, read at prepare
THREADS_ENV = "OMP_NUM_THREADS"


def requested_threads(default: int) -> int:
    """The thread count the user asked for (OMP_NUM_THREADS, read now), else ``default``.

    OMP_NUM_THREADS may be a list ("4,2", one count per nesting level): the first entry counts.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return max(1, int(default))
    first = raw.split(",")[0].strip()
    try:
        value = int(first)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}")
    return value


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
    #: the models (docs/DESIGN.md) this backend computes; ``prepare`` refuses the others
    models: tuple[str, ...] = ("lorenz63",)
    #: a derivative approximation (complex step, differences): never timed, not an adjoint
    reference: bool = False
    fused: bool = False
    #: the models the fused driver handles (default: every model when ``fused``)
    fused_models: tuple[str, ...] | None = None
    #: how ``prepare_batch`` computes a batch when ``_prepare_batch`` is defined
    batch_idiom: str = "loop"
    #: seconds per call, not microseconds (e.g. eager JAX): tests and quick benchmarks use short windows
    slow: bool = False
    #: runs code compiled for the problem (a compiler, a JIT, XLA, a generated kernel), not an
    #: interpreter, a tape replayed op by op or eager dispatch: the backends the scaling study holds
    #: to the cheap-gradient bound (``report.scale.scale_targets``)
    compiled: bool = False
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

    def supports(self, model: str) -> tuple[bool, str]:
        """(True, '') when this backend computes ``model``, else (False, reason)."""
        if model in self.models:
            return True, ""
        return False, f"backend {self.name!r} does not implement model {model!r} (it implements {', '.join(self.models)})"

    def has_fused(self, model: str) -> bool:
        return self.fused and model in (self.fused_models if self.fused_models is not None else self.models)

    def _check_problem(self, problem: Any, what: str) -> None:
        if not is_problem(problem):
            raise ValueError(f"{what}() needs a problem (Lorenz63Problem, Lorenz96Problem), got {type(problem).__name__}")
        ok, reason = self.supports(problem.model)
        if not ok:
            raise ValueError(reason)

    def _handler(self, stem: str, model: str) -> Callable[..., Any]:
        # lorenz63 is ``_<stem>``; another model ``_<stem>_<model>`` (e.g. _prepare_lorenz96)
        return getattr(self, f"_{stem}" if model == "lorenz63" else f"_{stem}_{model}")

    def prepare(self, problem: Problem, *, device: str | None = None, dtype: str = "float64") -> Prepared:
        """Compile/trace for ``problem``; return the value-and-gradient callable."""
        self._check_problem(problem, "prepare")
        device = self._check_options(device, dtype)
        return self._handler("prepare", problem.model)(problem, device=device, dtype=dtype)

    def _prepare(self, problem: Any, *, device: str, dtype: str) -> Prepared:
        raise NotImplementedError

    def prepare_batch(self, problem: Problem, *, device: str | None = None, dtype: str = "float64") -> PreparedBatch:
        """``vgb(U) -> (J[B], G[B, n_u])`` for controls U of shape (B, n_u) (docs/DESIGN.md).

        Backends with a batched idiom define ``_prepare_batch`` (all models) and set
        ``batch_idiom``; the others get this class's loop over ``vg`` (idiom "loop").
        """
        self._check_problem(problem, "prepare_batch")
        device = self._check_options(device, dtype)
        own = getattr(self, "_prepare_batch", None)
        if own is not None:
            return own(problem, device=device, dtype=dtype)
        vg = self._handler("prepare", problem.model)(problem, device=device, dtype=dtype)
        return loop_batch(vg)

    def has_cost(self, model: str) -> bool:
        """Whether ``prepare_cost`` (forward-only J) exists for ``model``."""
        return model in self.models and hasattr(self, "_prepare_cost" if model == "lorenz63" else f"_prepare_cost_{model}")

    def prepare_cost(
        self, problem: Problem, *, device: str | None = None, dtype: str = "float64",
    ) -> Callable[[np.ndarray], float]:
        """Forward-only ``J(u)`` by the same tool and code path as ``prepare`` (no gradient, no tape).

        The scaling study divides the gradient's time by this one's (the cheap-gradient ratio).
        """
        self._check_problem(problem, "prepare_cost")
        if not self.has_cost(problem.model):
            raise ValueError(f"backend {self.name!r} has no forward-only cost for model {problem.model!r}")
        device = self._check_options(device, dtype)
        return self._handler("prepare_cost", problem.model)(problem, device=device, dtype=dtype)

    def prepare_cost_batch(self, problem: Problem, *, device: str | None = None, dtype: str = "float64") -> BatchCost:
        """Forward-only ``costs(U) -> J[B]`` for controls U of shape (B, n_u), by the batch idiom.

        Backends with a batched forward define ``_prepare_cost_batch`` (all models; it may return
        None for a model it does not batch); the others get a loop over ``prepare_cost``.
        """
        self._check_problem(problem, "prepare_cost_batch")
        if not self.has_cost(problem.model):
            raise ValueError(f"backend {self.name!r} has no forward-only cost for model {problem.model!r}")
        device = self._check_options(device, dtype)
        own = getattr(self, "_prepare_cost_batch", None)
        fn = own(problem, device=device, dtype=dtype) if own is not None else None
        if fn is not None:
            return BatchCost(fn, self.batch_idiom)
        cost = self._handler("prepare_cost", problem.model)(problem, device=device, dtype=dtype)

        def loop(U: np.ndarray) -> np.ndarray:
            U = check_controls(problem, U)
            return np.array([cost(u) for u in U], dtype=np.float64)

        return BatchCost(loop, "loop")

    def prepare_descent(
        self, problem: Problem, *, iterations: int = TBL3_ITERATIONS, step: float = TBL3_STEP,
        device: str | None = None, dtype: str = "float64",
    ) -> Callable[[np.ndarray], DescentResult]:
        """The fused driver: ``run(u0) -> DescentResult`` with the whole loop inside the backend."""
        self._check_problem(problem, "prepare_descent")
        if not self.has_fused(problem.model):
            raise ValueError(f"backend {self.name!r} has no fused descent driver for model {problem.model!r}")
        check_descent_args(iterations, step)
        device = self._check_options(device, dtype)
        return self._handler("prepare_descent", problem.model)(
            problem, iterations=int(iterations), step=float(step), device=device, dtype=dtype
        )

    def _prepare_descent(
        self, problem: Any, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<backend {self.name} ({self.kind})>"


def loop_batch(vg: Prepared) -> PreparedBatch:
    """The fallback batch: ``vg`` once per row (idiom "loop")."""
    problem = vg.problem

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)
        J = np.empty(U.shape[0])
        G = np.empty(U.shape)
        for b in range(U.shape[0]):
            J[b], G[b] = vg(U[b])
        return J, G

    return PreparedBatch(vgb, problem, idiom="loop", device=vg.device, dtype=vg.dtype, compile_s=vg.compile_s, info=vg.info)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds) — for backends that report their own compile time."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
