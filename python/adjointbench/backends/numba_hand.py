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
"""

from __future__ import annotations

import threading
import time
import types
from typing import Any, Callable

import numpy as np

from .. import hand_adjoint, model
from ..problem import Lorenz63Problem
from .base import Backend, DescentResult, Prepared

_F64 = np.dtype(np.float64)
#: J = 1/2 sum of squares is never negative: the entry's way of saying "input not finite"
_NOT_FINITE = -1.0

_lock = threading.Lock()
_compiled: dict[str, Any] = {}
_compile_s = 0.0


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


class NumbaBackend(Backend):
    name = "numba"
    kind = "hand adjoint"
    description = "hand adjoint (paper List 2), the numpy backend's Python source compiled by numba.njit"
    fused = True
    requires = ("numba",)

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        import numba

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

        return Prepared(
            vg, problem, device=device, dtype=dtype, compile_s=spent,
            info={"numba": numba.__version__, "compile_s_in_process": _compile_s},
        )

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


BACKENDS = [NumbaBackend()]
