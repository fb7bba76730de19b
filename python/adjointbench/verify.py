"""Verification of gradients: complex step, finite differences, Taylor, dot-product, eq. (8).

The reference for every backend is the complex-step derivative (paper eq. 24) of the Python
forward model (``model.cost``): exact to rounding for h = 1e-20, with no subtractive
cancellation.  A backend is trusted, and may be timed, only when its gradient matches it to
``TOLERANCE`` (relative, max-norm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import hand_adjoint, model
from .derivatives import central_difference_jacobian, complex_step_directional, complex_step_gradient
from .models import Lorenz96Problem, Problem
from .problem import Lorenz63Problem

TOLERANCE = 1e-10
#: up to this many controls the reference is the full complex-step gradient (one complex
#: forward run per control); beyond, complex-step directional derivatives (cost independent of N)
FULL_GRADIENT_MAX = 65
#: random directions of the directional check
DIRECTIONS = 3
#: step sizes a of the Taylor test, 1e-1 .. 1e-15
TAYLOR_ALPHAS = tuple(10.0 ** -k for k in range(1, 16))

#: the derivative approximations (``derivatives.py``) under the names this module's users know
__all__ = ["complex_step_directional", "complex_step_gradient", "fd_gradient"]
fd_gradient = central_difference_jacobian  # eq. (22): the fd reference backend's gradient


def reference(problem: Problem, u: ArrayLike | None = None) -> tuple[float, np.ndarray]:
    """(J, grad) at u (default u0) by complex step on the Python forward model."""
    x = problem.u0 if u is None else problem.check_control(u)
    J = float(problem.cost(x))
    return J, complex_step_gradient(problem.cost, x)


def reference_rounding_error(problem: Problem, u: ArrayLike | None = None) -> float:
    """How far rounding alone moves the float64 reference gradient at u (default u0).

    The max-norm relative distance between the complex-step gradient in double precision (the
    gate's reference) and the same complex step in extended precision (``np.clongdouble``,
    64-bit mantissa on x86).  It is the floor of any float64 implementation's agreement with the
    reference on this problem: where it nears ``TOLERANCE`` (a chaotic window with a first guess
    far from the observations), two correct implementations that order or fuse operations
    differently disagree at the gate.  NaN where it cannot be measured: long double no wider
    than double (arm64), or a cost that does not keep the extended type.
    """
    x = problem.u0 if u is None else problem.check_control(u)
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        return float("nan")
    g_ext = complex_step_gradient(problem.cost, x, dtype=np.clongdouble)
    if g_ext.dtype != np.longdouble:  # the cost fell back to complex128 somewhere
        return float("nan")
    return relative_error(complex_step_gradient(problem.cost, x), g_ext.astype(np.float64))


def relative_error(g: np.ndarray, g_ref: np.ndarray) -> float:
    """max_k |g_k - ref_k| / max_k |ref_k| (max-norm relative error; absolute if ref = 0)."""
    g = np.asarray(g, dtype=np.float64)
    g_ref = np.asarray(g_ref, dtype=np.float64)
    if g.shape != g_ref.shape:
        return float("inf")
    scale = float(np.max(np.abs(g_ref))) if g_ref.size else 0.0
    err = float(np.max(np.abs(g - g_ref))) if g.size else 0.0
    if not np.isfinite(err):
        return float("inf")
    return err / scale if scale > 0 else err


@dataclass(frozen=True)
class CheckResult:
    backend: str
    grad_error: float
    J_error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.grad_error <= self.tolerance and self.J_error <= self.tolerance


@lru_cache(maxsize=8)
def _directional_reference(
    problem: Problem, u_bytes: bytes, directions: int, seed: int,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    u = np.frombuffer(u_bytes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ds = [rng.standard_normal(problem.n_control) for _ in range(directions)]
    return tuple(ds), np.array([complex_step_directional(problem.cost, u, d) for d in ds])


def directional_reference(
    problem: Problem, u: np.ndarray, directions: int = DIRECTIONS, seed: int = 0,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """(random directions d_k, complex-step directional derivatives D_k of the Python cost at u).

    One complex forward run per direction, whatever N; cached per problem and point, so
    checking several backends on one large problem integrates it once.
    """
    u = np.ascontiguousarray(u, dtype=np.float64)
    return _directional_reference(problem, u.tobytes(), int(directions), int(seed))


def directional_error(
    problem: Problem, u: np.ndarray, g: np.ndarray, directions: int = DIRECTIONS, seed: int = 0,
) -> float:
    """max_k |g.d_k - D_k| / max_k |D_k| over random unit-variance directions d_k.

    D_k is the complex-step directional derivative of the Python cost along d_k: exact to
    rounding and one complex forward run each, whatever N, so it scales to N = 10^6.
    """
    g = np.asarray(g, dtype=np.float64)
    if g.shape != (problem.n_control,) or not np.all(np.isfinite(g)):
        return float("inf")
    ds, D = directional_reference(problem, u, directions, seed)
    err = max(abs(float(g @ d) - Dk) for d, Dk in zip(ds, D, strict=True))
    scale = float(np.max(np.abs(D)))
    if not np.isfinite(err):
        return float("inf")
    return err / scale if scale > 0 else err


def _relative(J: float, J_ref: float) -> float:
    if not np.isfinite(J):
        return float("inf")
    if J_ref == 0.0:
        return abs(float(J))
    return abs(float(J) - J_ref) / abs(J_ref)


def check_vg(
    name: str, vg: Callable[[np.ndarray], tuple[float, np.ndarray]], problem: Problem,
    u: ArrayLike | None = None, tolerance: float = TOLERANCE,
) -> CheckResult:
    """Compare a prepared vg with the complex-step reference at u (default u0).

    Up to ``FULL_GRADIENT_MAX`` controls: the whole complex-step gradient; beyond, complex-step
    directional derivatives along random directions (``directional_error``).
    """
    x = problem.u0 if u is None else problem.check_control(u)
    J, g = vg(x.copy())
    J = float(J)
    if problem.n_control <= FULL_GRADIENT_MAX:
        J_ref, g_ref = reference(problem, x)
        return CheckResult(name, relative_error(g, g_ref), _relative(J, J_ref), tolerance)
    J_ref = float(problem.cost(x))
    return CheckResult(name, directional_error(problem, x, g), _relative(J, J_ref), tolerance)


def check_backend(
    name: str, problem: Problem, tolerance: float = TOLERANCE, **options: Any
) -> CheckResult:
    """Prepare backend ``name`` on ``problem`` and compare it with the reference at u0."""
    from .backends import backend

    vg = backend(name).prepare(problem, **options)
    return check_vg(name, vg, problem, tolerance=tolerance)


def taylor_test(
    f: Callable[[np.ndarray], float], grad: np.ndarray, u: np.ndarray, du: np.ndarray | None = None,
    alphas: Sequence[float] = TAYLOR_ALPHAS,
) -> np.ndarray:
    """Gradient test (Huang & Yang's chkgra): (J(u + a du) - J(u)) / (a grad.du) for each a.

    The ratio tends to 1 as a decreases until rounding dominates (a ~ 1e-8 in float64).
    Default direction du = grad (normalised), as in chkgra.
    """
    u = np.asarray(u, dtype=np.float64)
    g = np.asarray(grad, dtype=np.float64)
    du = g / np.linalg.norm(g) if du is None else np.asarray(du, dtype=np.float64)
    J0 = float(f(u))
    slope = float(g @ du)
    return np.array([(float(f(u + a * du)) - J0) / (a * slope) for a in alphas])


def _tlm_adjoint(problem: Lorenz63Problem, u: np.ndarray):
    state, sigma, r, beta = problem.split(np.asarray(u, dtype=np.float64))
    n = problem.nsteps
    w = model.trajectory(state, sigma, r, beta, problem.dt, n)

    def L(du: np.ndarray) -> np.ndarray:
        """Tangent linear: trajectory of dx_n for perturbation du of the control."""
        dw = np.empty_like(w)
        dw[0] = du[:3]
        dp = du[3:] if len(du) == 6 else np.zeros(3)
        model.tangent_linear(w, dw, sigma, r, beta, dp[0], dp[1], dp[2], problem.dt, n)
        return dw

    def LT(vN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Adjoint with forcing vN at the final step only: (v_n for all n, control adjoint)."""
        v = np.empty_like(w)
        pgrad = np.zeros(3)
        hand_adjoint.adjoint(w, sigma, r, beta, problem.dt, n, np.array([n]), vN.reshape(1, 3), v, pgrad)
        return v, np.concatenate([v[0], pgrad])[: problem.n_control]

    return L, LT


def _tlm_adjoint96(problem: Lorenz96Problem, u: np.ndarray):
    """Tangent linear map du -> dx_N and its transpose for Lorenz-96 RK4 (models/lorenz96_equations)."""
    from .models import lorenz96_equations as l96

    x0, F = problem.split(np.asarray(u, dtype=np.float64))
    X = l96.trajectory(x0, F, problem.dt, problem.nsteps)
    params = problem.control == "state+params"

    def L(du: np.ndarray) -> np.ndarray:
        dx = du[: problem.n].copy()
        dF = du[problem.n] if params else 0.0
        for n in range(problem.nsteps):
            dx = l96.step_tangent(X[n], dx, F, dF, problem.dt)
        return dx

    def LT(a: np.ndarray) -> np.ndarray:
        dF = 0.0
        for n in range(problem.nsteps - 1, -1, -1):
            a, dFn = l96.step_adjoint(X[n], a, F, problem.dt)
            dF += dFn
        return np.concatenate([a, [dF]]) if params else a

    return L, LT


def dot_product_test(problem: Problem, u: np.ndarray, du: np.ndarray) -> tuple[float, float]:
    """(<L du, L du>, <du, L^T L du>) for L the tangent linear map control -> x_N (eqs. 5-7).

    Equal to rounding when the adjoint is the transpose of the tangent linear model.
    """
    if isinstance(problem, Lorenz96Problem):
        L96, LT96 = _tlm_adjoint96(problem, u)
        dxN = L96(np.asarray(du, dtype=np.float64))
        return float(dxN @ dxN), float(np.asarray(du) @ LT96(dxN))
    L, LT = _tlm_adjoint(problem, u)
    dxN = L(np.asarray(du, dtype=np.float64))[-1]
    _, adj = LT(dxN)
    return float(dxN @ dxN), float(np.asarray(du) @ adj)


def eq8_invariant(problem: Lorenz63Problem, u: np.ndarray, dx0: np.ndarray, vN: np.ndarray) -> np.ndarray:
    """v_n^T dx_n for n = 0..nsteps (paper eq. 8): constant in n for an exact adjoint.

    dx_n is the tangent-linear response to an initial-state perturbation dx0 (parameters
    fixed), v_n the adjoint started from vN at the last step with no other forcing.
    """
    L, LT = _tlm_adjoint(problem, u)
    du = np.zeros(problem.n_control)
    du[:3] = dx0
    dx = L(du)
    v, _ = LT(np.asarray(vN, dtype=np.float64))
    return np.einsum("ni,ni->n", v, dx)


def descent_difference(a: Any, b: Any) -> float:
    """Max-norm relative difference of two descents' cost histories and final controls."""
    costs = float(np.max(np.abs(np.asarray(a.costs) - b.costs) / np.maximum(np.abs(b.costs), np.finfo(float).tiny)))
    return max(costs, relative_error(np.asarray(a.u), np.asarray(b.u)))


def descent_rounding_floor(
    vg: Callable[[np.ndarray], tuple[float, np.ndarray]], u0: np.ndarray, iterations: int, step: float,
    seed: int = 0,
) -> float:
    """How far the Python-driven descent moves when every gradient is changed by one ulp.

    Steepest descent on a chaotic model amplifies rounding: a fused driver whose compiler
    contracts ``u - step * g`` into an FMA, or fuses the gradient's operations differently, can
    drift from the Python loop by this much (up to ~1e-8 on long random windows) while being
    the same algorithm.  Comparing with this floor separates that from a real difference.
    """
    from .backends import python_descent

    rng = np.random.default_rng(seed)

    def nudged(u: np.ndarray) -> tuple[float, np.ndarray]:
        J, g = vg(u)
        return J, g * (1 + np.finfo(float).eps * rng.choice([-1.0, 1.0], np.shape(g)))

    ref = python_descent(vg, u0, iterations, step)
    return descent_difference(python_descent(nudged, u0, iterations, step), ref)
