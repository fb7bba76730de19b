"""Backend ``cython`` on Lorenz-96 (kernels/lorenz96_hand.pyx), its fused driver, its forward-only
cost (``prepare_cost``), the OpenMP batches of both models, and the plain C Lorenz-96 yardstick
(kernels/c_reference/lorenz96_adjoint.c).

Every problem is random (the ``rng`` fixture): random n (4, 5, 7, 40, up to 64), dt, window,
observation steps (some forced to include step 0 and the last step), index subsets, with and
without a background, both controls.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import c_reference, verify
from adjointbench.backends import python_descent
from adjointbench.models import Lorenz96Problem
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

CONTROLS = ["state", "state+params"]


def cython96():
    b = backend_or_skip("cython")
    ok, reason = b.supports("lorenz96")
    if not ok:
        pytest.skip(reason)
    return b


def with_both_ends(p: Lorenz96Problem, rng) -> Lorenz96Problem:
    """``p`` observed also at step 0 and at the last step of its window (new noisy values)."""
    steps = np.array(sorted(set(p.obs_steps.tolist()) | {0, p.nsteps}))
    truth = l96.observe(p.x0 + 0.3 * rng.standard_normal(p.n), p.F, p.dt, steps, p.obs_indices)
    return p.with_(obs_steps=steps, obs_values=truth + p.sigma_o * rng.standard_normal(truth.shape))


def problems96(rng, control, background):
    out = [random_problem96(rng, control, n=n, background=background) for n in (4, 5, 7, 40, int(rng.integers(4, 65)))]
    out += [with_both_ends(random_problem96(rng, control, background=background), rng) for _ in range(2)]
    return out


def perturbed(p, rng, scale=0.01):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("control", CONTROLS)
def test_matches_complex_step_and_numpy(control, background, rng):
    b = cython96()
    ref = ab.backend("numpy")
    for p in problems96(rng, control, background):
        vg = b.prepare(p)
        u = perturbed(p, rng)
        res = verify.check_vg("cython", vg, p, u)
        assert res.passed, (p.label(), p.obs_steps.tolist(), res)
        J, g = vg(u)
        J0, g0 = ref.prepare(p)(u)
        assert g.shape == (p.n_control,) and g.dtype == np.float64
        # the same recipe as the NumPy equations: equal to rounding
        assert J == pytest.approx(J0, rel=1e-13)
        np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12 * np.max(np.abs(g0)))


@pytest.mark.parametrize("control", CONTROLS)
def test_large_n_directional(control, rng):
    """N >= 1e5: complex-step directional derivatives (verify.check_vg beyond 65 controls)."""
    b = cython96()
    n = 100_000 + int(rng.integers(0, 100))
    nsteps = 2
    F = float(rng.uniform(6, 10))
    idx = np.sort(rng.choice(n, size=int(rng.integers(100, 2000)), replace=False))
    steps = np.array([0, 1, 2]) if rng.random() < 0.5 else np.array([1, 2])
    x_truth = F + 2.0 * rng.standard_normal(n)
    y = l96.observe(x_truth, F, 0.05, steps, idx) + rng.standard_normal((steps.size, idx.size))
    p = Lorenz96Problem(
        n=n, dt=float(rng.uniform(0.01, 0.05)), nsteps=nsteps, x0=x_truth + 0.5 * rng.standard_normal(n), F=F,
        obs_steps=steps, obs_indices=idx, obs_values=y, background=x_truth + rng.standard_normal(n), control=control,
    )
    res = verify.check_vg("cython", b.prepare(p), p)
    assert res.passed, res


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_batch_rows_equal_single_calls(model, rng):
    b = cython96() if model == "lorenz96" else backend_or_skip("cython")
    for control in CONTROLS:
        p = random_problem96(rng, control) if model == "lorenz96" else random_problem(rng, control)
        vg = b.prepare(p)
        vgb = b.prepare_batch(p)
        assert vgb.idiom == "threads" and vgb.info["threads"] >= 1
        for B in (1, 3, 17):
            U = p.u0 * (1 + 0.01 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for i in range(B):
                Ji, gi = vg(U[i])
                # the same kernel on each thread: the same numbers
                assert J[i] == Ji and np.array_equal(G[i], gi), (B, i)
            # U as a list of lists and as a Fortran array: the same answer
            J2, G2 = vgb(np.asfortranarray(U).tolist() if B < 4 else np.asfortranarray(U))
            assert np.array_equal(J2, J) and np.array_equal(G2, G)


def test_batch_thread_count_from_environment(monkeypatch):
    b = cython96()
    mod = ab.native.load("_cython_lorenz96")[0]
    p = Lorenz96Problem.standard(n=12, nsteps=8, spinup=20)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    for problem in (p, ab.Lorenz63Problem.paper()):
        vgb = b.prepare_batch(problem)
        assert vgb.info["threads_requested"] == 3
        assert vgb.info["threads"] == (3 if mod.OPENMP else 1) and vgb.info["openmp"] == mod.OPENMP
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert b.prepare_batch(p).info["threads"] == 1
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
            b.prepare_batch(p)
    # more threads than the memory budget holds trajectories: capped, still correct
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    small = p.with_(memory_budget=2 * p.trajectory_bytes)
    vgb = b.prepare_batch(small)
    assert vgb.info["threads"] <= 2
    U = np.tile(p.u0, (5, 1))
    assert np.array_equal(vgb(U)[1][4], b.prepare(p)(p.u0)[1])


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_bad_batches_are_value_errors(model, rng):
    b = cython96() if model == "lorenz96" else backend_or_skip("cython")
    for control in CONTROLS:
        p = random_problem96(rng, control) if model == "lorenz96" else random_problem(rng, control)
        vgb = b.prepare_batch(p)
        n = p.n_control
        U = np.tile(p.u0, (3, 1))
        nan_row, inf_row = U.copy(), U.copy()
        nan_row[1, 0] = np.nan
        inf_row[2, n - 1] = -np.inf
        bad = [np.zeros((3, n - 1)), np.zeros((3, n + 1)), np.zeros(n), np.zeros((0, n)), np.zeros((2, n, 1)),
               np.zeros((n, 3)) if n != 3 else np.zeros((4, 2)), nan_row, inf_row, U.astype(complex), None, "abc",
               np.zeros((3, n), dtype=bool) * 1j]
        for V in bad:
            with pytest.raises(ValueError):
                vgb(V)
        # the native entry checks too (no check_controls in front): never an out-of-bounds access
        mod = ab.native.load("_cython_lorenz96" if model == "lorenz96" else "_cython_hand")[0]
        kernel = (mod.Lorenz96Batch(b_kernel(p), 2) if model == "lorenz96" else mod.HandAdjointBatch(b_kernel(p), 2))
        for V in (np.zeros((3, n - 1)), np.zeros((3, n + 1)), np.zeros((0, n)), np.zeros(n), nan_row,
                  U.astype(np.float32)):
            with pytest.raises(ValueError):
                kernel.value_and_grad(V)
        with pytest.raises(ValueError):
            mod.Lorenz96Batch(b_kernel(p), 0) if model == "lorenz96" else mod.HandAdjointBatch(b_kernel(p), 0)
        # still correct afterwards
        J, G = vgb(U)
        assert np.array_equal(G[0], b.prepare(p)(p.u0)[1])


def b_kernel(p):
    from adjointbench.backends import cython_hand

    return cython_hand._adjoint96(p) if p.model == "lorenz96" else cython_hand._hand_adjoint(p)


@pytest.mark.parametrize("control", CONTROLS)
def test_fused_driver_equals_python_loop(control, rng):
    b = cython96()
    for _ in range(3):
        p = random_problem96(rng, control)
        vg = b.prepare(p)
        step = 1e-3 / np.max(np.abs(vg(p.u0)[1]))  # small enough to stay finite on any draw
        fused = b.prepare_descent(p, iterations=17, step=step)(p.u0)
        loop = python_descent(vg, p.u0, iterations=17, step=step)
        np.testing.assert_allclose(fused.costs, loop.costs, rtol=1e-13)
        np.testing.assert_allclose(fused.u, loop.u, rtol=1e-13, atol=1e-14)
        assert fused.u.shape == (p.n_control,) and fused.costs.shape == (17,)
        assert fused.costs[-1] < fused.costs[0]


def test_bad_controls_are_value_errors(rng):
    b = cython96()
    for control in CONTROLS:
        p = random_problem96(rng, control)
        vg = b.prepare(p)
        run = b.prepare_descent(p, iterations=2, step=1e-6)
        n = p.n_control
        bad = [np.zeros(n - 1), np.zeros(n + 1), np.zeros((n, 1)), np.zeros(0), np.float64(1.0),
               np.zeros(n, dtype=complex), ["a"] * n, None, "abc", b"\0" * (8 * n), np.full(n, np.nan),
               np.r_[np.zeros(n - 1), np.inf]]
        for u in bad:
            with pytest.raises(ValueError):
                vg(u)
            with pytest.raises(ValueError):
                run(u)
        J, g = vg(p.u0)
        for form in (p.u0.tolist(), np.repeat(p.u0, 2)[::2], p.u0.astype(">f8")):
            J2, g2 = vg(form)
            assert J2 == J and np.array_equal(g2, g)
        assert verify.check_vg("cython", vg, p).passed


def test_native_constructor_checks_sizes():
    mod, reason = ab.native.load("_cython_lorenz96")
    if mod is None:
        pytest.skip(reason)
    p = Lorenz96Problem.standard(n=8, nsteps=8, spinup=10)
    ok = dict(n=8, dt=0.05, steps=[4, 8], indices=[0, 2, 4, 6], obs=np.ones((2, 4)), sigma_o=1.0,
              background=np.ones(8), sigma_b=1.0, F=8.0, n_control=8, check=p.check_control)
    mod.Lorenz96Adjoint(**ok)
    for change in [
        dict(n=3), dict(n=8.0), dict(steps=[]), dict(steps=[8, 4]), dict(steps=[-1, 4]), dict(steps=[4.5, 8]),
        dict(indices=[0, 8]), dict(indices=[2, 2]), dict(indices=[-1, 2]), dict(obs=np.ones((2, 3))),
        dict(obs=np.ones((3, 4))), dict(obs=np.full((2, 4), np.nan)), dict(background=np.ones(7)),
        dict(sigma_o=0.0), dict(dt=np.inf), dict(F=np.nan), dict(n_control=10), dict(check=None),
    ]:
        with pytest.raises(ValueError):
            mod.Lorenz96Adjoint(**{**ok, **change})
    with pytest.raises(TypeError):  # no instance without its work arrays
        mod.Lorenz96Adjoint.__new__(mod.Lorenz96Adjoint)
    h = mod.Lorenz96Adjoint(**ok)
    with pytest.raises(ValueError):
        h.descent(p.u0, 0, 1e-3)
    with pytest.raises(ValueError):
        h.descent(p.u0, 3, np.nan)


def test_concurrent_calls_from_threads(rng):
    """Loops without the GIL: a call that finds the work arrays busy uses its own."""
    b = cython96()
    p = random_problem96(rng, "state+params", n=40)
    vg, vgb = b.prepare(p), b.prepare_batch(p)
    us = [perturbed(p, rng) for _ in range(8)]
    expected = [vg(u) for u in us]
    U = np.array(us)

    def work(i):
        if i % 5 == 0:
            return i, vgb(U)
        return i, vg(us[i % 8])

    with ThreadPoolExecutor(4) as pool:
        for i, out in pool.map(work, range(100)):
            if i % 5 == 0:
                J, G = out
                assert all(J[k] == expected[k][0] and np.array_equal(G[k], expected[k][1]) for k in range(8))
            else:
                assert out[0] == expected[i % 8][0] and np.array_equal(out[1], expected[i % 8][1])


@pytest.mark.parametrize("control", CONTROLS)
def test_c_reference_lorenz96_matches_complex_step(control, rng):
    ok, reason = c_reference.available(source=c_reference.SOURCE_NAME96)
    if not ok:
        pytest.skip(reason)
    for background in (True, False):
        p = with_both_ends(random_problem96(rng, control, background=background), rng)
        u = perturbed(p, rng)
        m = c_reference.check96(p, u)
        assert m["passed"], (p.label(), m["grad_error"], m["J_error"])
        assert m["J_cost"] == pytest.approx(m["J"], rel=1e-13)
        assert m["call_s"] > 0 and m["cost_s"] > 0 and m["compiler"].startswith("gcc")
        assert m["grad"].shape == (p.n_control,)
        try:
            vg = cython96().prepare(p)
        except pytest.skip.Exception:
            continue
        np.testing.assert_allclose(m["grad"], vg(u)[1], rtol=1e-13, atol=1e-13 * np.max(np.abs(m["grad"])))


def test_c_reference_lorenz96_bad_arguments():
    with pytest.raises(ValueError):
        c_reference.measure96(ab.Lorenz63Problem.paper())
    p = Lorenz96Problem.standard(n=8, nsteps=8, spinup=10)
    with pytest.raises(ValueError):
        c_reference.measure96(p, repeats=0)
    with pytest.raises(ValueError):
        c_reference.measure96(p, u=np.zeros(9))


# ---- forward-only cost (prepare_cost, the cheap-gradient ratio's denominator) -----------------


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("control", CONTROLS)
def test_forward_cost_equals_gradient_J_and_python_cost(control, background, rng):
    b = cython96()
    assert b.has_cost("lorenz96")
    ref = ab.backend("numpy")
    for p in problems96(rng, control, background):
        cost, vg = b.prepare_cost(p), b.prepare(p)
        for u in (p.u0, perturbed(p, rng)):
            J = cost(u)
            assert isinstance(J, float)
            # the gradient's sweep and summation order, only the current state kept: the same bits
            assert J == vg(u)[0], (p.label(), p.obs_steps.tolist())
            assert J == pytest.approx(float(p.cost(u)), rel=1e-13)
            assert J == pytest.approx(ref.prepare_cost(p)(u), rel=1e-13)


@pytest.mark.parametrize("control", CONTROLS)
def test_forward_cost_stores_no_trajectory(control, rng):
    """Large N, a long window: prepare_cost allocates a few states, never the trajectory."""
    import tracemalloc

    b = cython96()
    n = 50_000 + int(rng.integers(0, 100))
    nsteps = int(rng.integers(30, 41))
    F = float(rng.uniform(6, 10))
    idx = np.sort(rng.choice(n, size=int(rng.integers(100, 2000)), replace=False))
    steps = np.array(sorted({0, nsteps, *rng.choice(nsteps, size=3).tolist()}))
    x_truth = F + 2.0 * rng.standard_normal(n)
    y = l96.observe(x_truth, F, 0.02, steps, idx) + rng.standard_normal((steps.size, idx.size))
    p = Lorenz96Problem(
        n=n, dt=0.02, nsteps=nsteps, x0=x_truth + 0.5 * rng.standard_normal(n), F=F, obs_steps=steps,
        obs_indices=idx, obs_values=y, background=x_truth + rng.standard_normal(n), control=control,
    )
    u = perturbed(p, rng)
    tracemalloc.start()
    try:
        cost = b.prepare_cost(p)
        J = cost(u)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # two states, three stage vectors and the control: ~6 N doubles against (nsteps + 1) N
    assert peak < 8 * 8 * n < p.trajectory_bytes / 3, (peak, p.trajectory_bytes)
    assert J == b.prepare(p)(u)[0]
    assert J == pytest.approx(float(p.cost(u)), rel=1e-12)


def test_forward_cost_inputs(rng):
    """Every input form the gradient accepts gives the same J; every bad one is a ValueError."""
    b = cython96()
    for control in CONTROLS:
        p = random_problem96(rng, control)
        cost = b.prepare_cost(p)
        J = cost(p.u0)
        for form in (p.u0.tolist(), np.repeat(p.u0, 2)[::2], p.u0.astype(">f8"), tuple(p.u0)):
            assert cost(form) == J
        n = p.n_control
        bad = [np.zeros(n - 1), np.zeros(n + 1), np.zeros((n, 1)), np.zeros((1, n)), np.zeros(0), np.float64(1.0),
               np.zeros(n, dtype=complex), ["a"] * n, None, "abc", b"\0" * (8 * n), np.full(n, np.nan),
               np.r_[np.zeros(n - 1), np.inf]]
        for u in bad:
            with pytest.raises(ValueError):
                cost(u)
        assert cost(p.u0) == J  # still correct afterwards
    with pytest.raises(ValueError, match="needs a problem"):
        b.prepare_cost(None)


def test_native_cost_constructor_checks_sizes():
    mod, reason = ab.native.load("_cython_lorenz96")
    if mod is None:
        pytest.skip(reason)
    p = Lorenz96Problem.standard(n=8, nsteps=8, spinup=10)
    ok = dict(n=8, dt=0.05, steps=[4, 8], indices=[0, 2, 4, 6], obs=np.ones((2, 4)), sigma_o=1.0,
              background=np.ones(8), sigma_b=1.0, F=8.0, n_control=8, check=p.check_control)
    assert np.isfinite(mod.Lorenz96Cost(**ok).cost(p.u0))
    for change in [
        dict(n=3), dict(steps=[]), dict(steps=[8, 4]), dict(indices=[0, 8]), dict(indices=[2, 2]),
        dict(obs=np.ones((2, 3))), dict(obs=np.full((2, 4), np.nan)), dict(background=np.ones(7)),
        dict(sigma_b=0.0), dict(F=np.nan), dict(n_control=10), dict(check=None),
    ]:
        with pytest.raises(ValueError):
            mod.Lorenz96Cost(**{**ok, **change})
    with pytest.raises(TypeError):  # no instance without its work arrays
        mod.Lorenz96Cost.__new__(mod.Lorenz96Cost)


def test_forward_cost_from_threads(rng):
    """A cost call that finds the work arrays busy uses its own: the same J from every thread."""
    b = cython96()
    p = random_problem96(rng, "state+params", n=40)
    cost = b.prepare_cost(p)
    us = [perturbed(p, rng) for _ in range(8)]
    expected = [cost(u) for u in us]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: cost(us[i % 8]), range(200)))
    assert got == [expected[i % 8] for i in range(200)]
