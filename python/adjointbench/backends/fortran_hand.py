"""Backend ``fortran``: the hand adjoints of both models in modern Fortran, called through ctypes.

Lorenz-63: paper List 1 and List 2, ``kernels/fortran/lorenz63_adjoint.f90``, line by line as
``model.py`` and ``hand_adjoint.py`` (the same operations in the same order: the same bits).
Lorenz-96: the RK4 adjoint of ``models/lorenz96_equations.py`` (stored states, RK4 stages
recomputed in the backward sweep), ``kernels/fortran/lorenz96_adjoint.f90``: NumPy's lines
operation for operation; only the reductions (J's sums, F-bar) run in index order, not
pairwise, so the numbers equal NumPy's and the Cython kernel's to rounding.

The two files are one shared library, ``adjointbench/_fortran_adjoint<EXT_SUFFIX>``, built by
``build_tools/ext_fortran.py`` with ``gfortran -O3 -fPIC -ffp-contract=off [-fopenmp]``.  Its
routines are ``bind(c)`` (iso_c_binding: scalars by value, explicit-shape arrays whose sizes
come first, an integer status); there is no Python in it, so it is loaded with ctypes, not
imported.  ctypes (``CDLL``) releases the GIL for the call.

The price of ctypes is the crossing, paid per call.  Measured on the loaded 2-thread EPYC VM
(CPU time, best of 9 rounds): a ctypes call with no arguments 0.10 us, with the 12 of
``ab63_value_and_grad`` 0.64 us; the whole ``vg`` at the paper problem 3.7 us against the Cython
backend's 2.3 us, while the Fortran kernel itself is as fast as the Cython one (the fused Tbl. 3
loop, which crosses once: 1.39 vs 1.30 us per iteration).  So about 1.4 us per call is binding:
ctypes' argument conversion, copying the control in and the gradient out with NumPy, the
lock.  At Lorenz-96 sizes it vanishes (N = 4000, 40 steps: 1.41 ms per gradient against
Cython's 1.36 ms; forward-only J 0.46 ms against 0.41 ms).  To keep it at that, every
argument but the control is a ctypes object built once in ``prepare`` (pointers to work
arrays allocated there, sizes, scalars), and a call copies the control into a buffer, calls,
and copies the gradient out.  A Cython wrapper linking the same objects would remove most of
the 1.4 us at the paper problem.

Sizes and indices are checked here, in Python, before any native call: the problem's data
when a kernel is built (the Fortran trusts them: no bounds checks at -O3), the control's
shape and dtype at every call (anything but a float64 vector of the right length goes to
``problem.check_control``, which converts it or raises ValueError).  The Fortran checks only
that the control is finite and returns status 1 if not (a ValueError here).  Work arrays are
shared by the calls of one prepared kernel; a call that finds them in use by another thread
(the GIL is released during the call) allocates its own.

Forward-only cost (``prepare_cost``): the gradient's forward sweep by the same Fortran
procedures, J summed in the same order, keeping only the current state: J equals the
gradient's J to the last bit.  Fused driver (``prepare_descent``): the Tbl. 3 loop in Fortran,
``u <- u - step * grad``, the iterates of ``python_descent`` bit for bit.  Batches (idiom
"threads"): one Fortran call runs the rows in an ``!$omp parallel do`` (dynamic schedule),
each thread with its own work arrays (allocated once, in ``prepare_batch``); the thread
count is read from OMP_NUM_THREADS at prepare time (default: OpenMP's own, the number of
CPUs), capped for Lorenz-96 so that one trajectory per thread stays within the problem's
memory budget, and recorded in ``info["threads"]``; a library built without OpenMP runs the
rows serially (``info["openmp"]`` False, idiom "native loop").  The forward-only batch
(``prepare_cost_batch``: ``ab63_cost_batch``, ``ab96_cost_batch``) runs the cost kernels by the
same idiom, so the scaling study's batch ratio divides like by like.
"""

from __future__ import annotations

import ctypes
import shutil
import sysconfig
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import native
from ..models import Lorenz96Problem
from ..models.lorenz96 import default_memory_budget
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch, check_controls, native_descent, requested_threads

STEM = "_fortran_adjoint"
#: the library's ``ab_abi_version()``: a library built from other sources is refused
ABI_VERSION = 3
MISSING_GFORTRAN = "gfortran not found: apt-get install -y gfortran (tools/system-deps.sh)"
F64 = np.dtype(np.float64)

_i64, _f64, _int, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p


# ---- the library ---------------------------------------------------------------------------

def library_path() -> Path | None:
    """The built library inside the package, or None."""
    here = Path(__file__).resolve().parents[1]
    for name in (STEM + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"), STEM + ".so"):
        if (here / name).is_file():
            return here / name
    return None


def _not_built() -> str:
    why = native.build_status(STEM)
    if not why and shutil.which("gfortran") is None:
        why = MISSING_GFORTRAN
    if MISSING_GFORTRAN in why:
        return MISSING_GFORTRAN
    hint = f" ({why})" if why else ""
    return f"native library adjointbench/{STEM} is not built{hint}; build it with `python setup.py build_ext --inplace`"


@lru_cache(maxsize=1)
def load() -> tuple[Any, str]:
    """(the ctypes library, '') or (None, why it cannot be used)."""
    path = library_path()
    if path is None:
        return None, _not_built()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        return None, f"cannot load {path.name}: {e}"
    try:
        version = lib.ab_abi_version()
    except AttributeError:
        version = None
    if version != ABI_VERSION:
        return None, (f"{path.name} is stale (ABI {version}, expected {ABI_VERSION}); "
                      "rebuild with `python setup.py build_ext --inplace`")
    try:
        for name in ("ab63_value_and_grad", "ab63_cost", "ab63_descent", "ab63_batch", "ab63_cost_batch",
                     "ab96_value_and_grad", "ab96_cost", "ab96_descent", "ab96_batch", "ab96_cost_batch"):
            getattr(lib, name).restype = _int  # the status; the arguments are ctypes objects made here
        lib.ab_compiler.argtypes = [_int, ctypes.c_char_p, _int]
    except AttributeError as e:  # a symbol missing: built from other sources
        return None, f"{path.name} is stale ({e}); rebuild with `python setup.py build_ext --inplace`"
    return lib, ""


def _lib() -> Any:
    lib, reason = load()
    if lib is None:
        raise ValueError(f"backend 'fortran' is unavailable: {reason}")
    return lib


def build_info() -> dict[str, Any]:
    """What the library was built with: compiler version and options, OpenMP."""
    lib = _lib()
    buf = ctypes.create_string_buffer(1024)
    out: dict[str, Any] = {}
    for key, which in (("compiler", 0), ("flags", 1)):
        lib.ab_compiler(which, buf, len(buf))
        out[key] = buf.value.decode(errors="replace")
    out["openmp"] = bool(lib.ab_openmp())
    return out


def _p(arr: np.ndarray) -> ctypes.c_void_p:
    """A ctypes pointer to arr's data (arr must outlive it: the kernels keep their arrays)."""
    return _ptr(arr.ctypes.data)


def _status(st: int) -> None:
    if st:
        raise ValueError("control vector must be finite")


class _Controls:
    """Reads a control into a float64 buffer: the fast path for a float64 vector of the right
    length, else ``check`` (the problem's validation: converts or raises ValueError)."""

    __slots__ = ("shape", "check")

    def __init__(self, n: int, check: Callable[[Any], np.ndarray]) -> None:
        self.shape = (n,)
        self.check = check

    def read(self, u: Any, out: np.ndarray) -> None:
        if u.__class__ is np.ndarray and u.shape == self.shape and u.dtype is F64:
            out[:] = u  # finiteness: checked in Fortran (status 1)
        else:
            out[:] = self.check(u)


def _guarded(call: Any, make_work: Callable[[], tuple], controls: _Controls, grad: bool) -> Callable[[Any], Any]:
    """The Python side of one native routine: ``f(u) -> (J, grad)`` (or J when not ``grad``).

    ``make_work()`` returns (u buffer, gradient buffer or None, J buffer, argument tuple, ...):
    the buffers and the routine's ctypes arguments on them, built once here and shared by the
    calls; a call that finds them in use by another thread (ctypes releases the GIL) makes its
    own.  Locals only, no attribute look-ups: at the paper problem this wrapper is a sizeable
    part of a gradient.
    """
    shared = make_work()
    lock = threading.Lock()
    acquire, release, shape, check = lock.acquire, lock.release, controls.shape, controls.check

    def run(u: Any, work: tuple) -> Any:
        ub, g, J, args = work[:4]
        if u.__class__ is np.ndarray and u.shape == shape and u.dtype is F64:
            ub[:] = u  # finiteness: checked in Fortran (status 1)
        else:
            ub[:] = check(u)
        if call(*args):
            raise ValueError("control vector must be finite")
        return (float(J[0]), g.copy()) if grad else float(J[0])

    def f(u: Any) -> Any:
        if acquire(False):
            try:
                return run(u, shared)
            finally:
                release()
        return run(u, make_work())

    return f


def _threads(lib: Any, problem: Any) -> tuple[int, dict[str, Any]]:
    """(threads, info) for a batch on ``problem``: OMP_NUM_THREADS now, capped by memory (Lorenz-96)."""
    openmp = bool(lib.ab_openmp())
    asked = requested_threads(lib.ab_max_threads())
    threads = asked if openmp else 1
    if isinstance(problem, Lorenz96Problem):
        # one stored trajectory per thread: keep them all within the problem's budget
        budget = default_memory_budget() if problem.memory_budget is None else problem.memory_budget
        threads = max(1, min(threads, budget // max(problem.trajectory_bytes, 1)))
    return threads, {"threads": threads, "threads_requested": asked, "openmp": openmp}


# ---- Lorenz-63 -----------------------------------------------------------------------------

class Kernel63:
    """List 1 / List 2 for one Lorenz-63 problem: validated data, work arrays, prebuilt arguments."""

    def __init__(self, problem: Lorenz63Problem) -> None:
        self.lib = _lib()
        steps = np.ascontiguousarray(problem.obs_steps, dtype=np.int64)
        obs = np.ascontiguousarray(problem.obs_values, dtype=np.float64)
        fixed = np.array([problem.params[k] for k in PARAM_NAMES], dtype=np.float64)
        # the Fortran indexes w(:, steps(k)) and reads obs(3, nobs) unchecked: check here
        if steps.ndim != 1 or steps.size < 1 or steps[0] < 0 or np.any(np.diff(steps) <= 0):
            raise ValueError("observation steps must be a non-empty, strictly increasing vector of steps >= 0")
        if obs.shape != (steps.size, 3):
            raise ValueError(f"observation values must have shape ({steps.size}, 3), got {obs.shape}")
        if problem.n_control not in (3, 6):
            raise ValueError(f"n_control must be 3 or 6, got {problem.n_control}")
        self.problem = problem
        self.nc = problem.n_control
        self.nobs = steps.size
        self.nstates = int(steps[-1]) + 1
        self.controls = _Controls(self.nc, problem.check_control)
        self._keep = (steps, obs, fixed)
        self.data = (_i64(self.nobs), _p(steps), _p(obs))  # nobs, steps, obs
        self.fixed = _p(fixed)
        self.dt = _f64(problem.dt)

    def _work(self) -> tuple:
        """(u, g, J, arguments of ab63_value_and_grad, w, d): buffers and the call on them."""
        w, d = np.empty((self.nstates, 3)), np.empty((self.nobs, 3))
        u, g, J = np.empty(self.nc), np.empty(self.nc), np.empty(1)
        args = (*self.data, _i64(self.nstates), _p(w), _p(d), _i64(self.nc), _p(u), self.fixed, self.dt, _p(g), _p(J))
        return u, g, J, args, w, d

    def vg_fn(self) -> Callable[[Any], tuple[float, np.ndarray]]:
        """vg(u) -> (J, dJ/du), dJ/du a new float64 vector of length n_control."""
        return _guarded(self.lib.ab63_value_and_grad, self._work, self.controls, grad=True)

    def cost_fn(self) -> Callable[[Any], float]:
        """Forward-only J (List 1 on three doubles, nothing stored but the control's buffer)."""

        def work() -> tuple:
            u, J = np.empty(self.nc), np.empty(1)
            return u, None, J, (*self.data, _i64(self.nc), _p(u), self.fixed, self.dt, _p(J))

        return _guarded(self.lib.ab63_cost, work, self.controls, grad=False)

    def descent(self, u0: Any, iterations: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        """The fused Tbl. 3 loop: (final control, J of each evaluated iterate)."""
        u = np.empty(self.nc)
        self.controls.read(u0, u)
        costs = np.empty(iterations)
        w, d = np.empty((self.nstates, 3)), np.empty((self.nobs, 3))
        _status(self.lib.ab63_descent(
            *self.data, _i64(self.nstates), _p(w), _p(d), _i64(self.nc), _p(u), self.fixed, self.dt,
            _i64(iterations), _f64(step), _p(costs),
        ))
        return u, costs

    def batch(self, threads: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """vgb(U) on ``threads`` OpenMP threads, one (w, d) pair per thread allocated here."""
        problem, lib = self.problem, self.lib
        shared = (np.empty((threads, 3 * self.nstates)), np.empty((threads, 3 * self.nobs)))
        lock = threading.Lock()

        def vgb(U: Any) -> tuple[np.ndarray, np.ndarray]:
            U = check_controls(problem, U)  # shape, B >= 1, finite rows: ValueError before Fortran
            B = U.shape[0]
            J, G = np.empty(B), np.empty((B, self.nc))
            own = lock.acquire(False)
            try:
                w, d = shared if own else (np.empty_like(shared[0]), np.empty_like(shared[1]))
                st = lib.ab63_batch(
                    *self.data, _i64(self.nstates), _i64(threads), _p(w), _p(d), _i64(self.nc), _i64(B), _p(U),
                    self.fixed, self.dt, _p(J), _p(G),
                )
            finally:
                if own:
                    lock.release()
            _status(st)
            return J, G

        return vgb

    def cost_batch(self, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        """costs(U) on ``threads`` OpenMP threads, as ``batch`` (no work arrays: the state is on the stack)."""
        problem, lib = self.problem, self.lib

        def costs(U: Any) -> np.ndarray:
            U = check_controls(problem, U)
            J = np.empty(U.shape[0])
            _status(lib.ab63_cost_batch(*self.data, _i64(threads), _i64(self.nc), _i64(U.shape[0]), _p(U), self.fixed,
                                        self.dt, _p(J)))
            return J

        return costs


# ---- Lorenz-96 -----------------------------------------------------------------------------

class Kernel96:
    """The RK4 adjoint for one Lorenz-96 problem: validated data, work arrays, prebuilt arguments."""

    def __init__(self, problem: Lorenz96Problem) -> None:
        self.lib = lib = _lib()
        n = problem.n
        steps = np.ascontiguousarray(problem.obs_steps, dtype=np.int64)
        idx = np.ascontiguousarray(problem.obs_indices, dtype=np.int64)
        obs = np.ascontiguousarray(problem.obs_values, dtype=np.float64)
        # the Fortran indexes X(idx(j), steps(k)) and reads obs, xb unchecked: check here
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 4:
            raise ValueError(f"n must be an integer >= 4, got {n!r}")
        if steps.ndim != 1 or steps.size < 1 or steps[0] < 0 or np.any(np.diff(steps) <= 0):
            raise ValueError("observation steps must be a non-empty, strictly increasing vector of steps >= 0")
        if idx.ndim != 1 or idx.size < 1 or idx[0] < 0 or idx[-1] >= n or np.any(np.diff(idx) <= 0):
            raise ValueError(f"observation indices must be strictly increasing in 0..{n - 1}")
        if obs.shape != (steps.size, idx.size):
            raise ValueError(f"observation values must have shape ({steps.size}, {idx.size}), got {obs.shape}")
        if problem.background is not None:
            xb = np.ascontiguousarray(problem.background, dtype=np.float64)
            if xb.shape != (n,):
                raise ValueError(f"background must have shape ({n},), got {xb.shape}")
        else:
            xb = np.zeros(1)  # not read (has_xb = 0)
        if problem.n_control not in (n, n + 1):
            raise ValueError(f"n_control must be n={n} or n+1={n + 1}, got {problem.n_control}")
        self.problem = problem
        self.n, self.nc = n, problem.n_control
        self.nstates = int(steps[-1]) + 1
        self.nwork = int(lib.ab96_nwork())
        self.controls = _Controls(self.nc, problem.check_control)
        self._keep = (steps, idx, obs, xb)
        # n, nobs, steps, nidx, idx, obs, has_xb, xb, sigma_b, sigma_o, dt, F, nc: every routine's first 13
        self.data = (
            _i64(n), _i64(steps.size), _p(steps), _i64(idx.size), _p(idx), _p(obs), _int(problem.background is not None),
            _p(xb), _f64(problem.sigma_b), _f64(problem.sigma_o), _f64(problem.dt), _f64(problem.F), _i64(self.nc),
        )

    def _work(self) -> tuple:
        """(u[:nc], g[:nc], J, arguments of ab96_value_and_grad, X, W): buffers and the call on
        them (u and g hold n + 1 doubles whatever nc: the Fortran's layout)."""
        n = self.n
        X, W = np.empty((self.nstates, n)), np.empty((self.nwork, n))
        u, g, J = np.empty(n + 1), np.empty(n + 1), np.empty(1)
        args = (*self.data, _p(u), _i64(self.nstates), _p(X), _p(W), _p(g), _p(J))
        return u[: self.nc], g[: self.nc], J, args, X, W

    def vg_fn(self) -> Callable[[Any], tuple[float, np.ndarray]]:
        """vg(u) -> (J, dJ/du), dJ/du a new float64 vector of length n_control."""
        return _guarded(self.lib.ab96_value_and_grad, self._work, self.controls, grad=True)

    def cost_fn(self) -> Callable[[Any], float]:
        """Forward-only J: two states and rk4's four scratch vectors (7 N doubles), no trajectory."""
        n = self.n

        def work() -> tuple:
            X, W, u, J = np.empty((2, n)), np.empty((4, n)), np.empty(n + 1), np.empty(1)
            return u[: self.nc], None, J, (*self.data, _p(u), _i64(self.nstates - 1), _p(X), _p(W), _p(J)), X, W

        return _guarded(self.lib.ab96_cost, work, self.controls, grad=False)

    def descent(self, u0: Any, iterations: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        """The fused Tbl. 3 loop: (final control, J of each evaluated iterate)."""
        n = self.n
        u, g = np.empty(n + 1), np.empty(n + 1)
        self.controls.read(u0, u[: self.nc])
        costs = np.empty(iterations)
        X, W = np.empty((self.nstates, n)), np.empty((self.nwork, n))
        _status(self.lib.ab96_descent(
            *self.data, _p(u), _i64(self.nstates), _p(X), _p(W), _p(g), _i64(iterations), _f64(step), _p(costs),
        ))
        return u[: self.nc].copy(), costs

    def batch(self, threads: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """vgb(U) on ``threads`` OpenMP threads, one trajectory and sweep vectors per thread."""
        problem, lib, n = self.problem, self.lib, self.n
        wsize = n * (self.nwork + 2) + 2  # NWORK vectors, then the thread's control and gradient
        shared = (np.empty((threads, n * self.nstates)), np.empty((threads, wsize)))
        lock = threading.Lock()

        def vgb(U: Any) -> tuple[np.ndarray, np.ndarray]:
            U = check_controls(problem, U)  # shape, B >= 1, finite rows: ValueError before Fortran
            B = U.shape[0]
            J, G = np.empty(B), np.empty((B, self.nc))
            own = lock.acquire(False)
            try:
                X, W = shared if own else (np.empty_like(shared[0]), np.empty_like(shared[1]))
                st = lib.ab96_batch(
                    *self.data, _i64(self.nstates), _i64(threads), _p(X), _p(W), _i64(B), _p(U), _p(J), _p(G),
                )
            finally:
                if own:
                    lock.release()
            _status(st)
            return J, G

        return vgb

    def cost_batch(self, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        """costs(U) on ``threads`` OpenMP threads, as ``batch``: two states and four vectors (and a
        control) per thread instead of a trajectory."""
        problem, lib, n = self.problem, self.lib, self.n
        shared = (np.empty((threads, 2 * n)), np.empty((threads, 5 * n + 1)))
        lock = threading.Lock()

        def costs(U: Any) -> np.ndarray:
            U = check_controls(problem, U)
            J = np.empty(U.shape[0])
            own = lock.acquire(False)
            try:
                X, W = shared if own else (np.empty_like(shared[0]), np.empty_like(shared[1]))
                st = lib.ab96_cost_batch(*self.data, _i64(self.nstates - 1), _i64(threads), _p(X), _p(W),
                                         _i64(U.shape[0]), _p(U), _p(J))
            finally:
                if own:
                    lock.release()
            _status(st)
            return J

        return costs


# ---- the backend ---------------------------------------------------------------------------

class FortranBackend(Backend):
    name = "fortran"
    compiled = True
    kind = "hand adjoint (Fortran)"
    description = "hand adjoints (List 2; Lorenz-96 RK4) in Fortran (gfortran -O3, bind(c), ctypes), OpenMP batches"
    models = ("lorenz63", "lorenz96")
    fused = True
    batch_idiom = "threads"

    def available(self) -> tuple[bool, str]:
        lib, reason = load()
        return (True, "") if lib is not None else (False, reason)

    def _info(self) -> dict[str, Any]:
        path = library_path()
        return {**build_info(), "library": path.name if path else None, "binding": "ctypes"}

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return Prepared(Kernel63(problem).vg_fn(), problem, device=device, dtype=dtype, info=self._info())

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return Prepared(Kernel96(problem).vg_fn(), problem, device=device, dtype=dtype, info=self._info())

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        # List 1 on three doubles: the gradient's forward step and J order, nothing stored
        return Kernel63(problem).cost_fn()

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        # the gradient's forward sweep keeping only the current state (7 N doubles, not the trajectory)
        return Kernel96(problem).cost_fn()

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(Kernel63(problem).descent, iterations, step)

    def _prepare_descent_lorenz96(
        self, problem: Lorenz96Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(Kernel96(problem).descent, iterations, step)

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        kernel = Kernel96(problem) if isinstance(problem, Lorenz96Problem) else Kernel63(problem)
        threads, info = _threads(kernel.lib, problem)
        idiom = self.batch_idiom if info["openmp"] else "native loop"
        return PreparedBatch(kernel.batch(threads), problem, idiom=idiom, device=device, dtype=dtype,
                             info={**self._info(), **info})

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray] | None:
        # the gradient batch's idiom around the forward-only kernels (a library without OpenMP
        # runs both as native loops: the base class's loop over prepare_cost is then the match)
        kernel = Kernel96(problem) if isinstance(problem, Lorenz96Problem) else Kernel63(problem)
        threads, info = _threads(kernel.lib, problem)
        return kernel.cost_batch(threads) if info["openmp"] else None


BACKENDS = [FortranBackend()]
