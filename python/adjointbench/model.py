"""The Euler-discretised Lorenz (1963) model in Python: forward (List 1) and tangent linear.

The loops are written over scalars on preallocated arrays so that the *same source* runs
interpreted (backend ``numpy``, and the complex-step reference with complex arrays) and
compiled by ``numba.njit`` (backend ``numba``): the model's equations appear once in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def forward(w: np.ndarray, sigma: Any, r: Any, beta: Any, dt: float, nlast: int) -> None:
    """Integrate eq. (20) by forward Euler (List 1) in place: w[0] given, fills w[1..nlast]."""
    for n in range(nlast):
        x = w[n, 0]
        y = w[n, 1]
        z = w[n, 2]
        w[n + 1, 0] = x + dt * sigma * (-x + y)
        w[n + 1, 1] = y + dt * (-x * z + r * x - y)
        w[n + 1, 2] = z + dt * (x * y - beta * z)


def tangent_linear(
    w: np.ndarray, dw: np.ndarray, sigma: float, r: float, beta: float,
    dsigma: float, dr: float, dbeta: float, dt: float, nlast: int,
) -> None:
    """Tangent linear of List 1 along trajectory w: dw[0] given, fills dw[1..nlast].

    dw_{n+1} = M_n dw_n + (df/dp) dp, M_n = I + dt * (Jacobian of eq. 20 at w_n); its
    transpose is the matrix of eq. (21).
    """
    for n in range(nlast):
        x = w[n, 0]
        y = w[n, 1]
        z = w[n, 2]
        dx = dw[n, 0]
        dy = dw[n, 1]
        dz = dw[n, 2]
        dw[n + 1, 0] = dx + dt * (sigma * (-dx + dy) + dsigma * (-x + y))
        dw[n + 1, 1] = dy + dt * (-dx * z - x * dz + r * dx + dr * x - dy)
        dw[n + 1, 2] = dz + dt * (dx * y + x * dy - beta * dz - dbeta * z)


def trajectory(x0: Any, sigma: Any, r: Any, beta: Any, dt: float, nsteps: int) -> np.ndarray:
    """States w_0..w_nsteps, shape (nsteps+1, 3); complex inputs give a complex trajectory."""
    dtype = np.result_type(np.asarray(x0), sigma, r, beta, np.float64)
    w = np.empty((nsteps + 1, 3), dtype=dtype)
    w[0] = x0
    forward(w, sigma, r, beta, dt, nsteps)
    return w


def cost(problem: Any, u: Any) -> Any:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2 for a Lorenz63Problem; u may be complex."""
    u = np.asarray(u)
    state, sigma, r, beta = problem.split(u)
    w = trajectory(state, sigma, r, beta, problem.dt, problem.last_obs_step)
    d = w[problem.obs_steps] - problem.obs_values
    return 0.5 * np.sum(d * d)
