"""Backend ``casadi`` (an unrolled SX expression graph, reverse mode): both models, both controls.

Randomised problems against complex step (Lorenz-63 and Lorenz-96 with n in {4, 5, 7, 40,
random}, observations at step 0 and the last), ``prepare_batch`` (``Function.map``) rows
against single calls for B in {1, 3, 17}, the forward-only J against the gradient call's J,
bad controls and batches as ValueError, and the graph-size bound (``max_work``) refused by
``prepare`` with a ValueError before any graph is built.
"""

import numpy as np
import pytest

from adjointbench import verify
from adjointbench.models import Lorenz96Problem
from adjointbench.models import lorenz96_equations as l96
from adjointbench.problem import Lorenz63Problem
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

CONTROLS = ("state", "state+params")
NAME = "casadi"


def with_ends(rng, p):
    """``p`` observed at step 0 and at its last step only (fresh random values)."""
    steps = np.array([0, p.nsteps]) if p.nsteps > 0 else np.array([0])
    if p.model == "lorenz63":
        values = p.obs_values[:1].repeat(steps.size, 0) + rng.standard_normal((steps.size, 3))
        return p.with_(obs_steps=steps, obs_values=values)
    values = l96.observe(p.x0, p.F, p.dt, steps, p.obs_indices) + rng.standard_normal((steps.size, p.obs_indices.size))
    return p.with_(obs_steps=steps, obs_values=values)


def problems63(rng, control):
    out = [random_problem(rng, control, max_steps=60) for _ in range(3)]
    out.append(with_ends(rng, out[0]))
    p = out[1]
    out.append(p.with_(obs_steps=[0], obs_values=p.obs_values[:1]))
    return out


def problems96(rng, control):
    out = [random_problem96(rng, control, n=n, max_steps=12) for n in (4, 5, 7, 40, int(rng.integers(4, 65)))]
    out.append(with_ends(rng, out[int(rng.integers(len(out)))]))
    return out


def perturbed(rng, p, scale=0.02):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


@pytest.mark.parametrize("control", CONTROLS)
def test_matches_complex_step_both_models(control, rng):
    b = backend_or_skip(NAME)
    assert b.supports("lorenz63")[0] and b.supports("lorenz96")[0]
    for p in problems63(rng, control) + problems96(rng, control):
        vg = b.prepare(p)
        assert (vg.device, vg.dtype) == ("cpu", "float64")
        assert vg.compile_s is not None and vg.compile_s >= 0
        assert vg.info["sx_instructions"] > 0 and vg.info["work"] <= b.max_work(p.model)
        for u in (p.u0, perturbed(rng, p)):
            res = verify.check_vg(NAME, vg, p, u)
            assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(p.u0)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


def test_controls_that_J_does_not_depend_on_get_zeros(rng):
    """Observed at step 0 only, J does not depend on F (or sigma, r, beta): exact zeros there."""
    b = backend_or_skip(NAME)
    for p in (random_problem(rng, "state+params", max_steps=20), random_problem96(rng, "state+params", max_steps=8)):
        p = p.with_(obs_steps=[0], obs_values=p.obs_values[:1])
        vg = b.prepare(p)
        J, g = vg(p.u0)
        assert np.all(g[p.n_control - (3 if p.model == "lorenz63" else 1):] == 0.0)
        assert verify.check_vg(NAME, vg, p).passed
        _, G = b.prepare_batch(p)(np.tile(p.u0, (3, 1)))
        assert np.array_equal(G, np.tile(g, (3, 1)))


def test_paper_problem_and_standard_lorenz96():
    b = backend_or_skip(NAME)
    for control in CONTROLS:
        for p in (Lorenz63Problem.paper(control), Lorenz96Problem.standard(n=40, nsteps=40, control=control)):
            vg = b.prepare(p)
            assert verify.check_vg(NAME, vg, p).passed


@pytest.mark.parametrize("control", CONTROLS)
def test_batch_rows_equal_single_calls(control, rng):
    b = backend_or_skip(NAME)
    for p in (random_problem(rng, control, max_steps=40), random_problem96(rng, control, max_steps=10)):
        vg, vgb = b.prepare(p), b.prepare_batch(p)
        assert vgb.idiom == b.batch_idiom == "map"
        assert (vgb.device, vgb.dtype) == ("cpu", "float64")
        for B in (1, 3, 17, 3):  # 3 again: the cached mapped Function
            U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for i in range(B):
                Ji, gi = vg(U[i])
                assert J[i] == pytest.approx(Ji, rel=1e-13)
                np.testing.assert_allclose(G[i], gi, rtol=1e-12, atol=1e-13 * np.max(np.abs(gi)))
            assert len({float(j) for j in J}) == B  # distinct members give distinct costs
        # a Fortran-ordered or strided batch is the same batch
        U = p.u0 * (1 + 0.05 * rng.standard_normal((4, p.n_control)))
        J, G = vgb(U)
        J2, G2 = vgb(np.asfortranarray(U))
        assert np.array_equal(J, J2) and np.array_equal(G, G2)


@pytest.mark.parametrize("control", CONTROLS)
def test_cost_equals_gradient_calls_J(control, rng):
    b = backend_or_skip(NAME)
    for p in (random_problem(rng, control, max_steps=80), random_problem96(rng, control, max_steps=12)):
        assert b.has_cost(p.model)
        J, vg = b.prepare_cost(p), b.prepare(p)
        for u in (p.u0, perturbed(rng, p)):
            Jc = J(u)
            assert isinstance(Jc, float)
            assert Jc == pytest.approx(vg(u)[0], rel=1e-14)
            assert Jc == pytest.approx(float(p.cost(u)), rel=1e-12)
        with pytest.raises(ValueError):
            J(np.zeros(p.n_control + 1))


def test_bad_inputs_are_value_errors(rng):
    b = backend_or_skip(NAME)
    for p in (random_problem(rng, "state+params", max_steps=10), random_problem96(rng, "state", max_steps=5)):
        vg, vgb = b.prepare(p), b.prepare_batch(p)
        m = p.n_control
        for bad in (np.zeros(m + 1), np.zeros(m - 1), np.zeros((m, 1)), np.zeros(0), np.full(m, np.nan),
                    np.full(m, 1j), [1.0] * (m + 2)):
            with pytest.raises(ValueError):
                vg(bad)
        good = np.tile(p.u0, (2, 1))
        nan, inf = good.copy(), good.copy()
        nan[1, 0], inf[0, -1] = np.nan, np.inf
        for bad in (p.u0, np.zeros((2, m + 1)), np.zeros((2, m - 1)), np.zeros((0, m)), np.zeros((2, m, 1)),
                    nan, inf, good.astype(complex), np.full((2, m), "x"), [[1.0] * m, [1.0] * (m - 1)]):
            with pytest.raises(ValueError):
                vgb(bad)
        # still right afterwards
        assert verify.check_vg(NAME, vg, p).passed
        J, G = vgb(good)
        assert np.array_equal(G[0], vg(p.u0)[1])


def test_graph_size_bound_is_refused_before_building(monkeypatch):
    b = backend_or_skip(NAME)
    from adjointbench.backends import casadi_ad

    bound = b.max_work("lorenz96")
    assert bound == b.max_work("lorenz63") == casadi_ad.MAX_WORK and b.max_work("lorenz99") is None
    # just above the bound: n x last observation step = bound + n
    n = 10_000
    steps = bound // n + 1
    big = Lorenz96Problem(n=n, dt=0.01, nsteps=steps, x0=np.full(n, 8.0), F=8.0, obs_steps=[steps],
                          obs_indices=[0], obs_values=[[1.0]])
    assert casadi_ad.work(big) > bound

    def built(*a, **k):
        raise AssertionError("a graph was built for a problem beyond the bound")

    monkeypatch.setattr(casadi_ad, "graph", built)
    for prepare in (b.prepare, b.prepare_batch, b.prepare_cost):
        with pytest.raises(ValueError, match="SX expression graph.*variable-steps"):
            prepare(big)
    # the bound follows the environment; a bad value is a ValueError too
    monkeypatch.setenv(casadi_ad.MAX_WORK_ENV, "100")
    assert b.max_work("lorenz63") == 100
    with pytest.raises(ValueError, match="beyond the bound of 100"):
        b.prepare(Lorenz63Problem.paper())
    monkeypatch.setenv(casadi_ad.MAX_WORK_ENV, "lots")
    with pytest.raises(ValueError, match=casadi_ad.MAX_WORK_ENV):
        b.prepare(Lorenz63Problem.paper())
    monkeypatch.undo()
    assert verify.check_vg(NAME, b.prepare(Lorenz63Problem.paper()), Lorenz63Problem.paper()).passed
