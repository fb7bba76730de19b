"""Random problems (both models) for tests and checks: never numbers copied from an earlier run."""

from __future__ import annotations

import numpy as np

from . import verify
from .model import trajectory
from .models import Lorenz96Problem
from .models import lorenz96_equations as l96
from .problem import Lorenz63Problem

#: a drawn Lorenz-63 problem is drawn again while rounding alone moves its reference gradient
#: by more than this (``verify.reference_rounding_error``): the gate then tests the arithmetic,
#: not the derivative.  The window that showed it (202 steps of dt 0.019, J ~ 1.4e3, |grad| ~
#: 6e6): the reference's own rounding error was 3.7e-11 at u0 and 4.6e-10 at a control 1 %
#: away, where jax's gradient (XLA CPU contracts a*b+c into FMA) differed from it by 1.0e-9
#: while numpy, cython, enzyme and torch agreed to 7e-15.  Tolerance / 50 leaves that room.
ROUNDING_LIMIT = verify.TOLERANCE / 50


def random_problem(rng: np.random.Generator, control: str = "state", max_steps: int = 250) -> Lorenz63Problem:
    """A random, well-posed problem: random parameters, dt, nsteps and observation steps.

    Observation steps always include 0 or the last step in some draws (each with probability
    1/2), so both ends of the window are exercised; observed values come from a perturbed
    truth plus noise, so J and every gradient component are generically non-zero.  A draw
    whose gradient is too ill-conditioned to check at the gate (``ROUNDING_LIMIT``) is
    replaced by the next; where long double is no wider than double this cannot be measured
    and every draw is kept.
    """
    while True:
        problem = _draw_problem(rng, control, max_steps)
        if not verify.reference_rounding_error(problem) > ROUNDING_LIMIT:  # NaN: not measurable, kept
            return problem


def _draw_problem(rng: np.random.Generator, control: str, max_steps: int) -> Lorenz63Problem:
    nsteps = int(rng.integers(1, max_steps + 1))
    dt = float(rng.uniform(0.002, 0.02))
    truth = {"sigma": rng.uniform(6, 14), "r": rng.uniform(20, 35), "beta": rng.uniform(1.5, 4.0)}
    x_truth = rng.uniform(-8, 8, 3) + np.array([0.0, 0.0, 20.0])
    k = int(rng.integers(1, min(nsteps + 1, 6) + 1))
    picked = set(rng.choice(nsteps + 1, size=k, replace=False).tolist())
    if rng.random() < 0.5:
        picked.add(0)
    if rng.random() < 0.5:
        picked.add(nsteps)
    steps = np.array(sorted(picked), dtype=np.int64)
    w = trajectory(x_truth, truth["sigma"], truth["r"], truth["beta"], dt, nsteps)
    values = w[steps] + 0.5 * rng.standard_normal((len(steps), 3))
    guess = {name: value * rng.uniform(0.9, 1.1) for name, value in truth.items()}
    return Lorenz63Problem(
        dt=dt, nsteps=nsteps, x0=x_truth + rng.normal(0, 0.5, 3), params=guess,
        obs_steps=steps, obs_values=values, control=control,
    )


def random_problem96(
    rng: np.random.Generator, control: str = "state", n: int | None = None, max_steps: int = 30,
    background: bool | None = None,
) -> Lorenz96Problem:
    """A random Lorenz-96 problem: random n (4, 5, 7, 40 or up to 64 unless given), F, dt,
    window, observation steps (0 and the last each with probability 1/2), a random subset of
    observed indices, with or without a background term (random unless given), random sigmas.

    The truth starts on a random state near the attractor's range (F + 2 xi); observations
    are the truth plus noise and the first guess a perturbed truth, so every entry of the
    gradient is generically non-zero.
    """
    if n is None:
        n = int(rng.choice([4, 5, 7, 40, int(rng.integers(4, 65))]))
    nsteps = int(rng.integers(1, max_steps + 1))
    dt = float(rng.uniform(0.005, 0.05))
    F = float(rng.uniform(4.0, 12.0))
    k = int(rng.integers(1, min(nsteps + 1, 6) + 1))
    picked = set(rng.choice(nsteps + 1, size=k, replace=False).tolist())
    if rng.random() < 0.5:
        picked.add(0)
    if rng.random() < 0.5:
        picked.add(nsteps)
    steps = np.array(sorted(picked), dtype=np.int64)
    m = int(rng.integers(1, n + 1))
    idx = np.sort(rng.choice(n, size=m, replace=False))
    x_truth = F + 2.0 * rng.standard_normal(n)
    truth = l96.observe(x_truth, F, dt, steps, idx)
    sigma_o = float(rng.uniform(0.5, 2.0))
    values = truth + sigma_o * rng.standard_normal(truth.shape)
    if background is None:
        background = bool(rng.random() < 0.5)
    sigma_b = float(rng.uniform(0.5, 2.0))
    guess = x_truth + 0.5 * rng.standard_normal(n)
    return Lorenz96Problem(
        n=n, dt=dt, nsteps=nsteps, x0=guess, F=F * float(rng.uniform(0.9, 1.1)), obs_steps=steps, obs_indices=idx,
        obs_values=values, sigma_o=sigma_o, background=(x_truth + sigma_b * rng.standard_normal(n)) if background else None,
        sigma_b=sigma_b, control=control,
    )
