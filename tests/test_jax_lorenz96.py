"""Lorenz-96 in the JAX backends (jax, jax-nojit, enzyme-jax) and their batched gradients.

Randomised problems (fresh seed per run, see conftest.py): float64 against complex step for
both controls, float32 at the float32 gate tolerance, a 10^5-variable problem by the
directional check, batches (``jax.vmap``) row by row against single calls for both models,
bad batches refused before any JAX work, the scan's unroll, and the fused descent.
XLA compiles cost ~1-5 s each on the 2-core VM, so each test prepares few executables;
jax-nojit (~10 ms per primitive-heavy time step) gets tiny windows.
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import python_descent
from adjointbench.models import Lorenz96Problem
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem
from adjointbench.testing import random_problem96 as shared_random_problem96

from conftest import backend_or_skip

NAMES = ["jax", "jax-nojit", "enzyme-jax"]
JIT = ["jax", "enzyme-jax"]
#: the float32 gate tolerance of tests/test_ad_backends.py and bench/_bench.py
FLOAT32_TOLERANCE = 1e-3
#: rows of a batch against single calls: the same arithmetic, XLA may fuse it differently
BATCH_RTOL = 1e-12
N_CHOICES = (4, 5, 7, 40)
#: jax-nojit compiles each primitive once per shape: one small n keeps its cache warm across tests
NOJIT = dict(n=5, max_steps=4)


def random_problem96(rng, control, *, first=False, last=False, **kw):
    """``adjointbench.testing.random_problem96`` with step 0 (``first``) and/or the last step
    (``last``) certainly observed (their rows: the first guess's states plus noise)."""
    p = shared_random_problem96(rng, control, **kw)
    want = ({0} if first else set()) | ({p.nsteps} if last else set())
    add = sorted(want - set(p.obs_steps.tolist()))
    if not add:
        return p
    rows = l96.observe(p.x0, p.F, p.dt, np.array(add), p.obs_indices)
    rows = rows + p.sigma_o * rng.standard_normal(rows.shape)
    steps = np.concatenate([p.obs_steps, add])
    order = np.argsort(steps)
    return p.with_(obs_steps=steps[order], obs_values=np.concatenate([p.obs_values, rows])[order])


def near(rng, p, scale=0.01):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


def is_float32(x):
    return np.array_equal(np.asarray(x, dtype=np.float32).astype(np.float64), x)


def test_all_three_declare_both_models_and_vmap_batches():
    for name in NAMES:
        b = ab.backend(name)
        assert b.models == ("lorenz63", "lorenz96") and b.batch_idiom == "vmap"
    for name in JIT:
        assert ab.backend(name).has_fused("lorenz96")


@pytest.mark.parametrize("name", NAMES)
def test_float64_matches_complex_step(name, rng):
    """n over {4, 5, 7, 40, random}, step 0 and the last step observed or not, both controls."""
    b = backend_or_skip(name)
    from adjointbench.backends import _jax_lorenz96

    ends = [(True, True), (False, True), (True, False)]
    if name == "jax":  # every n of {4, 5, 7, 40, random} in one run, controls alternating
        ns = rng.permutation(list(N_CHOICES) + [int(rng.integers(4, 65))]).tolist()
        cases = [(ab.CONTROLS[i % 2], n, ends[i % 3], i % 2 == 0) for i, n in enumerate(ns)]
    else:  # one random problem per control (jax-nojit: tiny ones, it is slow)
        cases = [(control, NOJIT["n"] if name == "jax-nojit" else int(rng.choice(N_CHOICES)),
                  ends[int(rng.integers(3))], bool(rng.integers(2))) for control in ab.CONTROLS]
    for control, n, (first, last), background in cases:
        p = random_problem96(rng, control, n=n, first=first, last=last, background=background,
                             max_steps=NOJIT["max_steps"] if name == "jax-nojit" else 30)
        vg = b.prepare(p)
        assert vg.dtype == "float64" and vg.device == "cpu"
        if name != "jax-nojit":  # the default unroll is recorded with results
            assert vg.info["scan_unroll"] == _jax_lorenz96.UNROLL[name]["cpu"]
        for u in (p.u0, near(rng, p)):
            res = verify.check_vg(name, vg, p, u)
            assert res.passed, f"{name}: {res} on {p.to_json()}"
            J, g = vg(u)
            assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@pytest.mark.parametrize("name", JIT)
def test_float32_at_the_float32_tolerance(name, rng):
    """(jax-nojit runs this very cost eagerly; its float32 is tests/test_ad_backends.py's.)"""
    b = backend_or_skip(name)
    control = ab.CONTROLS[int(rng.integers(2))]
    p = random_problem96(rng, control)
    vg = b.prepare(p, dtype="float32")
    assert vg.dtype == "float32"
    u = near(rng, p)
    res = verify.check_vg(name, vg, p, u, tolerance=FLOAT32_TOLERANCE)
    assert res.passed, f"{name}: {res} on {p.to_json()}"
    J, g = vg(u)
    assert is_float32(np.array([J])) and is_float32(g)


def test_large_n_by_the_directional_check(rng):
    """N = 10^5 (+ random), a few steps: complex-step directional derivatives, float64 gate."""
    b = backend_or_skip("jax")
    n = 100_000 + int(rng.integers(0, 1000))
    nsteps = int(rng.integers(2, 5))
    F = float(rng.uniform(6.0, 10.0))
    x = F + rng.standard_normal(n)
    idx = np.sort(rng.choice(n, size=int(rng.integers(1, n // 10)), replace=False))
    steps = np.array([0, nsteps])
    y = l96.observe(x, F, 0.05, steps, idx) + rng.standard_normal((2, idx.size))
    control = ab.CONTROLS[int(rng.integers(2))]
    p = Lorenz96Problem(n=n, dt=0.05, nsteps=nsteps, x0=x, F=F, obs_steps=steps, obs_indices=idx, obs_values=y,
                        background=x + rng.standard_normal(n), control=control)
    assert p.n_control > verify.FULL_GRADIENT_MAX
    res = verify.check_vg("jax", b.prepare(p), p, near(rng, p))
    assert res.passed, res


def _batch_problem(rng, model, name):
    control = ab.CONTROLS[int(rng.integers(2))]
    if model == "lorenz63":
        return random_problem(rng, control, max_steps=3 if name == "jax-nojit" else 60)
    return random_problem96(rng, control, **(NOJIT if name == "jax-nojit" else {}))


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
@pytest.mark.parametrize("name", NAMES)
def test_batch_rows_equal_single_calls(name, model, rng):
    b = backend_or_skip(name)
    p = _batch_problem(rng, model, name)
    vg = b.prepare(p)
    vgb = b.prepare_batch(p)
    assert vgb.idiom == "vmap" and vgb.device == "cpu" and vgb.dtype == "float64"
    # one compile per batch size (jax-nojit: one per primitive and shape, seconds in all): to keep
    # the file's time down jax-nojit has one size and enzyme-jax (~2x jax's compile) skips 3 on Lorenz-96
    sizes = {"jax-nojit": (3,), "enzyme-jax": (1, 17) if model == "lorenz96" else (1, 3, 17)}.get(name, (1, 3, 17))
    for B in sizes:
        U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
        J, G = vgb(U)
        assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
        for k in range(B):
            Jk, gk = vg(U[k])
            assert abs(J[k] - Jk) <= BATCH_RTOL * abs(Jk), (B, k)
            assert verify.relative_error(G[k], gk) <= BATCH_RTOL, (B, k)
        assert len(set(J.tolist())) == B  # distinct controls, distinct rows
    if name != "jax-nojit":
        assert sorted(vgb.info["batch_compile_s"]) == list(sizes)


def test_batch_float32_rows(rng):
    b = backend_or_skip("jax")
    p = random_problem96(rng, ab.CONTROLS[int(rng.integers(2))])
    U = p.u0 * (1 + 0.05 * rng.standard_normal((3, p.n_control)))
    J, G = b.prepare_batch(p, dtype="float32")(U)
    assert is_float32(J) and is_float32(G)
    for k in range(3):
        ref = verify.reference(p, U[k])
        assert verify.relative_error(G[k], ref[1]) <= FLOAT32_TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_bad_batches_raise_before_any_jax_work(name, rng, monkeypatch):
    b = backend_or_skip(name)
    from adjointbench.backends import _jax_lorenz96, _jax_model

    p = random_problem96(rng, ab.CONTROLS[int(rng.integers(2))], **NOJIT)
    vgb = b.prepare_batch(p)

    def traced(*a, **k):
        raise AssertionError("JAX ran on invalid input")

    monkeypatch.setattr(_jax_model, "_compile", traced)
    monkeypatch.setattr(_jax_lorenz96, "observed_trajectory", traced)
    m = p.n_control
    nan_row = np.ones((3, m))
    nan_row[1, 2] = np.nan
    inf_row = np.ones((2, m))
    inf_row[0, 0] = np.inf
    for bad in (np.ones(m), np.ones((0, m)), np.ones((2, m + 1)), np.ones((2, m - 1)), np.ones((1, m, 1)),
                nan_row, inf_row, np.ones((2, m)) * 1j, np.full((2, m), "x"), [[1.0] * m, [1.0] * (m - 1)]):
        with pytest.raises(ValueError):
            vgb(bad)


def test_scan_unroll_changes_the_loop_not_the_gradient(rng):
    """Unrolling (bench/jax_unroll.py --model lorenz96 picks it per device) computes the same."""
    backend_or_skip("jax")
    import jax

    from adjointbench.backends import _jax_model

    # short windows: XLA's compile time grows with the unrolled body (RK4 of N-vectors)
    p = random_problem96(rng, ab.CONTROLS[int(rng.integers(2))], max_steps=5)
    u = near(rng, p)
    J1, g1 = _jax_model.jit_vg(p, "cpu", "float64", jax.value_and_grad, info={}, unroll=1)(u)
    for unroll in (2, int(rng.integers(3, 6)), 1000):  # 1000: more than the window, clamped
        vg = _jax_model.jit_vg(p, "cpu", "float64", jax.value_and_grad, info={}, unroll=unroll)
        assert vg.info["scan_unroll"] == unroll
        assert verify.check_vg("jax", vg, p, u).passed, (unroll, p.to_json())
        J, g = vg(u)
        assert abs(J - J1) <= 1e-13 * abs(J1) and verify.relative_error(g, g1) <= 1e-13, unroll


@pytest.mark.parametrize("name", JIT)
def test_fused_descent_matches_python_loop(name, rng):
    b = backend_or_skip(name)
    p = random_problem96(rng, ab.CONTROLS[int(rng.integers(2))])
    vg = b.prepare(p)
    scale = float(np.max(np.abs(vg(p.u0)[1])))
    iterations, step = 7, 1e-3 / max(scale, 1.0)  # small steps: the descent must not blow up
    run = b.prepare_descent(p, iterations=iterations, step=step)
    fused = run(p.u0)
    ref = python_descent(vg, p.u0, iterations=iterations, step=step)
    assert verify.descent_difference(fused, ref) <= 1e-12
    assert fused.costs.shape == (iterations,) and run.device == "cpu" and run.compile_s > 0
    with pytest.raises(ValueError):
        run(np.zeros(p.n_control + 2))


def test_enzyme_jax_batch_is_differentiated_by_enzyme(rng):
    backend_or_skip("enzyme-jax")
    import jax

    from adjointbench.backends import _jax_model, enzyme_jax

    p = random_problem96(rng, "state+params")
    cost = _jax_model.cost_for(p)
    U = np.tile(p.u0, (4, 1))
    with _jax_model.x64():
        prims = {e.primitive.name for e in jax.make_jaxpr(enzyme_jax._enzyme_batch_value_and_grad(cost))(U).jaxpr.eqns}
    assert any("enzyme" in n for n in prims), prims
    assert not prims & {"scan", "scatter-add", "transpose"}


def test_enzyme_jax_short_windows_compile(rng):
    """2-4 RK4 steps once made Enzyme-MLIR's compile spin for minutes (``_jax_lorenz96.MIN_TRIP``):
    those windows run as a longer masked scan, with the same J and gradient."""
    b = backend_or_skip("enzyme-jax")
    p = None
    while p is None or p.nsteps < 2:  # a window of 2..4 steps, the last one observed
        p = random_problem96(rng, ab.CONTROLS[int(rng.integers(2))], n=int(rng.choice(N_CHOICES)), max_steps=4,
                             last=True)
    assert 2 <= p.last_obs_step <= 4
    res = verify.check_vg("enzyme-jax", b.prepare(p), p, near(rng, p))
    assert res.passed, (res, p.to_json())


@pytest.mark.parametrize("everything", [True, False])
def test_enzyme_jax_batch_of_state_and_F_observing_a_prefix(everything, rng):
    """Enzyme-MLIR aborted the process lowering this batch when the scan body took x[:m] or the
    whole x (``_jax_lorenz96.GATHER_PREFIX``): control state+params, B >= 2, observed entries
    0..m-1.  Rows must equal the single gradients of the same problem."""
    b = backend_or_skip("enzyme-jax")
    p = random_problem96(rng, "state+params", n=int(rng.integers(8, 41)), max_steps=20)
    m = p.n if everything else int(rng.integers(1, p.n))
    rows = l96.observe(p.x0, p.F, p.dt, p.obs_steps, np.arange(m))
    p = p.with_(obs_indices=np.arange(m), obs_values=rows + p.sigma_o * rng.standard_normal(rows.shape))
    U = np.array([near(rng, p) for _ in range(int(rng.integers(2, 6)))])
    J, G = b.prepare_batch(p)(U)
    single = b.prepare(p)
    for u, j, g in zip(U, J, G, strict=True):
        j1, g1 = single(u)
        assert abs(j - j1) <= BATCH_RTOL * abs(j1) and np.allclose(g, g1, rtol=BATCH_RTOL, atol=0), (p.to_json(), u)
