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

Forward-only cost (``prepare_cost``, the cheap-gradient ratio's denominator), compiled like the
gradient for one explicit signature, inputs checked as for ``vg``: Lorenz-63 runs List 1 on three
scalars, J summed as in List 2's kernel; Lorenz-96 the gradient's ``rk4_step`` on two alternating
state rows.  Neither stores the trajectory, and each J equals the gradient's J to the last bit.

Batches (both models, ``batch_idiom = "threads"``): one ``parallel=True`` entry whose
``numba.prange`` runs T = min(B, ``numba.get_num_threads()``) work slots, each slot (one
trajectory and the kernel's work arrays) serving a contiguous block of members in turn, so the
memory is T slots, not B trajectories.  T is capped so that the slots and the results fit in the
problem's memory budget (``memory_budget`` / ADJOINTBENCH_MEMORY_BUDGET, read at prepare), as the
cython backend caps its OpenMP threads; a batch that cannot fit even one slot is a ValueError
with the bytes, raised before anything is allocated.  The slots are kept by the prepared vgb and
reused by the next call (allocating and first-touching them cost ~20 ms a call at N = 40000);
a call that finds them in use by another thread gets fresh ones (see ``_Slots``).
Each group of entries (Lorenz-63, its batch, its cost, Lorenz-96, ...) is compiled on first
use, so a Lorenz-63 prepare never pays for the others' compilation.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import hand_adjoint, model
from ..models import Lorenz96Problem
from ..models.lorenz96 import MemoryBudgetError, default_memory_budget
from ..problem import Lorenz63Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch, check_controls

if TYPE_CHECKING:
    # numba is imported lazily (on first prepare); at run time ``_batch63`` finds it in the
    # globals ``_rebound`` gives it, as it finds ``kernel`` (declared below, never assigned here)
    import numba

#: the compiled List 2 kernel, a global of ``_batch63`` bound only by ``_rebound``
kernel: Callable[..., float]
#: the compiled forward-only ``_cost63``, a global of ``_costb63`` bound only by ``_rebound``
cost: Callable[..., float]

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


def _rebound(fn: Callable, **callees: object) -> Callable:
    """``fn``'s own code with some global names bound to other objects (jitted functions, a module)."""
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


def _cost63(u, steps, work):
    """J(u) by List 1 on three scalars: ``model.forward``'s lines, J summed as in List 2's kernel.

    work = [sigma, r, beta, dt | obs (K x 3)] (``_cost_buffer``).  The state is kept only
    while it is current; the same operations in the same order as the gradient's forward sweep
    and J loop, so the same bits.  Returns _NOT_FINITE for a non-finite control.
    """
    for i in range(u.shape[0]):
        if not np.isfinite(u[i]):
            return _NOT_FINITE
    if u.shape[0] == 6:
        sigma, r, beta = u[3], u[4], u[5]
    else:
        sigma, r, beta = work[0], work[1], work[2]
    dt = work[3]
    x = u[0]
    y = u[1]
    z = u[2]
    K = steps.shape[0]
    J = 0.0
    k = 0
    n = 0
    while True:
        if steps[k] == n:  # the innovation at an observed step (List 2 kernel's order: x, y, z)
            o = 4 + 3 * k
            e = x - work[o]
            J += 0.5 * e * e
            e = y - work[o + 1]
            J += 0.5 * e * e
            e = z - work[o + 2]
            J += 0.5 * e * e
            k += 1
            if k == K:
                return J
        # List 1, eq. (20) by forward Euler
        xn = x + dt * sigma * (-x + y)
        yn = y + dt * (-x * z + r * x - y)
        zn = z + dt * (x * y - beta * z)
        x = xn
        y = yn
        z = zn
        n += 1


def _build_cost63() -> dict[str, Any]:
    import numba
    from numba import float64, int64, types

    I1 = types.Array(int64, 1, "C", readonly=True)  # the problem's steps (read-only), as for vg
    return {"cost": numba.njit(float64(float64[::1], I1, float64[::1]))(_cost63)}


def _batch63(U, p, steps, obs, w, v, d, grad, J, G):
    # prange over T work slots (w[c], v[c], d[c], grad[c]: the List 2 kernel's work), slot c
    # running the members of its contiguous block of rows; ``kernel`` and ``numba`` are bound by
    # _rebound in _build_batch63
    nc = U.shape[1]
    T = w.shape[0]
    B = U.shape[0]
    for c in numba.prange(T):  # noqa: F821
        for b in range(c * B // T, (c + 1) * B // T):
            u = U[b]
            if nc == 6:
                s, r, beta = u[3], u[4], u[5]
            else:
                s, r, beta = p[0], p[1], p[2]
            J[b] = kernel(u[0], u[1], u[2], s, r, beta, p[3], steps, obs, w[c], v[c], d[c], grad[c])  # noqa: F821
            for i in range(nc):
                G[b, i] = grad[c, i]


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


def _costb63(U, steps, work, J):
    # the forward-only J of every member: the List 1 cost reads only ``work`` (the problem's
    # numbers), so members need no slots of their own; ``cost`` and ``numba`` bound by _rebound
    for b in numba.prange(U.shape[0]):
        J[b] = cost(U[b], steps, work)  # noqa: F821 - bound by _rebound (declared above)


def _build_cost_batch63() -> dict[str, Any]:
    """The Lorenz-63 batched forward: prange over members calling the compiled ``_cost63``."""
    import numba
    from numba import float64, int64, types, void

    I1 = types.Array(int64, 1, "C", readonly=True)
    fn = _rebound(_costb63, cost=_groups["l63_cost"]["cost"], numba=numba)
    return {"cost_batch": numba.njit(void(float64[:, ::1], I1, float64[::1], float64[::1]), parallel=True)(fn)}


def _build_l96() -> dict[str, Any]:
    from . import _numba_lorenz96

    return _numba_lorenz96.build_single()


def _build_l96_batch() -> dict[str, Any]:
    from . import _numba_lorenz96

    return _numba_lorenz96.build_batch()


def _build_l96_cost() -> dict[str, Any]:
    from . import _numba_lorenz96

    return _numba_lorenz96.build_cost()


def _build_l96_cost_batch() -> dict[str, Any]:
    from . import _numba_lorenz96

    return _numba_lorenz96.build_cost_batch()


_BUILDERS = {
    "l63_batch": _build_batch63, "l63_cost": _build_cost63, "l63_cost_batch": _build_cost_batch63,
    "l96": _build_l96, "l96_batch": _build_l96_batch, "l96_cost": _build_l96_cost,
    "l96_cost_batch": _build_l96_cost_batch,
}


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
        elif name in ("l63_cost_batch", "l96_cost_batch"):
            _group(name[:3] + "_cost")
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


def _cost_buffer(problem: Lorenz63Problem) -> tuple[np.ndarray, np.ndarray]:
    """(steps, work) for ``_cost63``: work = [sigma, r, beta, dt | obs (K x 3)], no trajectory."""
    steps = np.ascontiguousarray(problem.obs_steps, dtype=np.int64)
    work = np.empty(4 + 3 * len(steps))
    work[:4] = [problem.params["sigma"], problem.params["r"], problem.params["beta"], problem.dt]
    work[4:] = problem.obs_values.ravel()
    return steps, work


class _Slots:
    """The work slots of one prepared batch: how many fit the budget, and a cache of them.

    ``make(T)`` allocates T slots (a tuple of arrays with a leading slot axis).  ``count``
    caps T = min(B, threads) so that T slots plus the results (``row_bytes`` per member) fit
    in ``budget``; ValueError, with the bytes, when one slot does not fit.  ``take(T)`` yields
    cached slots (the first T of the largest set made so far) when no other call is using them,
    else fresh ones: the cache is behind a non-blocking lock, so a call never waits for another
    and two calls never share slots, whichever threads they come from (the compiled entries
    hold the GIL, so today two calls of one vgb do not overlap anyway).
    """

    __slots__ = ("_make", "slot_bytes", "row_bytes", "budget", "_lock", "_cached")

    def __init__(self, make: Callable[[int], tuple[np.ndarray, ...]], slot_bytes: int, row_bytes: int,
                 budget: int) -> None:
        self._make = make
        self.slot_bytes = int(slot_bytes)
        self.row_bytes = int(row_bytes)
        self.budget = int(budget)
        self._lock = threading.Lock()
        self._cached: tuple[np.ndarray, ...] | None = None

    def count(self, B: int, threads: int) -> int:
        out = B * self.row_bytes
        fit = (self.budget - out) // self.slot_bytes if self.budget > out else 0
        if fit < 1:
            raise MemoryBudgetError(
                f"a batch of {B} member(s) needs at least {self.slot_bytes + out} bytes (one work slot of "
                f"{self.slot_bytes} bytes: trajectory and work arrays, + {out} bytes of results), over the "
                f"memory budget of {self.budget} bytes (set memory_budget or ADJOINTBENCH_MEMORY_BUDGET)"
            )
        return max(1, min(B, threads, fit))

    @contextmanager
    def take(self, T: int) -> Iterator[tuple[np.ndarray, ...]]:
        if not self._lock.acquire(blocking=False):
            yield self._make(T)  # another call holds the cached slots: this one gets its own
            return
        try:
            cached = self._cached
            if cached is None or cached[0].shape[0] < T:
                self._cached = cached = None  # drop the smaller set before making the larger
                self._cached = cached = self._make(T)
            yield tuple(a[:T] for a in cached)  # leading-axis views: still C-contiguous
        finally:
            self._lock.release()


def _writable(a: np.ndarray) -> np.ndarray:
    """``a``, or a copy when it is read-only (the compiled signatures take writable arrays)."""
    return a if a.flags.writeable else a.copy()


def _info(**extra: Any) -> dict[str, Any]:
    import numba

    return {"numba": numba.__version__, "compile_s_in_process": _compile_s, **extra}


class NumbaBackend(Backend):
    name = "numba"
    compiled = True
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

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[Any], float]:
        kernels, _ = _group("l63_cost")
        entry = kernels["cost"]
        steps, work = _cost_buffer(problem)
        shape = (problem.n_control,)
        check = problem.check_control
        ndarray = np.ndarray

        def cost(u: Any) -> float:
            # vg's fast path and checks: exactly the compiled signature, else the full check
            if not (type(u) is ndarray and u.dtype is _F64 and u.shape == shape and u.flags.c_contiguous
                    and u.flags.writeable):
                u = np.array(check(u))
            J = entry(u, steps, work)
            if J == _NOT_FINITE:
                raise ValueError("control vector must be finite")
            return J

        return cost

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

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[Any], float]:
        from ._numba_lorenz96 import Data

        kernels, _ = _group("l96_cost")
        entry = kernels["cost"]
        data = Data(problem)
        args = data.args()
        S, W = data.cost_work()  # 5 N doubles per prepare, shared by calls as vg's work (GIL held)
        check = problem.check_control

        def cost(u: Any) -> float:
            u = check(u)  # shape, real, finite (ValueError) before native code, as for vg
            if not u.flags.writeable:
                u = u.copy()
            return entry(u, *args, S, W)

        return cost

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """The forward-only J of a batch by the gradient batch's idiom: prange over members."""
        import numba

        if problem.model == "lorenz63":
            entry = _group("l63_cost_batch")[0]["cost_batch"]
            steps, work = _cost_buffer(problem)

            def costs63(U: np.ndarray) -> np.ndarray:
                U = _writable(check_controls(problem, U))
                J = np.empty(U.shape[0])
                entry(U, steps, work, J)
                return J

            return costs63

        from ._numba_lorenz96 import Data

        entry = _group("l96_cost_batch")[0]["cost_batch"]
        data = Data(problem)
        args = data.args()

        def costs96(U: np.ndarray) -> np.ndarray:
            U = _writable(check_controls(problem, U))
            B = U.shape[0]
            S, W = data.cost_work(max(1, min(B, numba.get_num_threads())))  # 5 N doubles per thread
            J = np.empty(B)
            entry(U, *args, S, W, J)
            return J

        return costs96

    # ---- batches (both models): numba.prange over members, numba's thread count ----------------
    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        import numba

        group = "l96_batch" if problem.model == "lorenz96" else "l63_batch"
        kernels, spent = _group(group)
        make = self._vgb96 if problem.model == "lorenz96" else self._vgb63
        vgb = make(problem, kernels["batch"])
        # numba.config sets its options (THREADING_LAYER, ...) from the environment at run time,
        # so numba's own typing does not declare them
        layer = numba.config.THREADING_LAYER  # type: ignore[attr-defined]
        return PreparedBatch(
            vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=spent,
            # the count at prepare; prange uses numba.get_num_threads() of the calling thread
            # at each call (numba.set_num_threads / NUMBA_NUM_THREADS)
            info=_info(threads=numba.get_num_threads(), threading_layer_requested=layer,
                       **{f"compile_s_{group}_in_process": _group_s[group]}),
        )

    @staticmethod
    def _vgb96(problem: Lorenz96Problem, batch: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        import numba

        from ._numba_lorenz96 import Data

        data = Data(problem)
        args = data.args()
        budget = default_memory_budget() if problem.memory_budget is None else problem.memory_budget
        slots = _Slots(data.work, data.slot_bytes(), 8 * (problem.n_control + 1), budget)
        threads = numba.get_num_threads

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U = _writable(check_controls(problem, U))  # shape, B >= 1, real, finite rows: before native code
            B = U.shape[0]
            T = slots.count(B, threads())  # ValueError over the budget, before allocating
            J, G = np.empty(B), np.empty(U.shape)
            with slots.take(T) as (X, W):
                batch(U, *args, X, W, G, J)
            return J, G

        return vgb

    @staticmethod
    def _vgb63(problem: Lorenz63Problem, batch: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        import numba

        steps = np.array(problem.obs_steps, dtype=np.int64)
        obs = np.array(problem.obs_values, dtype=np.float64, order="C")
        steps.setflags(write=False)  # the kernel's signature takes them read-only
        obs.setflags(write=False)
        p = np.array([problem.params["sigma"], problem.params["r"], problem.params["beta"], problem.dt])
        nstates, k = problem.last_obs_step + 1, len(steps)

        def make(T: int) -> tuple[np.ndarray, ...]:
            # the List 2 kernel's w, v (trajectory, multipliers), d (innovations), grad per slot
            return np.empty((T, nstates, 3)), np.empty((T, nstates, 3)), np.empty((T, k, 3)), np.empty((T, 6))

        # Lorenz63Problem has no memory_budget field: the default (ADJOINTBENCH_MEMORY_BUDGET) bounds it
        slots = _Slots(make, 8 * (6 * nstates + 3 * k + 6), 8 * (problem.n_control + 1), default_memory_budget())
        threads = numba.get_num_threads

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U = _writable(check_controls(problem, U))
            B = U.shape[0]
            T = slots.count(B, threads())
            J, G = np.empty(B), np.empty(U.shape)
            with slots.take(T) as (w, v, d, grad):
                batch(U, p, steps, obs, w, v, d, grad, J, G)
            return J, G

        return vgb


BACKENDS = [NumbaBackend()]
