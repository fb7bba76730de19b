"""The ``warp`` backend (Warp kernels, ``wp.Tape``) on both models.

Randomised problems of both models and both controls against complex step (Lorenz-96 with
n in {4, 5, 7, 40, random}; observation steps 0 and the last forced in some draws);
``prepare_batch`` rows against single calls for B in {1, 3, 17}; the forward-only cost
against the gradient's J and ``problem.cost``; bad controls and batches as ValueError before
Warp runs; the memory budget; the device names.  Warp's first compile (~5 s, cached in
~/.cache/warp afterwards) happens in the first prepare of the session.
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

NAME = "warp"
CONTROLS = ("state", "state+params")


def with_ends(rng, p):
    """``p`` observed at step 0 and at its last step as well (fresh values for every step)."""
    steps = np.array(sorted(set(p.obs_steps.tolist()) | {0, p.nsteps}))
    if p.model == "lorenz96":
        values = l96.observe(p.x0, p.F, p.dt, steps, p.obs_indices) + rng.standard_normal((steps.size, p.obs_indices.size))
    else:
        values = p.x0 + rng.standard_normal((steps.size, 3))
    return p.with_(obs_steps=steps, obs_values=values)


def problems(rng, control):
    out = [random_problem96(rng, control, n=n, max_steps=20) for n in (4, 5, 7, 40, None)]
    out[0], out[3] = with_ends(rng, out[0]), with_ends(rng, out[3])
    p = random_problem(rng, control, max_steps=80)
    out += [p, with_ends(rng, p), p.with_(obs_steps=[0], obs_values=p.obs_values[:1]),
            p.with_(obs_steps=[p.nsteps], obs_values=p.obs_values[-1:])]
    return out


def perturbed(rng, p, scale=0.02):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


@pytest.mark.parametrize("control", CONTROLS)
def test_matches_complex_step(control, rng):
    b = backend_or_skip(NAME)
    assert b.supports("lorenz63")[0] and b.supports("lorenz96")[0]
    for p in problems(rng, control):
        vg = b.prepare(p)
        assert (vg.device, vg.dtype) == ("cpu", "float64") and vg.info["warp_version"]
        for u in (p.u0, perturbed(rng, p)):
            res = verify.check_vg(NAME, vg, p, u)
            assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(p.u0)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


def test_paper_problem_and_repeated_calls():
    b = backend_or_skip(NAME)
    for control in CONTROLS:
        p = ab.Lorenz63Problem.paper(control)
        vg = b.prepare(p)
        assert vg.compile_s is not None and vg.compile_s >= 0
        J, g = vg(p.u0)
        assert verify.check_vg(NAME, vg, p).passed
        J2, g2 = vg(p.u0)  # the replayed graph: same buffers, same answer
        assert J2 == J and np.array_equal(g2, g)


@pytest.mark.parametrize("control", CONTROLS)
def test_batch_rows_equal_single_calls(control, rng):
    b = backend_or_skip(NAME)
    for p in (random_problem96(rng, control, max_steps=12), random_problem(rng, control, max_steps=60)):
        vg, vgb = b.prepare(p), b.prepare_batch(p)
        assert vgb.idiom == b.batch_idiom == "batch axis" and (vgb.device, vgb.dtype) == ("cpu", "float64")
        for B in (1, 3, 17):
            U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for i in range(B):
                Ji, gi = vg(U[i])
                assert J[i] == pytest.approx(Ji, rel=1e-13)
                np.testing.assert_allclose(G[i], gi, rtol=1e-12, atol=1e-13 * np.max(np.abs(gi)))
            assert len({float(j) for j in J}) == B
        J3, _ = vgb(U[:3])  # back to a cached batch size
        assert np.allclose(J3, J[:3], rtol=1e-13)


@pytest.mark.parametrize("control", CONTROLS)
def test_cost_equals_gradient_J_and_python_cost(control, rng):
    b = backend_or_skip(NAME)
    assert b.has_cost("lorenz63") and b.has_cost("lorenz96")
    for p in (random_problem96(rng, control, n=n, max_steps=20) for n in (4, 40, None)):
        cost, vg = b.prepare_cost(p), b.prepare(p)
        for u in (p.u0, perturbed(rng, p)):
            J = cost(u)
            assert isinstance(J, float)
            assert J == pytest.approx(vg(u)[0], rel=1e-14), p.to_json()
            assert J == pytest.approx(float(p.cost(u)), rel=1e-12), p.to_json()
    p = random_problem(rng, control)
    cost, vg = b.prepare_cost(p), b.prepare(p)
    assert cost(p.u0) == pytest.approx(vg(p.u0)[0], rel=1e-14)
    assert cost(p.u0) == pytest.approx(float(p.cost(p.u0)), rel=1e-12)


def test_bad_inputs_are_value_errors_before_warp_runs(rng, monkeypatch):
    b = backend_or_skip(NAME)
    from adjointbench.backends import warp_ad

    for p in (random_problem96(rng, "state+params", max_steps=5), random_problem(rng, "state", max_steps=5)):
        vg, vgb, cost = b.prepare(p), b.prepare_batch(p), b.prepare_cost(p)
        J0 = vg(p.u0)[0]
        m = p.n_control
        good = np.tile(p.u0, (2, 1))
        nan, inf = good.copy(), good.copy()
        nan[1, 0], inf[0, -1] = np.nan, np.inf

        def ran(*a, **k):
            raise AssertionError("warp ran on an invalid control")

        with monkeypatch.context() as mp:
            mp.setattr(warp_ad.Runner, "__call__", ran)
            for bad in (np.zeros(m - 1), np.zeros(m + 1), np.zeros((1, m)), np.zeros(m, dtype=complex),
                        np.full(m, np.nan), np.r_[np.zeros(m - 1), np.inf], "abc", ["a"] * m, np.zeros(0)):
                with pytest.raises(ValueError):
                    vg(bad)
                with pytest.raises(ValueError):
                    cost(bad)
            for bad in (p.u0, np.zeros((2, m + 1)), np.zeros((2, m - 1)), np.zeros((0, m)), np.zeros((2, m, 1)),
                        nan, inf, good.astype(complex), np.full((2, m), "x"), [[1.0] * m, [1.0] * (m - 1)]):
                with pytest.raises(ValueError):
                    vgb(bad)
        J, G = vgb(good)
        assert J[0] == J[1] == pytest.approx(J0, rel=1e-14) and vg(p.u0)[0] == J0


def test_memory_budget(rng):
    """Trajectory, stages and their gradients (about 8x the trajectory per member for
    Lorenz-96) must fit the problem's budget: a ValueError before anything is allocated."""
    b = backend_or_skip(NAME)
    p = random_problem96(rng, "state", n=40, max_steps=10)
    with pytest.raises(ab.MemoryBudgetError, match="memory budget"):
        b.prepare(p.with_(memory_budget=2 * p.trajectory_bytes))
    roomy = p.with_(memory_budget=10 * p.trajectory_bytes)
    vgb = b.prepare_batch(roomy)
    assert vgb(p.u0[None, :])[0].shape == (1,)
    with pytest.raises(ab.MemoryBudgetError, match="memory budget"):
        vgb(np.tile(p.u0, (10, 1)))


def test_devices(rng):
    b = backend_or_skip(NAME)
    p = random_problem96(rng, "state+params", max_steps=6)
    if "gpu" not in b.devices():
        assert b.devices() == ["cpu"]
        with pytest.raises(ValueError, match="no CUDA device"):
            b.prepare(p, device="gpu")
        with pytest.raises(ValueError, match="device"):
            b.prepare(p, device="tpu")
        return
    vg = b.prepare(p, device="gpu")
    assert vg.device == "gpu" and vg.info["warp_device"].startswith("cuda")
    assert verify.check_vg(NAME, vg, p).passed
    ref = b.prepare(p)(p.u0)
    assert vg(p.u0)[0] == pytest.approx(ref[0], rel=1e-13)
    assert b.prepare_cost(p, device="gpu")(p.u0) == pytest.approx(ref[0], rel=1e-13)
    U = p.u0 * (1 + 0.05 * rng.standard_normal((3, p.n_control)))
    J, G = b.prepare_batch(p, device="gpu")(U)
    for i in range(3):
        np.testing.assert_allclose(G[i], vg(U[i])[1], rtol=1e-12, atol=1e-13 * np.max(np.abs(G[i])))
