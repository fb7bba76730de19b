"""Backend ``numba``: the hand adjoint of ``hand_adjoint.py`` (List 2) compiled by ``numba.njit``.

One Python source serves ``numpy`` and ``numba``: ``model.forward``, ``hand_adjoint.adjoint``
and ``hand_adjoint.value_and_grad`` are compiled as they are, in nopython mode, float64.
Numba resolves a call inside a jitted function through the function's module globals, where
``forward`` and ``adjoint`` are the plain Python functions, which nopython mode cannot call.
So ``_rebound`` makes new function objects from the *same code objects* whose globals name the
jitted callees instead, and jits those; the source modules are left untouched (the ``numpy``
backend and the complex-step reference keep running them interpreted).

Per-call overhead is most of what separates this backend from C at the paper's problem
(about a microsecond of work per gradient), so:
- the compiled entry ``vg_entry`` takes just the control vector, the observation steps, one
  work buffer holding every other array, and the output gradient (numba dispatch costs
  ~0.05 us per array argument, and boxing a returned array ~0.3 us);
- every entry is compiled for explicit signatures in ``prepare``, so the dispatcher never
  compiles at call time and matches arguments against one signature;
- ``problem.check_control`` (a few microseconds of NumPy calls) runs only when the input is
  not already a C-contiguous writable float64 vector of the right length; the exact same
  inputs are accepted and rejected either way.

Lorenz-96 (``_numba_lorenz96.py``, imported on first use): the RK4 adjoint of
``models/lorenz96_equations.py`` as typed loops over the N variables, states stored in a
trajectory allocated once per prepare, RK4 stages recomputed in the backward sweep; there the
work is O(N) per step, so the input always goes through ``check_control``.

Batches (both models, ``batch_idiom = "threads"``): one ``parallel=True`` entry whose
``numba.prange`` runs one member per iteration, each on its own (B, ...) work arrays allocated
per call, on ``numba.get_num_threads()`` threads (``numba.set_num_threads`` /
``NUMBA_NUM_THREADS``).  Each group of entries (Lorenz-63, its batch, Lorenz-96, its batch) is
compiled on first use, so a Lorenz-63 prepare never pays for the others' compilation.
"""

from __future__ import annotations

import threading
import time
import types
from typing import Any, Callable

import numpy as np

from .. import hand_adjoint, model
from ..models import Lorenz96Problem
from ..problem import Lorenz63Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch, check_controls

_F64 = np.dtype(np.float64)
#: J = 1/2 sum of squares is never negative: the entry's way of saying "input not finite"
_NOT_FINITE = -1.0

_lock = threading.RLock()
_compiled: dict[str, Any] = {}
_compile_s = 0.0
#: the Lorenz-63 kernel the entries call, for the batched entry (set by ``_build``)
_inner: dict[str, Any] = {}
#: the other groups of entries, compiled on first use: "l63_batch", "l96", "l96_batch"
_groups: dict[str, dict[str, Any]] = {}
_group_s: dict[str, float] = {}


def _rebound(fn: Callable, **callees: Callable) -> Callable:
    """``fn``'s own code with some global names bound to other (jitted) functions."""
    glb = dict(fn.__globals__)
    glb.update(callees)
    return types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)


def _build() -> dict[str, Any]:
    """Compile the kernels once per process (njit, eager, explicit signatures)."""
    import numba
    from numba import float64, int64, types, void

    C1 = float64[::1]
    C2 = float64[:, ::1]
    # the problem's observation arrays are read-only (and only read)
    I1 = types.Array(int64, 1, "C", readonly=True)
    R2 = types.Array(float64, 2, "C", readonly=True)
    f = float64
    forward = numba.njit(void(C2, f, f, f, f, int64))(model.forward)
    adjoint = numba.njit(void(C2, f, f, f, f, int64, I1, C2, C2, C1))(_rebound(hand_adjoint.adjoint, forward=forward))
    kernel = numba.njit(f(f, f, f, f, f, f, f, I1, R2, C2, C2, C2, C1))(
        _rebound(hand_adjoint.value_and_grad, forward=forward, adjoint=adjoint)
    )
    _inner["kernel"] = kernel

    def views(steps, work):
        # one float64 buffer holds everything but the steps: three dispatched arguments instead
        # of eight save ~0.4 us a call (see _work_buffer for the layout)
        K = steps.shape[0]
        N = steps[K - 1] + 1
        a = 10 + 6 * K
        p = work[:4]
        obs = work[4:4 + 3 * K].reshape((K, 3))
        grad = work[4 + 3 * K:10 + 3 * K]
        d = work[10 + 3 * K:a].reshape((K, 3))
        w = work[a:a + 3 * N].reshape((N, 3))
        v = work[a + 3 * N:a + 6 * N].reshape((N, 3))
        return p, obs, grad, d, w, v

    def evaluate(u, steps, p, obs, grad, d, w, v):
        if u.shape[0] == 6:
            return kernel(u[0], u[1], u[2], u[3], u[4], u[5], p[3], steps, obs, w, v, d, grad)
        return kernel(u[0], u[1], u[2], p[0], p[1], p[2], p[3], steps, obs, w, v, d, grad)

    def vg_entry(u, steps, work, out):
        # out: the caller's fresh gradient, filled here while the GIL is held (the work buffer
        # is shared by every call of one prepared vg, from any thread)
        for i in range(u.shape[0]):
            if not np.isfinite(u[i]):
                return _NOT_FINITE
        p, obs, grad, d, w, v = views(steps, work)
        J = evaluate(u, steps, p, obs, grad, d, w, v)
        for i in range(out.shape[0]):
            out[i] = grad[i]
        return J

    def descent(u, iterations, step, steps, work, costs):
        # the Tbl. 3 loop of python_descent, with the same update u <- u - step * grad
        p, obs, grad, d, w, v = views(steps, work)
        for it in range(iterations):
            costs[it] = evaluate(u, steps, p, obs, grad, d, w, v)
            for j in range(u.shape[0]):
                u[j] = u[j] - step * grad[j]

    views = numba.njit(views)
    evaluate = numba.njit(evaluate)
    return {
        "vg": numba.njit(f(C1, I1, C1, C1))(vg_entry),
        "descent": numba.njit(void(C1, int64, f, I1, C1, C1))(descent),
    }


def _kernels() -> tuple[dict[str, Any], float]:
    """(compiled entries, seconds this call spent compiling: 0 once compiled in this process)."""
    global _compile_s
    import numba  # noqa: F401 - imported before the clock starts: the import is not compilation

    with _lock:
        if _compiled:
            return _compiled, 0.0
        t0 = time.perf_counter()
        _compiled.update(_build())
        _compile_s = time.perf_counter() - t0
        return _compiled, _compile_s


def _batch63(U, p, steps, obs, w, v, d, grad, J, G):
    # one member per prange iteration, each with its own w, v, d, grad (the List 2 kernel's work);
    # ``kernel`` and ``numba`` are bound by _rebound in _build_batch63
    nc = U.shape[1]
    for b in numba.prange(U.shape[0]):  # noqa: F821
        u = U[b]
        if nc == 6:
            J[b] = kernel(u[0], u[1], u[2], u[3], u[4], u[5], p[3], steps, obs, w[b], v[b], d[b], grad[b])  # noqa: F821
        else:
            J[b] = kernel(u[0], u[1], u[2], p[0], p[1], p[2], p[3], steps, obs, w[b], v[b], d[b], grad[b])  # noqa: F821
        for i in range(nc):
            G[b, i] = grad[b, i]


def _build_batch63() -> dict[str, Any]:
    """The Lorenz-63 batched entry: prange over members calling the compiled List 2 kernel."""
    import numba
    from numba import float64, int64, types, void

    _kernels()  # the kernel it calls (compiled once, counted in the Lorenz-63 group)
    C1 = float64[::1]
    C2 = float64[:, ::1]
    C3 = float64[:, :, ::1]
    I1 = types.Array(int64, 1, "C", readonly=True)
    R2 = types.Array(float64, 2, "C", readonly=True)
    fn = _rebound(_batch63, kernel=_inner["kernel"], numba=numba)
    return {"batch": numba.njit(void(C2, C1, I1, R2, C3, C3, C3, C2, C1, C2), parallel=True)(fn)}


def _build_l96() -> dict[str, Any]:
    from . import _numba_lorenz96

    return _numba_lorenz96.build_single()


def _build_l96_batch() -> dict[str, Any]:
    from . import _numba_lorenz96

    return _numba_lorenz96.build_batch()


_BUILDERS = {"l63_batch": _build_batch63, "l96": _build_l96, "l96_batch": _build_l96_batch}


def _group(name: str) -> tuple[dict[str, Any], float]:
    """(entries of group ``name``, seconds this call spent compiling them: 0 once compiled)."""
    import numba  # noqa: F401 - imported before the clock starts
    if name.startswith("l96"):
        from . import _numba_lorenz96  # noqa: F401 - module import (lazy njit) is not compilation

    with _lock:
        if name in _groups:
            return _groups[name], 0.0
        # compile what a batch entry calls outside its group's clock (counted in its own group)
        if name == "l63_batch":
            _kernels()
        elif name == "l96_batch":
            _group("l96")
        t0 = time.perf_counter()
        entries = _BUILDERS[name]()
        _group_s[name] = time.perf_counter() - t0
        _groups[name] = entries
        return entries, _group_s[name]


def _work_buffer(problem: Lorenz63Problem) -> tuple[np.ndarray, np.ndarray]:
    """(steps, work) for the compiled entries, allocated once per prepare.

    work = [sigma, r, beta, dt | obs (K x 3) | grad (6) | d (K x 3) | w (N x 3) | v (N x 3)]
    with K observations and N = last observation step + 1 states.
    """
    steps = np.ascontiguousarray(problem.obs_steps, dtype=np.int64)
    k = len(steps)
    n = problem.last_obs_step + 1
    work = np.zeros(10 + 6 * k + 6 * n)
    work[:4] = [problem.params["sigma"], problem.params["r"], problem.params["beta"], problem.dt]
    work[4:4 + 3 * k] = problem.obs_values.ravel()
    return steps, work


def _writable(a: np.ndarray) -> np.ndarray:
    """``a``, or a copy when it is read-only (the compiled signatures take writable arrays)."""
    return a if a.flags.writeable else a.copy()


def _info(**extra: Any) -> dict[str, Any]:
    import numba

    return {"numba": numba.__version__, "compile_s_in_process": _compile_s, **extra}


class NumbaBackend(Backend):
    name = "numba"
    kind = "hand adjoint"
    description = (
        "hand adjoints compiled by numba.njit: List 2 from the numpy backend's source (Lorenz-63); "
        "typed RK4 loops with stored states, recomputed stages (Lorenz-96); prange over members (batches)"
    )
    models = ("lorenz63", "lorenz96")
    fused = True
    batch_idiom = "threads"
    requires = ("numba",)

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        kernels, spent = _kernels()
        entry = kernels["vg"]
        steps, work = _work_buffer(problem)
        n = problem.n_control
        shape = (n,)
        empty = np.empty
        check = problem.check_control
        ndarray = np.ndarray

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            # fast path: exactly the compiled signature; anything else through the full check
            if not (type(u) is ndarray and u.dtype is _F64 and u.shape == shape and u.flags.c_contiguous
                    and u.flags.writeable):
                u = np.array(check(u))
            g = empty(n)
            J = entry(u, steps, work, g)
            if J == _NOT_FINITE:
                raise ValueError("control vector must be finite")
            return J, g

        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=spent, info=_info())

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        kernels, _ = _kernels()
        descent = kernels["descent"]
        steps, work = _work_buffer(problem)

        def run(u0: np.ndarray) -> DescentResult:
            u = np.array(problem.check_control(u0))
            costs = np.empty(iterations)
            descent(u, iterations, step, steps, work, costs)
            return DescentResult(u=u, costs=costs)

        return run

    # ---- Lorenz-96 ---------------------------------------------------------------------------
    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        from ._numba_lorenz96 import Data

        kernels, spent = _group("l96")
        entry = kernels["vg"]
        data = Data(problem)
        args = data.args()
        # trajectory and work block once per prepare; calls hold the GIL (no nogil), so calls of
        # one vg from several threads run one at a time and never share them concurrently
        X, W = data.work()
        n = problem.n_control
        check = problem.check_control

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            u = check(u)  # shape, real, finite (ValueError) before native code
            if not u.flags.writeable:  # the compiled signature takes a writable vector
                u = u.copy()
            g = np.empty(n)
            J = entry(u, *args, X, W, g)
            return J, g

        return Prepared(
            vg, problem, device=device, dtype=dtype, compile_s=spent,
            info=_info(compile_s_l96_in_process=_group_s["l96"]),
        )

    def _prepare_descent_lorenz96(
        self, problem: Lorenz96Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        from ._numba_lorenz96 import Data

        kernels, _ = _group("l96")
        descent = kernels["descent"]
        data = Data(problem)
        args = data.args()
        X, W = data.work()

        def run(u0: np.ndarray) -> DescentResult:
            u = np.array(problem.check_control(u0))  # a copy: the caller's u0 is left alone
            g = np.empty(problem.n_control)
            costs = np.empty(iterations)
            descent(u, iterations, step, *args, X, W, g, costs)
            return DescentResult(u=u, costs=costs)

        return run

    # ---- batches (both models): numba.prange over members, numba's thread count ----------------
    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        import numba

        group = "l96_batch" if problem.model == "lorenz96" else "l63_batch"
        kernels, spent = _group(group)
        make = self._vgb96 if problem.model == "lorenz96" else self._vgb63
        vgb = make(problem, kernels["batch"])
        return PreparedBatch(
            vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=spent,
            # the count at prepare; prange uses numba.get_num_threads() of the calling thread
            # at each call (numba.set_num_threads / NUMBA_NUM_THREADS)
            info=_info(threads=numba.get_num_threads(), threading_layer_requested=numba.config.THREADING_LAYER,
                       **{f"compile_s_{group}_in_process": _group_s[group]}),
        )

    @staticmethod
    def _vgb96(problem: Lorenz96Problem, batch: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        from ._numba_lorenz96 import Data

        data = Data(problem)
        args = data.args()

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U = _writable(check_controls(problem, U))  # shape, B >= 1, real, finite rows: before native code
            B = U.shape[0]
            X, W = data.work(B)  # per call: each member its own trajectory and work block
            J, G = np.empty(B), np.empty(U.shape)
            batch(U, *args, X, W, G, J)
            return J, G

        return vgb

    @staticmethod
    def _vgb63(problem: Lorenz63Problem, batch: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        steps = np.array(problem.obs_steps, dtype=np.int64)
        obs = np.array(problem.obs_values, dtype=np.float64, order="C")
        steps.setflags(write=False)  # the kernel's signature takes them read-only
        obs.setflags(write=False)
        p = np.array([problem.params["sigma"], problem.params["r"], problem.params["beta"], problem.dt])
        nstates, k = problem.last_obs_step + 1, len(steps)

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U = _writable(check_controls(problem, U))
            B = U.shape[0]
            w, v = np.empty((B, nstates, 3)), np.empty((B, nstates, 3))
            d, grad = np.empty((B, k, 3)), np.zeros((B, 6))
            J, G = np.empty(B), np.empty(U.shape)
            batch(U, p, steps, obs, w, v, d, grad, J, G)
            return J, G

        return vgb


BACKENDS = [NumbaBackend()]
