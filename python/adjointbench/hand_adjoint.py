"""The hand-written adjoint of List 1, built line by line by the recipe of paper §2.2.

Recipe (eqs. 16-19): adjoint variables start at zero; walk the code backwards, the time loop
reversed; each line's state adjoint gets the line's derivative w.r.t. that state times the
adjoint of the left-hand side (eq. 18, 2nd term); at an observed step add dJ/dw (eq. 18, 1st
term); the control (parameter) adjoints accumulate the line's derivative w.r.t. the parameter
times the left-hand side's adjoint (eq. 19).  The body below is List 2, in its order.

Like ``model.py`` the loops are scalar code on preallocated arrays, so the backend ``numba``
compiles this very source and the backend ``numpy`` runs it interpreted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import forward


def adjoint(
    w: np.ndarray, sigma: Any, r: Any, beta: Any, dt: float, nlast: int,
    steps: np.ndarray, forcing: np.ndarray, v: np.ndarray, pgrad: np.ndarray,
) -> None:
    """Backward sweep of List 2 from step nlast to 0.

    forcing[k] (= dJ/dw at step steps[k]) is added when the sweep reaches steps[k]; v[n]
    receives the Lagrange multiplier lambda_n (eq. 18), pgrad = (a_sigma, a_r, a_beta) the
    sums of eq. (19).  steps must be strictly increasing and steps[-1] <= nlast.  As in
    ``model.forward`` the parameters are floats, or arrays over a trailing batch axis.
    """
    k = len(steps) - 1
    ax = 0.0
    ay = 0.0
    az = 0.0
    as_ = 0.0
    ar = 0.0
    ab = 0.0
    for n in range(nlast, -1, -1):
        if k >= 0 and steps[k] == n:  # eq. (18), first term: the innovation at an observed step
            ax += forcing[k, 0]
            ay += forcing[k, 1]
            az += forcing[k, 2]
            k -= 1
        v[n, 0] = ax
        v[n, 1] = ay
        v[n, 2] = az
        if n == 0:
            break
        x = w[n - 1, 0]
        y = w[n - 1, 1]
        z = w[n - 1, 2]
        # List 2: adjoint of List 1 line 3 (z), then line 2 (y), then line 1 (x)
        ab = ab - dt * z * az
        bz = (1.0 - dt * beta) * az
        by = dt * x * az
        bx = dt * y * az
        ar = ar + dt * x * ay
        bz = bz - dt * x * ay
        by = by + (1.0 - dt) * ay
        bx = bx + dt * (-z + r) * ay
        as_ = as_ + dt * (-x + y) * ax
        by = by + sigma * dt * ax
        bx = bx + (1.0 - sigma * dt) * ax
        ax = bx
        ay = by
        az = bz
    pgrad[0] = as_
    pgrad[1] = ar
    pgrad[2] = ab


def value_and_grad(
    x0: Any, y0: Any, z0: Any, sigma: Any, r: Any, beta: Any, dt: float,
    steps: np.ndarray, obs: np.ndarray, w: np.ndarray, v: np.ndarray, d: np.ndarray,
    grad: np.ndarray,
) -> Any:
    """J and dJ/d(x0, y0, z0, sigma, r, beta) into grad (length 6); returns J.

    Work arrays: w, v of shape (>= steps[-1]+1, 3), d of shape (len(steps), 3).  The control
    entries are floats (J a float), or arrays over a trailing batch axis B with work arrays of
    shapes (..., B) (J one value per member: ``numpy_hand.make_vgb``).
    The trajectory is integrated only to the last observation: later states do not enter J.
    """
    nlast = steps[len(steps) - 1]
    w[0, 0] = x0
    w[0, 1] = y0
    w[0, 2] = z0
    forward(w, sigma, r, beta, dt, nlast)
    J = 0.0
    for k in range(len(steps)):
        for i in range(3):
            e = w[steps[k], i] - obs[k, i]
            d[k, i] = e  # dJ/dw_{s_k}
            J += 0.5 * e * e
    adjoint(w, sigma, r, beta, dt, nlast, steps, d, v, grad[3:])
    grad[0] = v[0, 0]
    grad[1] = v[0, 1]
    grad[2] = v[0, 2]
    return J
