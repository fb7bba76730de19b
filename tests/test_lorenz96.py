"""Lorenz-96: the NumPy hand adjoint of RK4 and the verification that scales with N."""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.models import Lorenz96Problem
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem96

CONTROLS = ["state", "state+params"]


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("n", [4, 5, 7, 40, None])
def test_numpy_matches_complex_step(rng, control, n):
    for background in (True, False):
        for _ in range(3):
            p = random_problem96(rng, control, n=n, background=background)
            r = verify.check_backend("numpy", p)
            assert r.passed, (p.label(), r)


def test_observation_at_step_zero_and_last(rng):
    for steps in ([0], [0, 5], [5], [2, 5]):
        p = random_problem96(rng, "state+params", n=6).with_(
            nsteps=5, obs_steps=steps, obs_values=np.ones((len(steps), 6)), obs_indices=np.arange(6)
        )
        assert verify.check_backend("numpy", p).passed


def test_directional_check_at_large_n(rng):
    p = Lorenz96Problem.standard(n=100_000 + int(rng.integers(0, 1000)), nsteps=2, obs_every=1,
                                 seed=int(rng.integers(1 << 31)), spinup=20, control="state+params")
    r = verify.check_backend("numpy", p)
    assert r.passed, r
    # the directional check is not blind: a gradient off in one entry of 10^5, or off by 1e-8
    # relative everywhere, fails it
    J, g = ab.backend("numpy").prepare(p)(p.u0)
    one = g.copy()
    one[int(rng.integers(p.n))] += 1e-3 * np.max(np.abs(g))
    assert verify.directional_error(p, p.u0, one) > verify.TOLERANCE
    assert verify.directional_error(p, p.u0, g * (1 + 1e-8)) > verify.TOLERANCE


def test_directional_and_full_checks_agree_on_small_n(rng):
    p = random_problem96(rng, "state", n=20)
    J, g = ab.backend("numpy").prepare(p)(p.u0)
    assert verify.directional_error(p, p.u0, g) <= verify.TOLERANCE
    wrong = g.copy()
    wrong[3] *= 1.001
    assert verify.directional_error(p, p.u0, wrong) > verify.TOLERANCE


@pytest.mark.parametrize("control", CONTROLS)
def test_taylor_and_dot_product(rng, control):
    p = random_problem96(rng, control, n=int(rng.integers(4, 50)), max_steps=20)
    J, g = ab.backend("numpy").prepare(p)(p.u0)
    ratios = verify.taylor_test(lambda u: float(p.cost(u)), g, p.u0)
    assert np.min(np.abs(ratios[3:9] - 1)) < 1e-6
    du = rng.standard_normal(p.n_control)
    a, b = verify.dot_product_test(p, p.u0, du)
    assert abs(a - b) <= 1e-12 * abs(a)


def test_tangent_linear_is_the_derivative_of_the_step(rng):
    x = 8 + 2 * rng.standard_normal(9)
    dx = rng.standard_normal(9)
    h = 1e-20
    cs = np.imag(l96.step(x + 1j * h * dx, 8.0 + 1j * h * 0.3, 0.03)) / h
    np.testing.assert_allclose(l96.step_tangent(x, dx, 8.0, 0.3, 0.03), cs, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_numpy_batch_rows_equal_single_calls(rng, control, model):
    from adjointbench.testing import random_problem

    p = random_problem96(rng, control) if model == "lorenz96" else random_problem(rng, control)
    b = ab.backend("numpy")
    vg, vgb = b.prepare(p), b.prepare_batch(p)
    assert vgb.idiom == "batch axis"
    for B in (1, 3, 17):
        U = p.u0 + 0.1 * rng.standard_normal((B, p.n_control))
        J, G = vgb(U)
        assert J.shape == (B,) and G.shape == (B, p.n_control)
        for i in range(B):
            Ji, gi = vg(U[i])
            assert abs(J[i] - Ji) <= 1e-13 * abs(Ji)
            assert verify.relative_error(G[i], gi) <= 1e-13


@pytest.mark.parametrize("name", ["numpy", "complex-step"])
def test_bad_batches_are_value_errors(name):
    p = Lorenz96Problem.standard(n=6, nsteps=4)
    vgb = ab.backend(name).prepare_batch(p)
    for bad, msg in ((np.zeros((0, 6)), "at least one row"), (np.zeros((2, 7)), "shape"), (np.zeros(6), "shape"),
                     (np.array([[0.0] * 6, [np.nan] + [0.0] * 5]), "first row 1")):
        with pytest.raises(ValueError, match=msg):
            vgb(bad)


def test_backend_without_the_model_is_a_value_error():
    class Only63(ab.Backend):
        name = "only63"

    with pytest.raises(ValueError, match="does not implement model 'lorenz96'"):
        Only63().prepare(Lorenz96Problem.standard(n=4, nsteps=4))
    with pytest.raises(ValueError, match="needs a problem"):
        ab.backend("numpy").prepare({"model": "lorenz96"})


def test_every_backend_declares_known_models():
    for b in ab.backends.all_backends():
        assert b.models and set(b.models) <= set(ab.MODELS), b.name
        for m in b.models:
            assert callable(b._handler("prepare", m)), (b.name, m)
