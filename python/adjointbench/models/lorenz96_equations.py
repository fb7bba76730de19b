"""Lorenz-96 with classical RK4 in NumPy: forward, tangent linear, and the hand adjoint.

Every function works on arrays of shape (..., N) (a leading batch axis is allowed) and on
complex arrays (the complex-step reference runs ``cost`` with complex controls).  The ring's
neighbours are slices of a padded copy, not ``np.roll`` (one copy instead of three per
tendency); the result is the same to the bit.

The hand adjoint follows the paper's Lagrange-multiplier recipe (§2.2, eqs. 16-19) step by
step: with x_{n+1} = M(x_n) the RK4 step, the multiplier obeys
lambda_n = (dM/dx_n)^T lambda_{n+1} + dJ/dx_n (eq. 18) and the forcing's adjoint accumulates
(dM/dF)^T lambda_{n+1} (eq. 19).  The transpose of one RK4 step is written by walking its
lines backwards (``step_adjoint``); each tendency's transpose is ``rhs_adjoint``.  The forward
sweep stores only the states x_n; the RK4 stages of step n are recomputed from x_n in the
backward sweep (three extra tendencies per step instead of four stored stages: the memory is
the trajectory alone).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _pad(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """x with its last ``left`` and first ``right`` entries wrapped around (ring indices)."""
    return np.concatenate([x[..., x.shape[-1] - left:], x, x[..., :right]], axis=-1)


def rhs(x: np.ndarray, F: Any) -> np.ndarray:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F (Lorenz 1996)."""
    p = _pad(x, 2, 1)  # p[i + 2] = x_i
    return (p[..., 3:] - p[..., :-3]) * p[..., 1:-2] - x + F


def rhs_tangent(x: np.ndarray, dx: np.ndarray, dF: Any) -> np.ndarray:
    """df_i = (dx_{i+1} - dx_{i-2}) x_{i-1} + (x_{i+1} - x_{i-2}) dx_{i-1} - dx_i + dF."""
    p = _pad(x, 2, 1)
    q = _pad(dx, 2, 1)
    return (q[..., 3:] - q[..., :-3]) * p[..., 1:-2] + (p[..., 3:] - p[..., :-3]) * q[..., 1:-2] - dx + dF


def rhs_adjoint(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(df/dx)^T a: the transpose of ``rhs_tangent`` in dx, at state x.

    x_j enters f_{j-1} as x_{i+1} (times x_{i-1} = x_{j-2}), f_{j+2} as -x_{i-2} (times
    x_{i-1} = x_{j+1}), f_{j+1} as x_{i-1} (times x_{j+2} - x_{j-1}) and f_j as -x_i.
    The forcing's adjoint is sum_i a_i (taken by the caller).
    """
    p = _pad(x, 2, 2)  # p[j + 2] = x_j
    b = _pad(a, 2, 2)
    return b[..., 1:-3] * p[..., :-4] - b[..., 4:] * p[..., 3:-1] + b[..., 3:-1] * (p[..., 4:] - p[..., 1:-3]) - a


def step(x: np.ndarray, F: Any, dt: float) -> np.ndarray:
    """One classical RK4 step (docs/DESIGN.md "Lorenz-96")."""
    k1 = rhs(x, F)
    k2 = rhs(x + (0.5 * dt) * k1, F)
    k3 = rhs(x + (0.5 * dt) * k2, F)
    k4 = rhs(x + dt * k3, F)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def step_tangent(x: np.ndarray, dx: np.ndarray, F: Any, dF: Any, dt: float) -> np.ndarray:
    """Tangent linear of ``step`` at x: dx_{n+1} for perturbations dx_n and dF."""
    k1 = rhs(x, F)
    x2 = x + (0.5 * dt) * k1
    k2 = rhs(x2, F)
    x3 = x + (0.5 * dt) * k2
    k3 = rhs(x3, F)
    x4 = x + dt * k3
    d1 = rhs_tangent(x, dx, dF)
    d2 = rhs_tangent(x2, dx + (0.5 * dt) * d1, dF)
    d3 = rhs_tangent(x3, dx + (0.5 * dt) * d2, dF)
    d4 = rhs_tangent(x4, dx + dt * d3, dF)
    return dx + (dt / 6.0) * (d1 + 2.0 * d2 + 2.0 * d3 + d4)


def step_adjoint(x: np.ndarray, a: np.ndarray, F: Any, dt: float) -> tuple[np.ndarray, Any]:
    """Transpose of one RK4 step at x_n: (dM/dx_n)^T a and (dM/dF)^T a.

    ``step``'s lines backwards (the recipe of §2.2): x_{n+1} = x + dt/6 (k1 + 2 k2 + 2 k3 + k4)
    hands dt/6, dt/3, dt/3, dt/6 of a to the stages and a itself to x; each k = f(x + c k_prev)
    hands (df/dx)^T k-bar to x and, times c, to k_prev's adjoint; F-bar collects sum_i k-bar_i.
    """
    k1 = rhs(x, F)
    x2 = x + (0.5 * dt) * k1
    k2 = rhs(x2, F)
    x3 = x + (0.5 * dt) * k2
    k3 = rhs(x3, F)
    x4 = x + dt * k3
    b4 = (dt / 6.0) * a
    g4 = rhs_adjoint(x4, b4)                      # adjoint of x4 = x + dt k3
    b3 = (dt / 3.0) * a + dt * g4
    g3 = rhs_adjoint(x3, b3)                      # adjoint of x3 = x + dt/2 k2
    b2 = (dt / 3.0) * a + (0.5 * dt) * g3
    g2 = rhs_adjoint(x2, b2)                      # adjoint of x2 = x + dt/2 k1
    b1 = (dt / 6.0) * a + (0.5 * dt) * g2
    g1 = rhs_adjoint(x, b1)
    dF = np.sum(b1 + b2 + b3 + b4, axis=-1)
    return a + g1 + g2 + g3 + g4, dF


class _Stepper:
    """``step`` for one state vector with preallocated buffers (no allocation per step).

    The same operations in the same order as ``step``, so the same bits: used where only the
    end state is needed (spin-up, observing a truth), where the allocations of ``step`` cost
    half the time at N = 10^6.
    """

    def __init__(self, x: np.ndarray, F: Any, dt: float) -> None:
        self.F, self.dt = F, dt
        self.x = np.array(x)
        self.p = np.empty(self.x.shape[-1] + 3, dtype=self.x.dtype)
        self.k = [np.empty_like(self.x) for _ in range(4)]
        self.xs = np.empty_like(self.x)

    def _rhs(self, x: np.ndarray, out: np.ndarray) -> None:
        p = self.p
        p[2:-1] = x
        p[:2] = x[-2:]
        p[-1] = x[0]
        np.subtract(p[3:], p[:-3], out=out)
        out *= p[1:-2]
        out -= x
        out += self.F

    def step(self) -> None:
        x, xs, (k1, k2, k3, k4), dt = self.x, self.xs, self.k, self.dt
        self._rhs(x, k1)
        np.multiply(0.5 * dt, k1, out=xs)
        xs += x
        self._rhs(xs, k2)
        np.multiply(0.5 * dt, k2, out=xs)
        xs += x
        self._rhs(xs, k3)
        np.multiply(dt, k3, out=xs)
        xs += x
        self._rhs(xs, k4)
        # x + (dt/6) * (((k1 + 2 k2) + 2 k3) + k4), evaluated as in ``step``
        k2 *= 2.0
        k1 += k2
        k3 *= 2.0
        k1 += k3
        k1 += k4
        k1 *= dt / 6.0
        x += k1


def integrate(x0: np.ndarray, F: Any, dt: float, nsteps: int) -> np.ndarray:
    """x_nsteps from x_0 (nothing stored)."""
    if np.ndim(x0) != 1 or np.ndim(F):
        x = np.array(x0)
        for _ in range(nsteps):
            x = step(x, F, dt)
        return x
    s = _Stepper(x0, F, dt)
    for _ in range(nsteps):
        s.step()
    return s.x


def observe(x0: np.ndarray, F: Any, dt: float, steps: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """States x_{s_k, idx_j}, shape (len(steps), len(indices)), integrating up to steps[-1]."""
    out = np.empty((len(steps), len(indices)), dtype=np.result_type(x0, F))
    x = np.array(x0)
    n = 0
    for k, s in enumerate(np.asarray(steps).tolist()):
        x = integrate(x, F, dt, s - n)
        n = s
        out[k] = x[indices]
    return out


def cost(problem: Any, u: Any) -> Any:
    """J(u) for a Lorenz96Problem (docs/DESIGN.md); u may be complex.  Stores no trajectory."""
    u = np.asarray(u)
    x0, F = problem.split(u)
    d = (observe(x0, F, problem.dt, problem.obs_steps, problem.obs_indices) - problem.obs_values) / problem.sigma_o
    J = 0.5 * np.sum(d * d)
    if problem.background is not None:
        e = (x0 - problem.background) / problem.sigma_b
        J = J + 0.5 * np.sum(e * e)
    return J


def cost_batch(problem: Any, x0: np.ndarray, F: Any) -> np.ndarray:
    """J of B members at once: x0 of shape (B, N), F of shape (B,) or scalar -> J[B].

    The forward sweep of ``value_and_grad`` without the stored trajectory (the forward-only
    measure of the scaling study's ensembles).
    """
    Fb = np.asarray(F)[..., None] if np.ndim(F) else F  # per-member forcing against (B, N)
    x = np.array(x0, dtype=np.result_type(x0, F, np.float64))
    J = np.zeros(x.shape[0], dtype=x.dtype)
    n = 0
    for k, s in enumerate(problem.obs_steps.tolist()):
        for _ in range(s - n):
            x = step(x, Fb, problem.dt)
        n = s
        d = (x[:, problem.obs_indices] - problem.obs_values[k]) / problem.sigma_o
        J += 0.5 * np.sum(d * d, axis=-1)
    if problem.background is not None:
        e = (np.asarray(x0) - problem.background) / problem.sigma_b
        J += 0.5 * np.sum(e * e, axis=-1)
    return J


def trajectory(x0: np.ndarray, F: Any, dt: float, nlast: int) -> np.ndarray:
    """States x_0..x_nlast, shape (nlast + 1, N) (or (nlast + 1, B, N) for a batch)."""
    x0 = np.asarray(x0)
    X = np.empty((nlast + 1,) + x0.shape, dtype=np.result_type(x0, F))
    X[0] = x0
    for n in range(nlast):
        X[n + 1] = step(X[n], F, dt)
    return X


def value_and_grad(problem: Any, x0: np.ndarray, F: Any) -> tuple[Any, np.ndarray, Any]:
    """(J, dJ/dx_0, dJ/dF) by the forward sweep, then the adjoint sweep (eqs. 16-19).

    x0 may carry a leading batch axis (shape (B, N), F of shape (B,) or scalar); J and dJ/dF
    then have shape (B,).
    """
    nlast = problem.last_obs_step
    Fb = np.asarray(F)[..., None] if np.ndim(F) else F  # per-member forcing against (B, N)
    X = trajectory(x0, Fb, problem.dt, nlast)
    idx = problem.obs_indices
    inv_o2 = 1.0 / (problem.sigma_o * problem.sigma_o)
    steps = problem.obs_steps.tolist()
    # innovations, scaled: dJ/dx_{s_k}[idx] = (x_{s_k}[idx] - y_k) / sigma_o^2 (eq. 18, 1st term)
    innov = X[steps][..., idx] - (problem.obs_values if X.ndim == 2 else problem.obs_values[:, None, :])
    J = 0.5 * inv_o2 * np.sum(innov * innov, axis=(0, -1))
    lam = np.zeros_like(X[0])
    dF = np.zeros(X.shape[1:-1]) if X.ndim > 2 else 0.0
    k = len(steps) - 1
    for n in range(nlast, -1, -1):
        if k >= 0 and steps[k] == n:
            lam[..., idx] += inv_o2 * innov[k]
            k -= 1
        if n == 0:
            break
        lam, dFn = step_adjoint(X[n - 1], lam, Fb, problem.dt)
        dF = dF + dFn
    if problem.background is not None:
        e = (X[0] - problem.background) / problem.sigma_b
        J = J + 0.5 * np.sum(e * e, axis=-1)
        lam = lam + e / problem.sigma_b
    return J, lam, dF
