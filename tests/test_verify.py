import numpy as np
import pytest

from adjointbench import Lorenz63Problem, backend, model, verify
from adjointbench.testing import random_problem


def test_complex_step_and_fd_on_a_known_function():
    f = lambda x: x[0] ** 4.5 + np.sin(x[1]) * x[0]  # noqa: E731
    x = np.array([1.5, 0.3])
    exact = np.array([4.5 * 1.5**3.5 + np.sin(0.3), np.cos(0.3) * 1.5])
    assert verify.relative_error(verify.complex_step_gradient(f, x), exact) < 1e-15
    assert verify.relative_error(verify.fd_gradient(f, x), exact) < 1e-9


def test_relative_error_edge_cases():
    assert verify.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert verify.relative_error(np.array([np.nan, 0, 0]), np.ones(3)) == float("inf")
    assert verify.relative_error(np.ones(2), np.ones(3)) == float("inf")


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_taylor_ratio_tends_to_one(rng, control):
    p = random_problem(rng, control, max_steps=150)
    vg = backend("numpy").prepare(p)
    J, g = vg(p.u0)
    ratios = verify.taylor_test(lambda u: vg(u)[0], g, p.u0)
    # first-order convergence: |ratio - 1| shrinks ~10x per decade until rounding takes over
    err = np.abs(ratios - 1)
    best = int(np.argmin(err[:10]))
    assert err[best] < 1e-5
    assert err[3] < err[1] or err[1] < 1e-6


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_dot_product(rng, control):
    p = random_problem(rng, control)
    lhs, rhs = verify.dot_product_test(p, p.u0, rng.standard_normal(p.n_control))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_eq8_invariant(rng):
    p = random_problem(rng, "state")
    inv = verify.eq8_invariant(p, p.u0, rng.standard_normal(3), rng.standard_normal(3))
    assert len(inv) == p.nsteps + 1
    np.testing.assert_allclose(inv, inv[0], rtol=1e-11, atol=1e-13 * np.max(np.abs(inv)))


def test_eq8_detects_a_wrong_adjoint(rng, monkeypatch):
    """The invariant must fail for a wrong adjoint (here: the TLM with sigma perturbed)."""
    p = Lorenz63Problem.paper()
    real = model.tangent_linear

    def wrong(w, dw, sigma, *a):
        real(w, dw, sigma * 1.001, *a)

    monkeypatch.setattr(model, "tangent_linear", wrong)
    inv = verify.eq8_invariant(p, p.u0, np.ones(3), np.ones(3))
    assert np.max(np.abs(inv - inv[0])) > 1e-6 * np.abs(inv[0])


def test_check_vg_flags_a_wrong_gradient():
    p = Lorenz63Problem.paper()
    vg = backend("numpy").prepare(p)

    def off(u):
        J, g = vg(u)
        return J, g * (1 + 1e-9)

    assert verify.check_vg("numpy", vg, p).passed
    assert not verify.check_vg("off", off, p).passed


def test_reference_backends_agree():
    p = Lorenz63Problem.paper("state+params")
    J, g = verify.reference(p)
    Jc, gc = backend("complex-step").prepare(p)(p.u0)
    Jf, gf = backend("fd").prepare(p)(p.u0)
    assert (J, list(g)) == (Jc, list(gc))
    assert verify.relative_error(gf, g) < 1e-6


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps, reason="long double is double here")
def test_reference_rounding_error_grows_with_the_window(rng):
    """Rounding alone barely moves the reference on a short window and swamps it on a long chaotic one."""
    from adjointbench.testing import ROUNDING_LIMIT

    p = random_problem(rng, "state+params", max_steps=60)
    assert verify.reference_rounding_error(p) <= ROUNDING_LIMIT
    # the same start and observations over 25 model time units with Lorenz's parameters (leading
    # Lyapunov exponent ~0.9: rounding amplified ~e^22); a random draw's parameters could overflow
    # the complex step there (one did: sigma 13.7), and an overflowed window measures nothing
    long = p.with_(params={"sigma": 10.0, "r": 28.0, "beta": 8.0 / 3.0}, dt=0.01, nsteps=2500,
                   obs_steps=[0, 2500], obs_values=p.obs_values[[0, -1]])
    assert verify.reference_rounding_error(long) > 10 * ROUNDING_LIMIT


def test_reference_rounding_error_is_nan_where_it_cannot_be_measured(monkeypatch):
    p = Lorenz63Problem.paper()
    monkeypatch.setattr(Lorenz63Problem, "cost", lambda self, u: model.cost(self, np.asarray(u, np.complex128)))
    assert np.isnan(verify.reference_rounding_error(p))
