"""The autograd backend (HIPS autograd, a NumPy tape) on both models.

Randomised problems against complex step: Lorenz-63 (``random_problem``) and Lorenz-96
(``random_problem96``, n in {4, 5, 7, 40, random}), both controls, observations at step 0
only, at the last step only and random; ``prepare_batch`` rows against single calls
(B in {1, 3, 17}); ``prepare_cost`` against the gradient's J; bad inputs as ValueError.
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

NAME = "autograd"
CONTROLS = ("state", "state+params")


@pytest.fixture(scope="module")
def backend():
    return backend_or_skip(NAME)


def with_ends(p):
    """p, and p observed at step 0 only and at its last step only (both ends of the window)."""
    return [p, p.with_(obs_steps=[0], obs_values=p.obs_values[:1]),
            p.with_(obs_steps=[p.nsteps], obs_values=p.obs_values[-1:])]


def problems(rng, control):
    out = with_ends(random_problem(rng, control, max_steps=120)) + [ab.Lorenz63Problem.paper(control)]
    for n in (4, 5, 7, 40, None):
        out.append(random_problem96(rng, control, n=n, max_steps=20))
    return out + with_ends(random_problem96(rng, control, max_steps=12))[1:]


def perturbed(rng, p, scale=0.02):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


@pytest.mark.parametrize("control", CONTROLS)
def test_matches_complex_step(backend, control, rng):
    for p in problems(rng, control):
        vg = backend.prepare(p)
        assert (vg.device, vg.dtype) == ("cpu", "float64") and "autograd_version" in vg.info
        for u in (p.u0, perturbed(rng, p)):
            res = verify.check_vg(NAME, vg, p, u)
            assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(p.u0)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@pytest.mark.parametrize("control", CONTROLS)
def test_batch_rows_equal_single_calls(backend, control, rng):
    for p in (random_problem(rng, control, max_steps=60), random_problem96(rng, control, max_steps=10)):
        vg, vgb = backend.prepare(p), backend.prepare_batch(p)
        assert vgb.idiom == backend.batch_idiom == "batch axis"
        for B in (1, 3, 17):
            U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for i in range(B):
                Ji, gi = vg(U[i])
                assert J[i] == pytest.approx(Ji, rel=1e-13)
                np.testing.assert_allclose(G[i], gi, rtol=1e-12, atol=1e-13 * np.max(np.abs(gi)))
            assert len({float(j) for j in J}) == B  # distinct members, distinct costs


@pytest.mark.parametrize("control", CONTROLS)
def test_cost_equals_gradient_J(backend, control, rng):
    assert backend.has_cost("lorenz63") and backend.has_cost("lorenz96")
    for p in (random_problem(rng, control, max_steps=150), random_problem96(rng, control, max_steps=20)):
        cost, vg = backend.prepare_cost(p), backend.prepare(p)
        for u in (p.u0, perturbed(rng, p)):
            J = cost(u)
            assert isinstance(J, float)
            assert J == pytest.approx(vg(u)[0], rel=1e-14)
            assert J == pytest.approx(float(p.cost(u)), rel=1e-12)


def test_bad_inputs_are_value_errors(backend, rng):
    for p in (random_problem(rng, "state+params", max_steps=5), random_problem96(rng, "state", max_steps=5)):
        vg, vgb, cost = backend.prepare(p), backend.prepare_batch(p), backend.prepare_cost(p)
        m = p.n_control
        for bad in (np.zeros(m - 1), np.zeros(m + 1), np.zeros((1, m)), np.zeros(m, dtype=complex),
                    np.full(m, np.nan), np.r_[np.zeros(m - 1), np.inf], "abc", ["a"] * m):
            for f in (vg, cost):
                with pytest.raises(ValueError):
                    f(bad)
        good = np.tile(p.u0, (2, 1))
        nan = good.copy()
        nan[1, 0] = np.nan
        for bad in (p.u0, np.zeros((2, m + 1)), np.zeros((0, m)), np.zeros((2, m, 1)), nan, good.astype(complex)):
            with pytest.raises(ValueError):
                vgb(bad)
        assert verify.check_vg(NAME, vg, p).passed  # still correct afterwards
