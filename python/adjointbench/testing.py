"""Random Lorenz-63 problems for tests and checks: never numbers copied from an earlier run."""

from __future__ import annotations

import numpy as np

from .model import trajectory
from .problem import Lorenz63Problem


def random_problem(rng: np.random.Generator, control: str = "state", max_steps: int = 250) -> Lorenz63Problem:
    """A random, well-posed problem: random parameters, dt, nsteps and observation steps.

    Observation steps always include 0 or the last step in some draws (each with probability
    1/2), so both ends of the window are exercised; observed values come from a perturbed
    truth plus noise, so J and every gradient component are generically non-zero.
    """
    nsteps = int(rng.integers(1, max_steps + 1))
    dt = float(rng.uniform(0.002, 0.02))
    truth = {"sigma": rng.uniform(6, 14), "r": rng.uniform(20, 35), "beta": rng.uniform(1.5, 4.0)}
    x_truth = rng.uniform(-8, 8, 3) + np.array([0.0, 0.0, 20.0])
    k = int(rng.integers(1, min(nsteps + 1, 6) + 1))
    steps = set(rng.choice(nsteps + 1, size=k, replace=False).tolist())
    if rng.random() < 0.5:
        steps.add(0)
    if rng.random() < 0.5:
        steps.add(nsteps)
    steps = sorted(steps)
    w = trajectory(x_truth, truth["sigma"], truth["r"], truth["beta"], dt, nsteps)
    values = w[steps] + 0.5 * rng.standard_normal((len(steps), 3))
    guess = {name: value * rng.uniform(0.9, 1.1) for name, value in truth.items()}
    return Lorenz63Problem(
        dt=dt, nsteps=nsteps, x0=x_truth + rng.normal(0, 0.5, 3), params=guess,
        obs_steps=steps, obs_values=values, control=control,
    )
