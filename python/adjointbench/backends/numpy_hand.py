"""Backend ``numpy``: the hand-written adjoint (List 2, ``hand_adjoint.py``) run by CPython.

This is the paper's "hand-coded adjoint" row as the authors ran it: an interpreted loop over
time steps.  The same source, compiled by Numba, is the backend ``numba``.
"""

from __future__ import annotations

import numpy as np

from .. import hand_adjoint
from ..problem import Lorenz63Problem
from .base import Backend, Prepared


def make_vg(problem: Lorenz63Problem):
    """vg(u) running the List 2 kernel interpreted.

    Work arrays are allocated per call (about 1 µs against ~0.4 ms of interpreted loops), so
    concurrent calls from several threads cannot overwrite each other's trajectory.
    """
    steps = np.ascontiguousarray(problem.obs_steps, dtype=np.int64)
    obs = np.ascontiguousarray(problem.obs_values, dtype=np.float64)
    shape_w = (problem.last_obs_step + 1, 3)
    n = problem.n_control
    sigma, r, beta = (problem.params[k] for k in ("sigma", "r", "beta"))
    dt = problem.dt
    check = problem.check_control
    kernel = hand_adjoint.value_and_grad

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u)
        s, p_, b = (u[3], u[4], u[5]) if n == 6 else (sigma, r, beta)
        w, v, d, grad = np.empty(shape_w), np.empty(shape_w), np.empty(obs.shape), np.zeros(6)
        J = kernel(u[0], u[1], u[2], s, p_, b, dt, steps, obs, w, v, d, grad)
        return float(J), grad[:n].copy()

    return vg


class NumpyBackend(Backend):
    name = "numpy"
    kind = "hand adjoint"
    description = "hand adjoint (paper List 2), Python loops over NumPy arrays"

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return Prepared(make_vg(problem), problem, device=device, dtype=dtype)


BACKENDS = [NumpyBackend()]
