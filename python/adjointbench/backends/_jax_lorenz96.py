"""The Lorenz (1996) forward model and 4D-Var cost in ``jax.numpy`` (docs/DESIGN.md "Lorenz-96").

The model half of the backends ``jax``, ``jax-nojit`` and ``enzyme-jax`` for Lorenz-96; the
device, precision, x64 and compile logic is ``_jax_model.py``'s, shared with Lorenz-63
(``_jax_model.cost_for`` picks this module's :func:`make_cost` by ``problem.model``).

* The tendency f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F reads its ring neighbours from
  one padded copy of x (the shifts ``jnp.roll`` would give, in one concatenate); JAX's AD
  transposes the slices into the adjoint's opposite shifts (``rhs_adjoint`` of
  ``lorenz96_equations.py``) without being told.
* The RK4 step is the scan body, as the Euler step is for Lorenz-63; the scan stops at
  ``problem.last_obs_step`` and emits only the observed entries x_n[idx] of each state.
  The step is a ``jax.checkpoint``, so reverse mode stores the states x_n alone and
  recomputes the RK4 stages in the backward sweep, as the hand adjoint does (2-3x faster at
  large N than storing every intermediate; see :func:`observed_trajectory`).
* Every number of the problem (observations, indices, background, sigmas, dt, F for
  control ``state``) is a constant baked in at trace time, in the requested dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..models import Lorenz96Problem
from ._jax_model import np_dtype

#: scan unroll (RK4 steps per iteration of the XLA while loop) per AD route and platform,
#: measured by ``bench/jax_unroll.py --model lorenz96`` and interleaved calls (standard
#: problem, nsteps = 40, min per call, 2-thread AMD EPYC VM, jax 0.10.2): jax 231/230/399 us
#: at N = 40 and 6.6/8.1/12.6 ms at N = 4000 for unroll 1/2/4; enzyme-jax 354/570 us and
#: 13.1/29.8 ms for unroll 1/2.  An RK4 step of Lorenz-96 is ~20 vector operations on N
#: numbers, so the while loop's per-iteration overhead matters little and unrolling only
#: makes the code larger (and compiles slower): 1 on CPU.  The GPU keeps Lorenz-63's 12
#: (launch overhead per iteration dominates there at small N; not re-measured for Lorenz-96)
UNROLL = {"jax": {"cpu": 1, "gpu": 12}, "enzyme-jax": {"cpu": 1}}


def rhs(x: jax.Array, F: Any) -> jax.Array:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on the ring, for x of shape (..., N).

    The neighbours are slices of one padded copy p = (x_{N-2}, x_{N-1}, x_0..x_{N-1}, x_0)
    with p[i + 2] = x_i, as ``lorenz96_equations.rhs``: one concatenate instead of the three
    of ``jnp.roll(x, -1) ...`` (same numbers to the bit).  Measured at N = 40000, 40 steps:
    0.18 s per gradient with the pad against 0.34 s with three rolls (XLA CPU).  Writing the
    interior by slices of x into the result (``lax.dynamic_update_slice``) makes the forward
    ~3x faster but the gradient ~40% slower (its transpose scatters single entries):
    ``bench/jax_rhs.py`` times the four variants; the pad has the fastest gradient.
    """
    p = jnp.concatenate([x[..., -2:], x, x[..., :1]], axis=-1)
    return (p[..., 3:] - p[..., :-3]) * p[..., 1:-2] - x + F


def rk4_step(x: jax.Array, F: Any, dt: float) -> jax.Array:
    """One classical RK4 step, the lines of ``lorenz96_equations.step``."""
    k1 = rhs(x, F)
    k2 = rhs(x + (0.5 * dt) * k1, F)
    k3 = rhs(x + (0.5 * dt) * k2, F)
    k4 = rhs(x + dt * k3, F)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


#: the fewest scan iterations an AD route may see.  Enzyme-MLIR (enzyme-ad 0.0.16) never
#: finished compiling (> 400 s, its greedy pattern rewriter spinning) the gradient of a
#: Lorenz-96 window of 2-4 RK4 steps: its pass pipeline unrolls while loops of <= 4 trips
#: (``enzyme_hlo_unroll(4)``) and 2-4 straight-line RK4 steps of slices and concatenates
#: blow the rewriter up (also with ``jnp.roll`` and without ``jax.checkpoint``).  Windows
#: shorter than this run that many iterations, the extra ones masked to the identity by
#: ``jnp.where`` (same J, same gradient: the masked steps are not taken).  1 and >= 5 steps
#: compiled in seconds.
MIN_TRIP = {"enzyme-jax": 5}

#: AD routes that must gather the observed entries even when they are a prefix 0..m-1 of the
#: state.  Enzyme-MLIR (enzyme-ad 0.0.16) aborts the process ("limit index 2n is larger than
#: dimension size n+1", an LLVM fatal error, no Python exception) lowering the vmapped
#: gradient of control state+params (u = (x0, F) of shape (B, n + 1)) when the scan body
#: slices x[:m]: its slice simplification composes that slice with u[:, :n] by adding the
#: limits; taking the whole state (no index) aborts the same way.  Found with
#: tests/test_contract_lorenz96.py (N = 38, B >= 2; B = 1 and control state lower fine); the
#: gather x[idx] lowers fine, so these routes always gather.
GATHER_PREFIX = frozenset({"enzyme-jax"})


def observed_trajectory(
    x0: jax.Array, F: Any, dt: float, nlast: int, idx: Any, unroll: int = 1, min_trip: int = 0,
) -> jax.Array:
    """x_n[idx] for n = 0..nlast, shape (nlast + 1, len(idx)), the time loop a ``lax.scan``.

    The step is a ``jax.checkpoint``: reverse mode keeps only the state x_n of each step and
    recomputes its four RK4 stages in the backward sweep (the recipe of the hand adjoint in
    ``lorenz96_equations.py``), instead of storing ~20 intermediate N-vectors per step.  The
    memory traffic saved is most of the time: at N = 40000, 40 steps, 0.18 -> 0.056 s per
    gradient (numpy's hand adjoint: 0.047 s); at N = 40 0.27 -> 0.21 ms.  (``prevent_cse=False``,
    which JAX suggests inside a scan, measured 20% slower at N = 40000: kept at the default.)
    A window shorter than ``min_trip`` steps is padded with masked steps (see ``MIN_TRIP``).
    """
    if nlast == 0:
        return x0[idx][None]
    step = jax.checkpoint(lambda x: rk4_step(x, F, dt))

    if nlast >= min_trip:
        def body(x: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
            x1 = step(x)
            return x1, x1[idx]

        _, ys = lax.scan(body, x0, None, length=nlast, unroll=max(1, min(unroll, nlast)))
        return jnp.concatenate([x0[idx][None], ys])

    def masked(x: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
        x1 = jnp.where(i < nlast, step(x), x)
        return x1, x1[idx]

    _, ys = lax.scan(masked, x0, jnp.arange(min_trip), unroll=1)
    return jnp.concatenate([x0[idx][None], ys[:nlast]])


def make_cost(
    problem: Lorenz96Problem, dtype: str = "float64", unroll: int = 1, min_trip: int = 0, slice_prefix: bool = True,
) -> Callable[[jax.Array], jax.Array]:
    """J(u) = 1/2 |(x0 - xb)/sigma_b|^2 [background] + 1/2 sum_k |(x_{s_k}[idx] - y_k)/sigma_o|^2.

    u = x_0 (n entries) or (x_0, F) (n + 1, F last), as ``problem.split``.  Observing every
    entry takes no index and a prefix 0..m-1 a slice, unless ``slice_prefix`` is off (see
    ``GATHER_PREFIX``); any other set a gather.
    """
    npdt = np_dtype(dtype)
    n = problem.n
    params = problem.control == "state+params"
    steps = np.asarray(problem.obs_steps, dtype=np.int32)
    idx = np.asarray(problem.obs_indices, dtype=np.int32)
    # a contiguous prefix 0..m-1 needs no gather (the common "observe everything" case)
    obs_idx: Any = idx
    if slice_prefix and np.array_equal(idx, np.arange(idx.size)):
        obs_idx = slice(None) if idx.size == n else slice(0, idx.size)
    obs = np.asarray(problem.obs_values, dtype=npdt)
    sigma_o, sigma_b = problem.sigma_o, problem.sigma_b
    xb = None if problem.background is None else np.asarray(problem.background, dtype=npdt)
    F_fixed = npdt(problem.F)
    nlast = problem.last_obs_step
    dt = problem.dt

    def cost(u: jax.Array) -> jax.Array:
        x0 = u[:n]
        F = u[n] if params else F_fixed
        y = observed_trajectory(x0, F, dt, nlast, obs_idx, unroll, min_trip)
        d = (y[steps] - obs) / sigma_o
        J = 0.5 * jnp.sum(d * d)
        if xb is not None:
            e = (x0 - xb) / sigma_b
            J = J + 0.5 * jnp.sum(e * e)
        return J

    return cost
