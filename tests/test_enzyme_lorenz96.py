"""Backends ``enzyme`` and ``enzyme-jit`` on Lorenz-96 (kernels/lorenz96_enzyme.cpp).

Against complex step on random problems (both controls, with and without a background,
observations at step 0 and at the last step), one large-N problem by the directional check,
the native batch row by row, size checks before native code, the fused driver against the
Python-driven loop, the tape allocator's reuse, the forward-only cost against the gradient's
J and the Python cost, and the JIT route against the ahead-of-time one.  The shipped IR's staleness is
checked in tests/test_enzyme.py (every front door).
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import python_descent
from adjointbench.models import Lorenz96Problem
from adjointbench.testing import random_problem96

BACKEND = ab.backend("enzyme")
OK, WHY = BACKEND.supports("lorenz96") if BACKEND.available()[0] else BACKEND.available()
needs_enzyme96 = pytest.mark.skipif(not OK, reason=WHY)
CONTROLS = ["state", "state+params"]


def with_obs_at_both_ends(rng, p: Lorenz96Problem) -> Lorenz96Problem:
    """p observed at step 0 and at the last step as well (values redrawn to match)."""
    steps = sorted(set(p.obs_steps.tolist()) | {0, p.nsteps})
    return p.with_(obs_steps=steps, obs_values=rng.normal(p.F, 3.0, (len(steps), p.obs_indices.size)))


# ---- gradient against complex step -------------------------------------------------------
@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("background", [True, False])
def test_random_problems_match_complex_step(rng, control, background):
    for n in (4, 5, 7, 40, int(rng.integers(4, 65))):
        p = random_problem96(rng, control, n=n, background=background)
        if rng.random() < 0.5:
            p = with_obs_at_both_ends(rng, p)
        vg = BACKEND.prepare(p)
        u = p.u0 * rng.uniform(0.95, 1.05, p.n_control)  # not only at the first guess
        for point in (p.u0, u):
            res = verify.check_vg("enzyme", vg, p, point)
            assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(u)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
def test_observation_only_at_step_0(rng, control):
    # J = 1/2 |(x0[idx] - y0) / sigma_o|^2 (+ background): no dependence on F, nothing integrated
    p = random_problem96(rng, control, n=int(rng.integers(4, 65)))
    p = p.with_(obs_steps=[0], obs_values=rng.normal(0, 3, (1, p.obs_indices.size)))
    J, g = BACKEND.prepare(p)(p.u0)
    expected = np.zeros(p.n)
    expected[p.obs_indices] = (p.x0[p.obs_indices] - p.obs_values[0]) / p.sigma_o**2
    if p.background is not None:
        expected += (p.x0 - p.background) / p.sigma_b**2
    np.testing.assert_allclose(g[: p.n], expected, rtol=1e-14, atol=1e-14)
    if control == "state+params":
        assert g[p.n] == 0.0
    assert verify.check_vg("enzyme", BACKEND.prepare(p), p).passed


@needs_enzyme96
def test_standard_problem_both_controls():
    for control in CONTROLS:
        p = Lorenz96Problem.standard(control=control)
        assert verify.check_vg("enzyme", BACKEND.prepare(p), p).passed


@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
def test_large_n_directional(rng, control):
    # beyond FULL_GRADIENT_MAX controls check_vg compares directional derivatives
    n = 100_000 + int(rng.integers(0, 1000))
    p = Lorenz96Problem.standard(n=n, nsteps=int(rng.integers(3, 8)), obs_every=2, seed=int(rng.integers(2**31)),
                                 control=control, spinup=20)
    res = verify.check_vg("enzyme", BACKEND.prepare(p), p)
    assert res.passed, res


# ---- batch: one native call, each row what vg gives ---------------------------------------
@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("B", [1, 3, 17])
def test_batch_rows_equal_single_calls(rng, control, B):
    p = random_problem96(rng, control)
    vg, vgb = BACKEND.prepare(p), BACKEND.prepare_batch(p)
    assert vgb.idiom == "native loop"
    U = p.u0 + rng.normal(0, 0.3, (B, p.n_control))
    J, G = vgb(U)
    assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
    for b in range(B):
        Jb, gb = vg(U[b])
        assert J[b] == Jb and np.array_equal(G[b], gb)  # the same compiled gradient
    J2, G2 = vgb(np.asfortranarray(U))  # any layout: converted by check_controls
    assert np.array_equal(J2, J) and np.array_equal(G2, G)


@needs_enzyme96
def test_no_model_uses_the_loop_fallback():
    for p in (ab.Lorenz63Problem.paper(), Lorenz96Problem.standard(n=8, nsteps=4)):
        assert BACKEND.prepare_batch(p).idiom == "native loop"


# ---- forward-only cost (prepare_cost) ------------------------------------------------------
@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("background", [True, False])
def test_forward_cost_is_the_gradients_J_and_the_python_cost(rng, control, background):
    assert BACKEND.has_cost("lorenz96")
    for n in (4, 5, 7, 40, int(rng.integers(4, 200))):
        p = random_problem96(rng, control, n=n, background=background)
        if rng.random() < 0.5:
            p = with_obs_at_both_ends(rng, p)
        vg, cost = BACKEND.prepare(p), BACKEND.prepare_cost(p)
        for u in (p.u0, p.u0 * rng.uniform(0.95, 1.05, p.n_control)):
            J = cost(u)
            assert isinstance(J, float)
            assert abs(J - vg(u)[0]) <= 1e-14 * abs(J)  # the gradient's primal: the same forward model
            assert abs(J - float(p.cost(u))) <= 1e-12 * abs(J), p.to_json()


@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
def test_forward_cost_at_large_n(rng, control):
    p = Lorenz96Problem.standard(n=40_000 + int(rng.integers(0, 100)), nsteps=int(rng.integers(4, 9)), obs_every=2,
                                 seed=int(rng.integers(2**31)), control=control, spinup=10)
    u = p.u0 * rng.uniform(0.99, 1.01, p.n_control)
    J = BACKEND.prepare_cost(p)(u)
    assert abs(J - BACKEND.prepare(p)(u)[0]) <= 1e-13 * abs(J)
    assert abs(J - float(p.cost(u))) <= 1e-12 * abs(J)


# ---- bad input: ValueError before native code ---------------------------------------------
@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
def test_bad_controls_are_value_errors(control):
    p = Lorenz96Problem.standard(n=8, nsteps=8, control=control)
    vg, vgb = BACKEND.prepare(p), BACKEND.prepare_batch(p)
    run = BACKEND.prepare_descent(p, iterations=3, step=1e-3)
    nc = p.n_control
    bad_vectors = [np.zeros(nc - 1), np.zeros(nc + 1), np.zeros((nc, 1)), np.full(nc, np.nan),
                   np.r_[np.zeros(nc - 1), np.inf], np.zeros(nc, complex), ["a"] * nc]
    cost = BACKEND.prepare_cost(p)
    for bad in bad_vectors:
        with pytest.raises(ValueError):
            vg(bad)
        with pytest.raises(ValueError):
            run(bad)
        with pytest.raises(ValueError):
            cost(bad)
    for bad in [np.zeros((0, nc)), np.zeros((2, nc + 1)), np.zeros(nc), np.full((3, nc), np.nan), np.zeros((2, nc), complex)]:
        with pytest.raises(ValueError):
            vgb(bad)


@needs_enzyme96
def test_native_wrapper_checks_its_sizes():
    from adjointbench._enzyme96 import Lorenz96Enzyme

    good = dict(n=6, dt=0.01, F=8.0, steps=[1, 4], indices=[0, 3], obs=np.zeros((2, 2)), sigma_o=1.0,
                background=np.zeros(6), sigma_b=1.0, n_control=6)
    for change in (
        {"n": 3, "n_control": 3, "background": None, "indices": [0]}, {"n_control": 8}, {"n_control": 5},
        {"dt": 0.0}, {"dt": np.nan}, {"F": np.inf}, {"sigma_o": 0.0}, {"sigma_b": -1.0},
        {"steps": [4, 1]}, {"steps": [1, 1]}, {"steps": [-1, 4]}, {"steps": []}, {"steps": [1, 2**31]},
        {"steps": [0.5, 1.0]}, {"indices": [0, 6]}, {"indices": [3, 0]}, {"indices": []},
        {"obs": np.zeros((3, 2))}, {"obs": np.zeros((2, 3))}, {"obs": np.full((2, 2), np.nan)},
        {"background": np.zeros(5)}, {"background": np.full(6, np.inf)}, {"check": 3},
    ):
        with pytest.raises(ValueError):
            Lorenz96Enzyme(**{**good, **change})
    k = Lorenz96Enzyme(**good)
    with pytest.raises(ValueError):
        k.vg(np.zeros(7))
    for bad in (np.zeros(7), np.zeros(5), np.full(6, np.nan), np.zeros(6, np.float32), np.zeros((6, 1))):
        with pytest.raises(ValueError):
            k.cost(bad)  # no check function given: the wrapper refuses what is not exactly right
    for bad in (np.zeros((2, 7)), np.zeros((0, 6)), np.zeros((2, 6), np.float32), np.full((2, 6), np.nan)):
        for batch in (k.vgb, k.costs):
            with pytest.raises(ValueError):
                batch(bad)
    U = 8.0 + np.random.default_rng(1).standard_normal((6, 2)).T  # right shape, strided: copied, same answer
    assert np.array_equal(k.vgb(U)[1], k.vgb(np.ascontiguousarray(U))[1])
    assert np.array_equal(k.costs(U), np.array([k.cost(np.ascontiguousarray(u)) for u in U]))
    with pytest.raises(ValueError):
        k.descent(np.zeros(6), 0, 1e-3)
    with pytest.raises(ValueError):
        k.descent(np.zeros(6), 3, np.nan)


# ---- fused driver --------------------------------------------------------------------------
@needs_enzyme96
@pytest.mark.parametrize("control", CONTROLS)
def test_fused_descent_is_the_python_loop_bit_for_bit(rng, control):
    p = random_problem96(rng, control)
    step = 1e-4
    run = BACKEND.prepare_descent(p, iterations=25, step=step)
    fused = run(p.u0)
    ref = python_descent(BACKEND.prepare(p), p.u0, iterations=25, step=step)
    np.testing.assert_array_equal(fused.costs, ref.costs)
    np.testing.assert_array_equal(fused.u, ref.u)
    again = run(p.u0)
    np.testing.assert_array_equal(again.costs, fused.costs)


# ---- threads and the tape allocator --------------------------------------------------------
@needs_enzyme96
def test_concurrent_calls_and_tape_reuse(rng):
    from concurrent.futures import ThreadPoolExecutor

    from adjointbench import _enzyme96

    problems = [random_problem96(rng, "state+params", n=40), random_problem96(rng, "state", n=int(rng.integers(4, 65)))]
    vgs = [BACKEND.prepare(p) for p in problems]
    points = [[p.u0 * rng.uniform(0.95, 1.05, p.n_control) for _ in range(10)] for p in problems]
    expected = [[vg(u) for u in us] for vg, us in zip(vgs, points, strict=True)]
    assert _enzyme96.retained_tape() > 0  # this thread keeps its tape for the next gradient

    def work(i):
        out = [vgs[i % 2](u) for u in points[i % 2]]
        _enzyme96.release_tape()
        return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    for i, got in enumerate(results):
        for (J, g), (J_ref, g_ref) in zip(got, expected[i % 2], strict=True):
            assert J == J_ref and np.array_equal(g, g_ref)
    assert _enzyme96.release_tape() > 0 and _enzyme96.retained_tape() == 0
    assert vgs[0](points[0][0])[0] == expected[0][0][0]  # fresh tape after the release


def test_unavailable_lorenz96_extension_says_why(monkeypatch):
    from adjointbench.backends import enzyme_aot

    real = enzyme_aot.native.load
    monkeypatch.setattr(enzyme_aot.native, "load",
                        lambda name: (None, "not built (because)") if name == "_enzyme96" else real(name))
    ok, reason = BACKEND.supports("lorenz96")
    assert not ok and "because" in reason
    with pytest.raises(ValueError):
        BACKEND.prepare(Lorenz96Problem.standard(n=8, nsteps=4))


# ---- the JIT route -------------------------------------------------------------------------
JIT = ab.backend("enzyme-jit")


@pytest.mark.skipif(not (JIT.available()[0] and OK), reason="needs enzyme-ad, JAX and the built extension")
def test_jit_route_agrees_with_ahead_of_time(rng):
    for control in CONTROLS:
        p = random_problem96(rng, control, n=int(rng.integers(4, 41)), max_steps=12)
        assert verify.check_vg("enzyme-jit", JIT.prepare(p), p).passed
        J_aot, g_aot = BACKEND.prepare(p)(p.u0)
        J_jit, g_jit = JIT.prepare(p)(p.u0)
        assert abs(J_jit - J_aot) <= 1e-12 * abs(J_aot)
        assert verify.relative_error(g_jit, g_aot) <= 1e-12
        assert abs(JIT.prepare_cost(p)(p.u0) - BACKEND.prepare_cost(p)(p.u0)) <= 1e-14 * abs(J_aot)
    assert not JIT.has_fused("lorenz96")
