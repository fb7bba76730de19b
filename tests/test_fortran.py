"""Backend ``fortran`` (kernels/fortran/*.f90 through ctypes): both models against complex step,
the Python and Cython hand adjoints, its fused drivers, forward-only costs, OpenMP batches, bad
inputs, concurrent calls, and the reason it gives when gfortran or the library is missing.

Every problem is random (the ``rng`` fixture): Lorenz-63 by ``testing.random_problem`` (short
windows), Lorenz-96 by ``testing.random_problem96`` with n in {4, 5, 7, 40, random}; observation
steps include 0 and the last step where the test says so.
"""

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import fortran_hand, python_descent
from adjointbench.model import trajectory
from adjointbench.models import Lorenz96Problem
from adjointbench.models import lorenz96_equations as l96
from adjointbench.problem import PARAM_NAMES
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

CONTROLS = ["state", "state+params"]
MODELS = ["lorenz63", "lorenz96"]
ROOT = Path(__file__).resolve().parents[1]


def fortran():
    return backend_or_skip("fortran")


def with_both_ends63(p, rng):
    """``p`` observed also at step 0 and at its last step (observations of a perturbed truth)."""
    steps = sorted(set(p.obs_steps.tolist()) | {0, p.nsteps})
    w = trajectory(p.x0 + rng.normal(0, 0.3, 3), *(p.params[k] for k in PARAM_NAMES), p.dt, p.nsteps)
    return p.with_(obs_steps=steps, obs_values=w[steps] + 0.5 * rng.standard_normal((len(steps), 3)))


def with_both_ends96(p, rng):
    steps = np.array(sorted(set(p.obs_steps.tolist()) | {0, p.nsteps}))
    truth = l96.observe(p.x0 + 0.3 * rng.standard_normal(p.n), p.F, p.dt, steps, p.obs_indices)
    return p.with_(obs_steps=steps, obs_values=truth + p.sigma_o * rng.standard_normal(truth.shape))


def problems(model, control, rng):
    if model == "lorenz63":
        out = [random_problem(rng, control, max_steps=60) for _ in range(3)]
        return out + [with_both_ends63(out[0], rng), out[1].with_(obs_steps=[0], obs_values=out[1].obs_values[:1])]
    out = [random_problem96(rng, control, n=n) for n in (4, 5, 7, 40, int(rng.integers(4, 65)))]
    return out + [with_both_ends96(random_problem96(rng, control), rng)]


def perturbed(p, rng, scale=0.01):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


def some_problem(model, control, rng):
    return random_problem96(rng, control) if model == "lorenz96" else random_problem(rng, control, max_steps=80)


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("model", MODELS)
def test_matches_complex_step(model, control, rng):
    b = fortran()
    for p in problems(model, control, rng):
        vg = b.prepare(p)
        u = perturbed(p, rng)
        res = verify.check_vg("fortran", vg, p, u)
        assert res.passed, (p.label(), p.obs_steps.tolist(), res)
        J, g = vg(u)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@pytest.mark.parametrize("control", CONTROLS)
def test_lorenz63_is_the_python_hand_adjoint_to_the_bit(control, rng):
    """List 1 / List 2 in the order of hand_adjoint.py, no FMA contraction: the same bits."""
    b, ref = fortran(), ab.backend("numpy")
    for p in problems("lorenz63", control, rng) + [ab.Lorenz63Problem.paper(control)]:
        u = perturbed(p, rng)
        J, g = b.prepare(p)(u)
        J0, g0 = ref.prepare(p)(u)
        assert J == J0 and np.array_equal(g, g0), p.to_json()


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("model", MODELS)
def test_matches_cython_and_numpy_to_rounding(model, control, rng):
    b = fortran()
    cy = ab.backend("cython")
    refs = [ab.backend("numpy")] + ([cy] if cy.available()[0] and cy.supports(model)[0] else [])
    for p in problems(model, control, rng):
        u = perturbed(p, rng)
        J, g = b.prepare(p)(u)
        for ref in refs:
            J0, g0 = ref.prepare(p)(u)
            assert J == pytest.approx(J0, rel=1e-13), ref.name
            np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12 * np.max(np.abs(g0)), err_msg=ref.name)


def test_lorenz96_large_n_directional(rng):
    """n in the thousands: complex-step directional derivatives (verify.check_vg beyond 65 controls)."""
    b = fortran()
    for control in CONTROLS:
        p = random_problem96(rng, control, n=int(rng.integers(2000, 3000)), max_steps=6)
        assert verify.check_vg("fortran", b.prepare(p), p, perturbed(p, rng)).passed


@pytest.mark.parametrize("model", MODELS)
def test_cost_equals_gradient_J_to_the_bit(model, rng):
    b = fortran()
    for control in CONTROLS:
        for p in problems(model, control, rng)[:4]:
            u = perturbed(p, rng)
            cost = b.prepare_cost(p)
            assert cost(u) == b.prepare(p)(u)[0]
            assert cost(u.tolist()) == cost(u)
            for bad in (np.zeros(p.n_control + 1), np.full(p.n_control, np.nan), None):
                with pytest.raises(ValueError):
                    cost(bad)


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("model", MODELS)
def test_fused_driver_reproduces_python_iterates(model, control, rng):
    """The Tbl. 3 loop in Fortran: the iterates of the Python-driven loop, bit for bit."""
    b = fortran()
    p = ab.Lorenz63Problem.paper(control) if model == "lorenz63" else random_problem96(rng, control)
    for problem in (p, some_problem(model, control, rng)):
        vg = b.prepare(problem)
        step = 1e-3 / np.max(np.abs(vg(problem.u0)[1]))  # small enough to stay finite on any draw
        fused = b.prepare_descent(problem, iterations=23, step=step)(problem.u0)
        loop = python_descent(vg, problem.u0, iterations=23, step=step)
        assert np.array_equal(fused.costs, loop.costs) and np.array_equal(fused.u, loop.u)
        assert fused.u.shape == (problem.n_control,) and fused.costs[-1] < fused.costs[0]
    run = b.prepare_descent(p, iterations=2, step=1e-6)
    for bad in (np.zeros(p.n_control - 1), np.full(p.n_control, np.inf), "abc"):
        with pytest.raises(ValueError):
            run(bad)
    with pytest.raises(ValueError):
        b.prepare_descent(p, iterations=0)


@pytest.mark.parametrize("model", MODELS)
def test_batch_rows_equal_single_calls(model, rng):
    b = fortran()
    for control in CONTROLS:
        p = some_problem(model, control, rng)
        vg, vgb = b.prepare(p), b.prepare_batch(p)
        assert vgb.idiom == ("threads" if vgb.info["openmp"] else "native loop") and vgb.info["threads"] >= 1
        for B in (1, 3, 17):
            U = p.u0 * (1 + 0.01 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for i in range(B):
                Ji, gi = vg(U[i])
                assert J[i] == Ji and np.array_equal(G[i], gi), (B, i)  # the same Fortran on each thread
            J2, G2 = vgb(np.asfortranarray(U).tolist() if B < 4 else np.asfortranarray(U))
            assert np.array_equal(J2, J) and np.array_equal(G2, G)


@pytest.mark.parametrize("model", MODELS)
def test_bad_inputs_are_value_errors(model, rng):
    b = fortran()
    for control in CONTROLS:
        p = some_problem(model, control, rng)
        vg, vgb = b.prepare(p), b.prepare_batch(p)
        n = p.n_control
        bad = [np.zeros(n - 1), np.zeros(n + 1), np.zeros((n, 1)), np.zeros(0), np.float64(1.0),
               np.zeros(n, dtype=complex), ["a"] * n, None, "abc", b"\0" * (8 * n), np.full(n, np.nan),
               np.r_[np.zeros(n - 1), np.inf]]
        for u in bad:
            with pytest.raises(ValueError):
                vg(u)
        U = np.tile(p.u0, (3, 1))
        nan_row = U.copy()
        nan_row[1, 0] = np.nan
        for V in (np.zeros((3, n - 1)), np.zeros((3, n + 1)), np.zeros(n), np.zeros((0, n)), np.zeros((2, n, 1)),
                  nan_row, U.astype(complex), None, "abc"):
            with pytest.raises(ValueError):
                vgb(V)
        # still correct afterwards, and other forms of a valid control give the same answer
        J, g = vg(p.u0)
        for form in (p.u0.tolist(), np.repeat(p.u0, 2)[::2], p.u0.astype(">f8")):
            J2, g2 = vg(form)
            assert J2 == J and np.array_equal(g2, g)
        assert np.array_equal(vgb(U)[1][2], g)


def test_batch_thread_count_from_environment(monkeypatch):
    b = fortran()
    lib = fortran_hand.load()[0]
    p = Lorenz96Problem.standard(n=12, nsteps=8, spinup=20)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    for problem in (p, ab.Lorenz63Problem.paper()):
        vgb = b.prepare_batch(problem)
        assert vgb.info["threads_requested"] == 3
        assert vgb.info["threads"] == (3 if lib.ab_openmp() else 1) and vgb.info["openmp"] == bool(lib.ab_openmp())
        U = np.tile(problem.u0, (7, 1))
        assert np.array_equal(vgb(U)[1][6], b.prepare(problem)(problem.u0)[1])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert b.prepare_batch(p).info["threads"] == 1
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
            b.prepare_batch(p)
    # more threads than the memory budget holds trajectories: capped, still correct
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    vgb = b.prepare_batch(p.with_(memory_budget=2 * p.trajectory_bytes))
    assert vgb.info["threads"] <= 2
    assert np.array_equal(vgb(np.tile(p.u0, (5, 1)))[1][4], b.prepare(p)(p.u0)[1])


def test_concurrent_calls_from_threads(rng):
    """ctypes releases the GIL: a call that finds the shared work arrays busy uses its own."""
    b = fortran()
    p = random_problem96(rng, "state+params", n=40)
    vg, vgb, cost = b.prepare(p), b.prepare_batch(p), b.prepare_cost(p)
    us = [perturbed(p, rng) for _ in range(8)]
    expected = [vg(u) for u in us]
    U = np.array(us)

    def work(i):
        if i % 5 == 0:
            return i, vgb(U)
        if i % 5 == 1:
            return i, (cost(us[i % 8]), expected[i % 8][1])
        return i, vg(us[i % 8])

    with ThreadPoolExecutor(4) as pool:
        for i, out in pool.map(work, range(60)):
            if i % 5 == 0:
                J, G = out
                assert all(J[k] == expected[k][0] and np.array_equal(G[k], expected[k][1]) for k in range(8))
            else:
                assert out[0] == expected[i % 8][0] and np.array_equal(out[1], expected[i % 8][1])


def test_info_and_declarations():
    b = fortran()
    assert b.kind == "hand adjoint (Fortran)" and b.models == ("lorenz63", "lorenz96") and b.fused
    vg = b.prepare(ab.Lorenz63Problem.paper())
    assert vg.info["compiler"].startswith("GCC") and "-O3" in vg.info["flags"] and "-march=native" not in vg.info["flags"]
    assert "-ffp-contract=off" in vg.info["flags"] and vg.info["binding"] == "ctypes"


def test_unavailable_without_library_names_the_install_line(monkeypatch):
    """No library and no gfortran: the reason is the install line (no library load attempted)."""
    monkeypatch.setattr(fortran_hand, "library_path", lambda: None)
    monkeypatch.setattr(fortran_hand.shutil, "which", lambda name: None)
    monkeypatch.setattr(fortran_hand.native, "build_status", lambda module: "")
    fortran_hand.load.cache_clear()
    try:
        ok, reason = ab.backend("fortran").available()
        assert not ok and reason == fortran_hand.MISSING_GFORTRAN
        assert reason == "gfortran not found: apt-get install -y gfortran (tools/system-deps.sh)"
        with pytest.raises(ValueError, match="apt-get install -y gfortran"):
            ab.backend("fortran").prepare(ab.Lorenz63Problem.paper())
        # gfortran present but the library not built: says how to build it
        monkeypatch.setattr(fortran_hand.shutil, "which", lambda name: "/usr/bin/gfortran")
        fortran_hand.load.cache_clear()
        assert "build_ext --inplace" in ab.backend("fortran").available()[1]
    finally:
        monkeypatch.undo()
        fortran_hand.load.cache_clear()
    assert fortran_hand.load()[0] is not None or not ab.backend("fortran").available()[0]


def test_build_records_missing_gfortran(monkeypatch):
    """build_tools/ext_fortran.py: without gfortran the prebuild fails with the install line."""
    spec = importlib.util.spec_from_file_location("ext_fortran_under_test", ROOT / "build_tools" / "ext_fortran.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (ext,) = mod.extensions()
    assert ext.name == "adjointbench._fortran_adjoint" and ext.sources == []
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"gfortran not found: apt-get install -y gfortran \(tools/system-deps.sh\)"):
        ext.prebuild(None, ext)
    sys.modules.pop("ext_fortran_under_test", None)
