"""The torch backends on Lorenz-96, batched gradients (both models) and the device names.

Randomised problems (n in {4, 5, 7, 40, random}, observation steps including 0 and the last,
with and without a background) against complex step; float32 at the float32 tolerance of
test_ad_backends.py; one problem with n >= 1e5 by complex-step directional derivatives;
``prepare_batch`` rows against single calls; bad batches and a missing GPU as ValueError;
the forward-only cost (``prepare_cost``) against the gradient's J and ``problem.cost``.
torch-compile (Inductor, ~10 s per compile here) only when ADJOINTBENCH_TORCH_COMPILE=1 is set.
"""

import os

import numpy as np
import pytest

from adjointbench import verify
from adjointbench.models import Lorenz96Problem
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem, random_problem96
from test_ad_backends import FLOAT32_TOLERANCE, is_float32

from conftest import backend_or_skip

CONTROLS = ("state", "state+params")


def problem96(rng, control, n=None, max_steps=30, background=None, ends=None):
    """A random Lorenz-96 problem; ``ends`` forces observation steps 0 and nsteps (random if None)."""
    if n is None:
        n = int(rng.choice([4, 5, 7, 40, int(rng.integers(4, 65))]))
    nsteps = int(rng.integers(1, max_steps + 1))
    dt = float(rng.uniform(0.005, 0.05))
    F = float(rng.uniform(4.0, 12.0))
    steps = set(rng.choice(nsteps + 1, size=int(rng.integers(1, min(nsteps + 1, 6) + 1)), replace=False).tolist())
    first, last = (True, True) if ends else (rng.random() < 0.5, rng.random() < 0.5)
    if first:
        steps.add(0)
    if last:
        steps.add(nsteps)
    steps = np.array(sorted(steps))
    idx = np.sort(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
    truth = F + 2.0 * rng.standard_normal(n)
    sigma_o, sigma_b = rng.uniform(0.5, 2.0, 2)
    values = l96.observe(truth, F, dt, steps, idx) + sigma_o * rng.standard_normal((steps.size, idx.size))
    if background is None:
        background = bool(rng.random() < 0.5)
    return Lorenz96Problem(
        n=n, dt=dt, nsteps=nsteps, x0=truth + 0.5 * rng.standard_normal(n), F=F * rng.uniform(0.9, 1.1),
        obs_steps=steps, obs_indices=idx, obs_values=values, sigma_o=sigma_o,
        background=truth + sigma_b * rng.standard_normal(n) if background else None, sigma_b=sigma_b,
        control=control,
    )


def perturbed(rng, p, scale=0.05):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


def drawn(rng, control):
    """Problems covering every n of the brief, both ends of the window, with and without background."""
    out = [problem96(rng, control, n=n, background=bg, ends=ends)
           for n, bg, ends in ((4, True, True), (5, False, True), (7, True, False), (40, False, True))]
    out += [problem96(rng, control) for _ in range(2)]
    return out


@pytest.mark.parametrize("control", CONTROLS)
def test_float64_matches_complex_step(control, rng):
    b = backend_or_skip("torch")
    assert b.supports("lorenz96")[0]
    for p in drawn(rng, control):
        vg = b.prepare(p)
        assert (vg.device, vg.dtype) == ("cpu", "float64")
        for u in (p.u0, perturbed(rng, p)):
            res = verify.check_vg("torch", vg, p, u)
            assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(p.u0)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@pytest.mark.parametrize("control", CONTROLS)
def test_float32_matches_complex_step_at_float32_tolerance(control, rng):
    b = backend_or_skip("torch")
    for p in drawn(rng, control)[:4]:
        vg = b.prepare(p, dtype="float32")
        assert vg.dtype == "float32"
        u = perturbed(rng, p)
        res = verify.check_vg("torch", vg, p, u, tolerance=FLOAT32_TOLERANCE)
        assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(u)
        assert is_float32(np.array([J])) and is_float32(g)
        assert verify.check_vg("torch", vg, p, u).grad_error > 1e-13  # really float32 arithmetic


def test_large_n_directional(rng):
    """n >= 1e5: the full complex-step gradient is out of reach, directional derivatives are not."""
    b = backend_or_skip("torch")
    n = int(rng.integers(100_000, 130_000))
    for control in CONTROLS:
        p = problem96(rng, control, n=n, max_steps=3, background=control == "state", ends=True)
        assert p.n_control > verify.FULL_GRADIENT_MAX
        res = verify.check_vg("torch", b.prepare(p), p, perturbed(rng, p, 0.01))
        assert res.passed, res


def _batch_rows_match(b, p, rng, dtype="float64"):
    vg = b.prepare(p, dtype=dtype)
    vgb = b.prepare_batch(p, dtype=dtype)
    assert vgb.idiom == b.batch_idiom == "batch axis"
    assert (vgb.device, vgb.dtype) == ("cpu", dtype)
    for B in (1, 3, 17):
        U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
        J, G = vgb(U)
        assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
        for i in range(B):
            Ji, gi = vg(U[i])
            assert J[i] == pytest.approx(Ji, rel=1e-12)
            np.testing.assert_allclose(G[i], gi, rtol=1e-11, atol=1e-12 * np.max(np.abs(gi)))
        assert len({float(j) for j in J}) == B  # distinct members give distinct costs


@pytest.mark.parametrize("control", CONTROLS)
def test_batch_rows_equal_single_calls(control, rng):
    b = backend_or_skip("torch")
    for p in (problem96(rng, control, max_steps=15), random_problem(rng, control, max_steps=60)):
        _batch_rows_match(b, p, rng)


def test_bad_batches_raise_value_error_before_torch_runs(rng, monkeypatch):
    b = backend_or_skip("torch")
    import torch

    for p in (problem96(rng, "state+params", max_steps=5), random_problem(rng, "state", max_steps=5)):
        vgb = b.prepare_batch(p)
        m = p.n_control
        good = np.tile(p.u0, (2, 1))
        nan, inf = good.copy(), good.copy()
        nan[1, 0], inf[0, -1] = np.nan, np.inf

        def ran(*a, **k):
            raise AssertionError("torch ran on an invalid batch")

        with monkeypatch.context() as mp:
            mp.setattr(torch, "empty", ran)
            mp.setattr(torch, "tensor", ran)
            for bad in (p.u0, np.zeros((2, m + 1)), np.zeros((2, m - 1)), np.zeros((0, m)), np.zeros((2, m, 1)),
                        nan, inf, good.astype(complex), np.full((2, m), "x"), [[1.0] * m, [1.0] * (m - 1)]):
                with pytest.raises(ValueError):
                    vgb(bad)
        J, G = vgb(good)
        assert J.shape == (2,) and J[0] == J[1]


def test_gpu_device_name(rng):
    b = backend_or_skip("torch")
    import torch

    p = problem96(rng, "state", max_steps=4)
    if torch.cuda.is_available():
        assert "gpu" in b.devices() and "cuda" not in b.devices()
        for name in ("gpu", "cuda"):  # cuda: the alias of gpu
            vg = b.prepare(p, device=name)
            assert vg.device == "gpu" and vg.info["torch_device"].startswith("cuda")
            assert verify.check_vg("torch", vg, p).passed
        assert b.prepare_batch(p, device="gpu").device == "gpu"
        assert b.prepare_cost(p, device="gpu")(p.u0) == pytest.approx(b.prepare(p)(p.u0)[0], rel=1e-13)
        return
    assert b.devices() == ["cpu"]
    for name in ("gpu", "cuda"):
        with pytest.raises(ValueError, match=f"device '{name}'.*no CUDA device"):
            b.prepare(p, device=name)
        with pytest.raises(ValueError, match="no CUDA device"):
            b.prepare_batch(p, device=name)
        with pytest.raises(ValueError, match="no CUDA device"):
            b.prepare_cost(p, device=name)
    with pytest.raises(ValueError, match="device"):
        b.prepare(p, device="tpu")


# ---- forward-only cost (prepare_cost) ---------------------------------------------------------


def cost_problems(rng, control, float32=False):
    """Random problems of both models.  ``float32``: windows short enough (Lorenz-63 <= 20
    steps, Lorenz-96 <= 6) that float32 rounding, amplified along the chaotic trajectory,
    stays below 1e-5 of J (3000 draws each: largest 7e-6; with 30 / 10 steps 0.07% of the
    draws exceed 1e-5)."""
    l63, l96 = (20, 6) if float32 else (250, 30)
    out = [random_problem(rng, control, max_steps=l63) for _ in range(2)]
    out += [random_problem96(rng, control, n=n, max_steps=l96) for n in (4, 7, 40, None)]
    return out


@pytest.mark.parametrize("control", CONTROLS)
def test_cost_equals_gradient_J_and_python_cost(control, rng):
    b = backend_or_skip("torch")
    assert b.has_cost("lorenz63") and b.has_cost("lorenz96")
    for p in cost_problems(rng, control):
        cost, vg = b.prepare_cost(p), b.prepare(p)
        for u in (p.u0, perturbed(rng, p)):
            J = cost(u)
            assert isinstance(J, float)
            assert J == vg(u)[0], p.to_json()  # the tape's forward is the same arithmetic
            assert J == pytest.approx(float(p.cost(u)), rel=1e-12), p.to_json()


@pytest.mark.parametrize("control", CONTROLS)
def test_float32_cost_within_1e5_of_float64(control, rng):
    b = backend_or_skip("torch")
    for p in cost_problems(rng, control, float32=True):
        cost32, cost64, vg32 = b.prepare_cost(p, dtype="float32"), b.prepare_cost(p), b.prepare(p, dtype="float32")
        for u in (p.u0, perturbed(rng, p)):
            J32 = cost32(u)
            assert isinstance(J32, float) and is_float32(np.array([J32]))
            assert J32 == vg32(u)[0]
            assert J32 == pytest.approx(cost64(u), rel=1e-5), p.to_json()


def test_cost_records_no_tape_and_checks_input(rng):
    """Nothing is saved for a backward pass (the gradient call, for contrast, saves tensors);
    bad controls are ValueError before torch runs."""
    b = backend_or_skip("torch")
    import torch

    saved = []

    def pack(t):
        saved.append(t.shape)
        return t

    for p in (random_problem96(rng, "state+params", max_steps=5), random_problem(rng, "state", max_steps=5)):
        cost = b.prepare_cost(p)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            J = cost(p.u0)
            assert not saved
            assert b.prepare(p)(p.u0)[0] == J and saved
        saved.clear()
        m = p.n_control
        for bad in (np.zeros(m - 1), np.zeros(m + 1), np.zeros((1, m)), np.zeros(m, dtype=complex),
                    np.full(m, np.nan), np.r_[np.zeros(m - 1), np.inf], "abc", ["a"] * m):
            with pytest.raises(ValueError):
                cost(bad)
        assert cost(list(p.u0)) == J


@pytest.mark.skipif(os.environ.get("ADJOINTBENCH_TORCH_COMPILE") != "1",
                    reason="torch-compile is opt-in (ADJOINTBENCH_TORCH_COMPILE=1); Inductor takes ~10 s per graph here")
def test_torch_compile_lorenz96_and_batch(rng):
    """A 2-3 step window keeps each Inductor compile to seconds: one vg and one batch graph."""
    b = backend_or_skip("torch-compile")
    p = problem96(rng, "state+params", n=int(rng.choice([5, 7, 12])), max_steps=3, background=True, ends=True)
    vg = b.prepare(p)
    assert vg.compile_s > 0
    for u in (p.u0, perturbed(rng, p)):
        assert verify.check_vg("torch-compile", vg, p, u).passed
    vgb = b.prepare_batch(p)
    assert vgb.idiom == "batch axis" and vgb.compile_s > 0
    for B in (1, 3, 17):  # one graph serves every B (B = 1 as two copies of its row)
        U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
        J, G = vgb(U)
        for i in range(B):
            Ji, gi = vg(U[i])
            assert J[i] == pytest.approx(Ji, rel=1e-12)
            np.testing.assert_allclose(G[i], gi, rtol=1e-11, atol=1e-12 * np.max(np.abs(gi)))
    with pytest.raises(ValueError):
        vgb(np.zeros((0, p.n_control)))
    cost = b.prepare_cost(p)  # the cost alone, compiled
    for u in (p.u0, perturbed(rng, p)):
        assert cost(u) == pytest.approx(vg(u)[0], rel=1e-13)
        assert cost(u) == pytest.approx(float(p.cost(u)), rel=1e-12)
