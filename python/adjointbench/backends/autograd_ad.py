"""Backend ``autograd``: HIPS autograd's reverse mode of the costs written in ``autograd.numpy``.

autograd records every NumPy call made on its boxed arrays on a tape while the cost runs
(plain CPython, no compilation) and walks it backwards, calling one Python VJP per recorded
operation.  The costs below are the models written once in ``autograd.numpy``:

* Lorenz-63: forward Euler (eq. 20, List 1) on ``u[..., k]``, 0-d arrays for one control.
* Lorenz-96: RK4 on (..., N) arrays, the ring's neighbours by ``np.roll`` (autograd's VJP of
  a roll is the opposite roll).  The padded copy of ``lorenz96_equations.rhs`` (one
  concatenate, three slices) is faster forward but slower backward under autograd, whose VJP
  of a slice and of ``concatenate`` go through zero-filled arrays: N = 4000, 40 steps, float64,
  CPU time, best of 5, loaded 2-thread EPYC VM: pad J 2.1 ms / value and gradient 71 ms,
  rolls J 5.3 ms / value and gradient 48 ms.  The gradient is what is timed: rolls.

Both costs reduce over trailing axes only, so the same function takes a leading batch axis:
``prepare_batch`` records one tape for B members and pulls back the vector of ones through it
(``make_vjp``), i.e. the gradient of sum_b J_b; members share no operation, so row b is
dJ_b/dU_b (idiom "batch axis").  ``prepare_cost`` runs the same cost function on plain
float64 arrays: no boxes, no tape.  Float64 on the CPU only (autograd is NumPy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

Cost = Callable[[Any], Any]


# ---- Lorenz-63 -----------------------------------------------------------------------------

def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: float) -> tuple[Any, Any, Any]:
    """One forward-Euler step of eq. (20), List 1 (arrays of any one shape in and out)."""
    return (
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    )


def make_cost(problem: Lorenz63Problem) -> Cost:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2, integrating only to the last observation.

    ``u`` of shape (n_control,) -> 0-d J, or (B, n_control) -> J of shape (B,).
    """
    observed = {int(s): k for k, s in enumerate(problem.obs_steps)}
    obs = np.asarray(problem.obs_values, dtype=np.float64)
    nlast = problem.last_obs_step
    dt = problem.dt
    params = problem.n_control == 6
    fixed = tuple(problem.params[k] for k in ("sigma", "r", "beta"))

    def cost(u: Any) -> Any:
        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        sigma, r, beta = (u[..., 3], u[..., 4], u[..., 5]) if params else fixed
        J = 0.0
        for n in range(nlast + 1):
            k = observed.get(n)
            if k is not None:
                dx, dy, dz = x - obs[k, 0], y - obs[k, 1], z - obs[k, 2]
                J = J + 0.5 * (dx * dx + dy * dy + dz * dz)
            if n < nlast:
                x, y, z = euler_step(x, y, z, sigma, r, beta, dt)
        return J

    return cost


# ---- Lorenz-96 -----------------------------------------------------------------------------

def rhs96(x: Any, F: Any) -> Any:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on the ring (DESIGN.md "Lorenz-96").

    ``np.roll(x, s)[i] = x[i - s]``: shifts -1, 2, 1 give x_{i+1}, x_{i-2}, x_{i-1}.
    """
    import autograd.numpy as anp

    return (anp.roll(x, -1, -1) - anp.roll(x, 2, -1)) * anp.roll(x, 1, -1) - x + F


def rk4_step96(x: Any, F: Any, dt: float) -> Any:
    """One classical RK4 step, in the order of ``models.lorenz96_equations.step``."""
    k1 = rhs96(x, F)
    k2 = rhs96(x + (0.5 * dt) * k1, F)
    k3 = rhs96(x + (0.5 * dt) * k2, F)
    k4 = rhs96(x + dt * k3, F)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def observation_index(indices: np.ndarray, n: int) -> Any:
    """The index of x[..., idx]: ``...`` (all of x), a slice when the indices are evenly spaced
    (a view forward, a strided add backward), else the integer array (autograd's VJP is
    ``np.add.at``)."""
    if indices.size == n:
        return Ellipsis
    steps = np.diff(indices)
    if indices.size == 1 or np.all(steps == steps[0]):
        start, stride = int(indices[0]), int(steps[0]) if indices.size > 1 else 1
        return (Ellipsis, slice(start, start + stride * (indices.size - 1) + 1, stride))
    return (Ellipsis, np.asarray(indices, dtype=np.int64))


def make_cost96(problem: Lorenz96Problem) -> Cost:
    """J(u) = 1/2 |x_0 - xb|^2/sigma_b^2 + 1/2 sum_k |x_{s_k}[idx] - y_k|^2/sigma_o^2.

    Integrates to the last observation only.  ``u`` is (x_0) or (x_0, F): shape (n_control,)
    -> 0-d J, or (B, n_control) -> J of shape (B,), each member with its own F.
    """
    import autograd.numpy as anp

    n = problem.n
    params = problem.control == "state+params"
    observed = {int(s): k for k, s in enumerate(problem.obs_steps)}
    nlast = problem.last_obs_step
    dt = problem.dt
    F_fixed = problem.F
    sigma_o, sigma_b = problem.sigma_o, problem.sigma_b
    at = observation_index(problem.obs_indices, n)
    obs = np.asarray(problem.obs_values, dtype=np.float64)
    xb = None if problem.background is None else np.asarray(problem.background, dtype=np.float64)

    def cost(u: Any) -> Any:
        x0 = u[..., :n]
        F = u[..., n:] if params else F_fixed  # (..., 1): broadcasts over the ring
        x = x0
        J = 0.0
        for s in range(nlast + 1):
            k = observed.get(s)
            if k is not None:
                d = (x[at] - obs[k]) / sigma_o
                J = J + 0.5 * anp.sum(d * d, axis=-1)
            if s < nlast:
                x = rk4_step96(x, F, dt)
        if xb is not None:
            e = (x0 - xb) / sigma_b
            J = J + 0.5 * anp.sum(e * e, axis=-1)
        return J

    return cost


def cost_for(problem: Any) -> Cost:
    return make_cost96(problem) if problem.model == "lorenz96" else make_cost(problem)


# ---- gradient: the tape ---------------------------------------------------------------------

def make_vg(problem: Any, cost: Cost) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """vg(u): ``autograd.value_and_grad`` of the cost (one taped forward, one backward sweep)."""
    from autograd import value_and_grad

    value_and_grad_cost = value_and_grad(cost)
    check = problem.check_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        J, g = value_and_grad_cost(check(u))
        return float(J), np.array(g, dtype=np.float64)

    return vg


def make_vgb(problem: Any, cost: Cost) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """vgb(U): one tape over the batch axis; its VJP with the ones vector is d(sum_b J_b)/dU.

    ``make_vjp`` returns the forward value J[B] with the pullback, so one forward and one
    backward sweep give both (``grad`` of ``sum(cost(U))`` would lose J[B]).
    """
    from autograd import make_vjp

    pullback = make_vjp(cost)

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)
        vjp, J = pullback(U)
        G = vjp(np.ones_like(J))
        return np.array(J, dtype=np.float64), np.array(G, dtype=np.float64)

    return vgb


def make_J(problem: Any, cost: Cost) -> Callable[[np.ndarray], float]:
    """J(u): the same cost function on plain float64 arrays (no boxes, no tape)."""
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        return float(cost(check(u)))

    return J


def make_Jb(problem: Any, cost: Cost) -> Callable[[np.ndarray], np.ndarray]:
    """costs(U): the batched cost of ``make_vgb`` on plain float64 arrays (no boxes, no tape)."""

    def costs(U: np.ndarray) -> np.ndarray:
        return np.array(cost(check_controls(problem, U)), dtype=np.float64)

    return costs


class AutogradBackend(Backend):
    name = "autograd"
    kind = "AD, tape (NumPy)"
    description = "HIPS autograd: value_and_grad of the costs in autograd.numpy (Euler / RK4 with np.roll), eager tape"
    models = ("lorenz63", "lorenz96")
    requires = ("autograd",)
    batch_idiom = "batch axis"

    @staticmethod
    def _info() -> dict[str, Any]:
        from importlib.metadata import version

        return {"autograd_version": version("autograd"), "numpy_version": np.__version__}

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        return Prepared(make_vg(problem, cost_for(problem)), problem, device=device, dtype=dtype, info=self._info())

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return make_J(problem, cost_for(problem))

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return make_J(problem, cost_for(problem))

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        return make_Jb(problem, cost_for(problem))

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """One tape over a leading batch axis (``make_vgb``)."""
        return PreparedBatch(make_vgb(problem, cost_for(problem)), problem, idiom=self.batch_idiom,
                             device=device, dtype=dtype, info=self._info())


BACKENDS = [AutogradBackend()]
