"""The TensorFlow backends, ``tensorflow`` (eager tape) and ``tensorflow-xla`` (XLA, while loop).

Both models, both controls, randomised problems (Lorenz-96 n in {4, 5, 7, 40, random};
observation steps including 0 and the last) against complex step; ``prepare_batch`` rows
against single calls for B in {1, 3, 17}; ``prepare_cost``'s J against the gradient's J;
bad inputs as ValueError before TensorFlow runs.  XLA compiles a program per problem (and per
batch size) in seconds here, so the compiled backend's problems are prepared once per module.
"""

import numpy as np
import pytest

from adjointbench import verify
from adjointbench.models import Lorenz96Problem
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

CONTROLS = ("state", "state+params")
EAGER, XLA = "tensorflow", "tensorflow-xla"


def with_ends(rng, p):
    """``p`` also observed at step 0 and at its last step (new rows: an observed row plus noise)."""
    steps = sorted(set(p.obs_steps.tolist()) | {0, p.nsteps})
    rows = {int(s): v for s, v in zip(p.obs_steps, p.obs_values, strict=True)}
    base = p.obs_values[0]
    values = np.array([rows.get(s, base + rng.standard_normal(base.shape)) for s in steps])
    return p.with_(obs_steps=steps, obs_values=values)


def problems(rng, control, l63_steps, l96_steps, ns=(4, 5, 7, 40, None)):
    """Lorenz-63 (one observed at both ends, one as drawn) and Lorenz-96 for each n (the
    first two at both ends); every list has windows observed at 0 and at the last step."""
    out = [with_ends(rng, random_problem(rng, control, max_steps=l63_steps)),
           random_problem(rng, control, max_steps=l63_steps)]
    for i, n in enumerate(ns):
        p = random_problem96(rng, control, n=n, max_steps=l96_steps)
        out.append(with_ends(rng, p) if i < 2 else p)
    return out


def perturbed(rng, p, scale=0.02):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


def assert_matches_complex_step(name, vg, p, rng):
    assert (vg.device, vg.dtype) == ("cpu", "float64")
    for u in (p.u0, perturbed(rng, p)):
        res = verify.check_vg(name, vg, p, u)
        assert res.passed, f"{name}: {res} on {p.to_json()}"
    J, g = vg(p.u0)
    assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


def assert_batch_rows_equal_single_calls(vgb, vg, p, rng, sizes=(1, 3, 17)):
    assert vgb.idiom == "batch axis" and (vgb.device, vgb.dtype) == ("cpu", "float64")
    for B in sizes:
        U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
        J, G = vgb(U)
        assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
        for i in range(B):
            Ji, gi = vg(U[i])
            assert J[i] == pytest.approx(Ji, rel=1e-12)
            np.testing.assert_allclose(G[i], gi, rtol=1e-11, atol=1e-12 * np.max(np.abs(gi)))
        assert len({float(j) for j in J}) == B  # distinct members, distinct costs


BAD_SINGLE = lambda m: (np.zeros(m - 1), np.zeros(m + 1), np.zeros((1, m)), np.zeros(m, dtype=complex),  # noqa: E731
                        np.full(m, np.nan), np.r_[np.zeros(m - 1), np.inf], "abc", ["a"] * m)


def assert_bad_inputs_raise(vg, vgb, cost, p):
    m = p.n_control
    for bad in BAD_SINGLE(m):
        with pytest.raises(ValueError):
            vg(bad)
        with pytest.raises(ValueError):
            cost(bad)
    good = np.tile(p.u0, (2, 1))
    nan, inf = good.copy(), good.copy()
    nan[1, 0], inf[0, -1] = np.nan, np.inf
    for bad in (p.u0, np.zeros((2, m + 1)), np.zeros((2, m - 1)), np.zeros((0, m)), np.zeros((2, m, 1)),
                nan, inf, good.astype(complex), np.full((2, m), "x"), [[1.0] * m, [1.0] * (m - 1)]):
        with pytest.raises(ValueError):
            vgb(bad)
    J, G = vgb(good)  # still fine afterwards
    assert J[0] == J[1] == pytest.approx(vg(p.u0)[0], rel=1e-12)


# ---- tensorflow (eager tape) ----------------------------------------------------------------


@pytest.mark.parametrize("control", CONTROLS)
def test_eager_matches_complex_step(control, rng):
    b = backend_or_skip(EAGER)
    assert b.supports("lorenz63")[0] and b.supports("lorenz96")[0]
    for p in problems(rng, control, l63_steps=25, l96_steps=5):
        assert_matches_complex_step(EAGER, b.prepare(p), p, rng)


@pytest.mark.parametrize("control", CONTROLS)
def test_eager_batch_cost_and_bad_inputs(control, rng):
    b = backend_or_skip(EAGER)
    for p in (random_problem(rng, control, max_steps=12), random_problem96(rng, control, max_steps=4)):
        vg, vgb, cost = b.prepare(p), b.prepare_batch(p), b.prepare_cost(p)
        assert vg.compile_s is None and vgb.compile_s is None
        assert_batch_rows_equal_single_calls(vgb, vg, p, rng)
        for u in (p.u0, perturbed(rng, p)):
            J = cost(u)
            assert isinstance(J, float)
            assert J == vg(u)[0]  # the tape's forward is the same arithmetic
            assert J == pytest.approx(float(p.cost(u)), rel=1e-12)
        assert_bad_inputs_raise(vg, vgb, cost, p)


def test_no_gpu_here_is_a_value_error(rng):
    for name in (EAGER, XLA):
        b = backend_or_skip(name)
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            assert b.devices() == ["cpu", "gpu"]
            continue
        assert b.devices() == ["cpu"]
        p = random_problem96(rng, "state", max_steps=3)
        for prepare in (b.prepare, b.prepare_batch, b.prepare_cost):
            with pytest.raises(ValueError, match="sees no GPU"):
                prepare(p, device="gpu")
        with pytest.raises(ValueError):
            b.prepare(p, dtype="float32")


# ---- tensorflow-xla -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xla_prepared():
    """One problem per (model, control), each observed at step 0 and its last step, compiled once.

    A module-scoped fixture cannot take the function-scoped ``rng``: its own stream is drawn
    from the session seed (conftest.SEED), so the run stays reproducible.
    """
    from conftest import SEED

    b = backend_or_skip(XLA)
    rng = np.random.default_rng([SEED, 9601])
    out = {}
    for control in CONTROLS:
        out["lorenz63", control] = with_ends(rng, random_problem(rng, control))
        n = int(rng.choice([4, 5, 7, 40, int(rng.integers(4, 65))]))
        out["lorenz96", control] = with_ends(rng, random_problem96(rng, control, n=n))
    return b, {key: (p, b.prepare(p)) for key, p in out.items()}


@pytest.mark.parametrize("model", ("lorenz63", "lorenz96"))
@pytest.mark.parametrize("control", CONTROLS)
def test_xla_matches_complex_step(xla_prepared, model, control, rng):
    _, prepared = xla_prepared
    p, vg = prepared[model, control]
    assert vg.compile_s > 0 and "jit_compile=True" in vg.info["mode"]
    assert_matches_complex_step(XLA, vg, p, rng)


@pytest.mark.parametrize("model,control", (("lorenz63", "state"), ("lorenz96", "state+params")))
def test_xla_batch_cost_and_bad_inputs(xla_prepared, model, control, rng):
    b, prepared = xla_prepared
    p, vg = prepared[model, control]
    vgb = b.prepare_batch(p)
    assert vgb.compile_s > 0 and set(vgb.info["batch_compile_s"]) == {1}  # B = 1 compiled in prepare
    assert_batch_rows_equal_single_calls(vgb, vg, p, rng)
    assert set(vgb.info["batch_compile_s"]) == {1, 3, 17}  # one XLA program per batch size
    cost = b.prepare_cost(p)  # the while-loop cost alone, compiled
    for u in (p.u0, perturbed(rng, p)):
        J = cost(u)
        assert isinstance(J, float)
        assert J == pytest.approx(vg(u)[0], rel=1e-13)
        assert J == pytest.approx(float(p.cost(u)), rel=1e-12)
    assert_bad_inputs_raise(vg, vgb, cost, p)


def test_xla_loop_is_not_unrolled(rng):
    """The traced gradient graph has the same size for a 2-step and a 30-step window (tracing
    only, no XLA compilation): the time loop is a tf.while_loop, not Python unrolled."""
    backend_or_skip(XLA)
    from adjointbench.backends import tensorflow_ad as T

    p = Lorenz96Problem.standard(n=int(rng.integers(8, 50)), nsteps=30, control="state+params")
    short = p.with_(nsteps=2, obs_steps=[0, 2], obs_values=p.obs_values[:2])
    sizes = []
    for q in (short, p):
        fn = T.compiled(T.tape_value_and_grad(T.cost_for(q, loop=True)), q.n_control, batch=False)
        graph = fn.get_concrete_function().graph
        sizes.append(len(graph.get_operations()))
        assert any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    assert sizes[0] == sizes[1]
