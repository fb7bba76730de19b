"""Backend ``numpy``: the hand-written adjoints run by CPython.

Lorenz-63: List 2 (``hand_adjoint.py``), the paper's "hand-coded adjoint" row as the authors
ran it, an interpreted loop over time steps and scalars; the same source, compiled by Numba,
is the backend ``numba``.  Lorenz-96: the RK4 adjoint of ``models/lorenz96_equations.py``,
vectorised over the N variables (a Python loop over time steps only), and over a leading
batch axis for ``prepare_batch``.
"""

from __future__ import annotations

import numpy as np

from .. import hand_adjoint, model
from ..models import Lorenz96Problem
from ..models import lorenz96_equations as l96
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls


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


def make_vgb(problem: Lorenz63Problem):
    """vgb(U) running the same List 2 source on arrays with a trailing batch axis.

    ``w[n, 0]`` is then a vector of B members, and every scalar line of List 1/2 a NumPy
    operation over the batch: one interpreted sweep for all members.
    """
    steps = np.ascontiguousarray(problem.obs_steps, dtype=np.int64)
    obs = np.ascontiguousarray(problem.obs_values, dtype=np.float64)
    nstates = problem.last_obs_step + 1
    n = problem.n_control
    fixed = tuple(problem.params[k] for k in ("sigma", "r", "beta"))
    kernel = hand_adjoint.value_and_grad

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)
        B = U.shape[0]
        s, p_, b = (U[:, 3], U[:, 4], U[:, 5]) if n == 6 else fixed
        w, v = np.empty((nstates, 3, B)), np.empty((nstates, 3, B))
        d, grad = np.empty(obs.shape + (B,)), np.zeros((6, B))
        J = kernel(U[:, 0], U[:, 1], U[:, 2], s, p_, b, problem.dt, steps, obs, w, v, d, grad)
        return np.asarray(J, dtype=np.float64), np.ascontiguousarray(grad[:n].T)

    return vgb


def make_costb(problem: Lorenz63Problem):
    """costs(U): List 1 on arrays with a trailing batch axis (the forward sweep of ``make_vgb``)."""
    steps = np.asarray(problem.obs_steps)
    obs = np.asarray(problem.obs_values, dtype=np.float64)[..., None]
    nstates = problem.last_obs_step + 1
    n = problem.n_control
    fixed = tuple(problem.params[k] for k in ("sigma", "r", "beta"))

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U)
        s, p_, b = (U[:, 3], U[:, 4], U[:, 5]) if n == 6 else fixed
        w = np.empty((nstates, 3, U.shape[0]))
        w[0] = U[:, :3].T
        model.forward(w, s, p_, b, problem.dt, nstates - 1)
        d = w[steps] - obs
        return 0.5 * np.sum(d * d, axis=(0, 1))

    return costs


def make_costb96(problem: Lorenz96Problem):
    """costs(U): the forward sweep of ``make_vgb96`` alone, over arrays of shape (B, N)."""
    n = problem.n
    params = problem.control == "state+params"

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U)
        return l96.cost_batch(problem, U[:, :n], U[:, n] if params else problem.F)

    return costs


def make_vg96(problem: Lorenz96Problem):
    """vg(u) by the vectorised RK4 adjoint (a loop over steps, arrays over variables)."""
    n = problem.n
    params = problem.control == "state+params"

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = problem.check_control(u)
        J, gx, gF = l96.value_and_grad(problem, u[:n], u[n] if params else problem.F)
        return float(J), np.concatenate([gx, [gF]]) if params else gx

    return vg


def make_vgb96(problem: Lorenz96Problem):
    """vgb(U): the same sweeps over arrays of shape (B, N), every member at once."""
    n = problem.n
    params = problem.control == "state+params"

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)
        F = U[:, n] if params else problem.F
        J, gx, gF = l96.value_and_grad(problem, U[:, :n], F)
        return np.asarray(J, dtype=np.float64), np.concatenate([gx, gF[:, None]], axis=1) if params else gx

    return vgb


class NumpyBackend(Backend):
    name = "numpy"
    kind = "hand adjoint"
    description = "hand adjoints: List 2 as Python loops (Lorenz-63); RK4 adjoint vectorised over N (Lorenz-96)"
    models = ("lorenz63", "lorenz96")
    batch_idiom = "batch axis"

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return Prepared(make_vg(problem), problem, device=device, dtype=dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return Prepared(make_vg96(problem), problem, device=device, dtype=dtype)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str):
        # List 1 interpreted, as the gradient's forward sweep (model.py is that sweep's source)
        def J(u: np.ndarray) -> float:
            return float(model.cost(problem, problem.check_control(u)))

        return J

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str):
        def J(u: np.ndarray) -> float:
            return float(l96.cost(problem, problem.check_control(u)))

        return J

    def _prepare_cost_batch(self, problem, *, device: str, dtype: str):
        return make_costb96(problem) if problem.model == "lorenz96" else make_costb(problem)

    def _prepare_batch(self, problem, *, device: str, dtype: str) -> PreparedBatch:
        make = make_vgb96 if problem.model == "lorenz96" else make_vgb
        return PreparedBatch(make(problem), problem, idiom=self.batch_idiom, device=device, dtype=dtype)


BACKENDS = [NumpyBackend()]
