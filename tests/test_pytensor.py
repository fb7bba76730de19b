"""The pytensor backend (symbolic graph, scan, pytensor.grad, C linker) on both models.

Randomised problems against complex step: Lorenz-63 (``random_problem``) and Lorenz-96
(``random_problem96``, n in {4, 5, 7, 40, random}), both controls, observations at step 0
only, at the last step only and random; the compiled graphs are C (CVM, C thunks, no Python
op) and are reused across problems of one model and control; ``prepare_batch`` rows against
single calls (B in {1, 3, 17}); ``prepare_cost`` against the gradient's J; bad inputs as
ValueError before pytensor runs.

Compilation is per process and (model, control, gradient or cost), at most 8 graphs here,
~1-15 s each on the loaded 2-core VM with ~/.pytensor warm (a cold cache adds the C builds).
The module-scoped ``compiled`` fixture compiles the four gradient graphs once; every test
after it reuses them.
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

NAME = "pytensor"
CONTROLS = ("state", "state+params")


@pytest.fixture(scope="module")
def backend():
    return backend_or_skip(NAME)


@pytest.fixture(scope="module")
def compiled(backend):
    """The four gradient graphs, compiled once for the module: {(model, control): Prepared}."""
    rng = np.random.default_rng(0)  # the graphs do not depend on the problem's numbers
    out = {}
    for control in CONTROLS:
        out["lorenz63", control] = backend.prepare(random_problem(rng, control, max_steps=5))
        out["lorenz96", control] = backend.prepare(random_problem96(rng, control, max_steps=5))
    return out


def with_ends(p):
    """p, and p observed at step 0 only and at its last step only (both ends of the window)."""
    return [p, p.with_(obs_steps=[0], obs_values=p.obs_values[:1]),
            p.with_(obs_steps=[p.nsteps], obs_values=p.obs_values[-1:])]


def perturbed(rng, p, scale=0.02):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


def test_graphs_are_c_and_reused(backend, compiled, rng):
    import pytensor
    from pytensor.link.vm import VMLinker

    for (model, control), vg in compiled.items():
        info = vg.info
        assert info["linker"] == "cvm" and info["floatX"] == pytensor.config.floatX and info["cxx"]
        ops = info["ops"]
        # the C VM, every node a C thunk but the two Scans (forward, reversed), whose loop is
        # Cython calling C bodies; nothing in Python
        assert ops["vm"] == "CVM" and ops["scan"] == 2 and ops["c"] > 50 and ops["python"] == [], ops
        assert vg.compile_s is not None and info["graph_compile_s"] > 0
        # the same graph for another problem of this model and control: no compilation
        p = random_problem96(rng, control, max_steps=7) if model == "lorenz96" else random_problem(rng, control, max_steps=9)
        again = backend.prepare(p)
        assert again.compile_s == 0.0 and again.info["graph_reused"]
        assert again.info["graph_compile_s"] == info["graph_compile_s"]
    from adjointbench.backends import pytensor_ad

    fn = pytensor_ad._CACHE["lorenz96", "state", True].fn
    linker = fn.maker.linker
    assert isinstance(linker, VMLinker) and linker.use_cloop and linker.c_thunks
    assert {v.dtype for v in fn.maker.fgraph.outputs} == {"float64"}


@pytest.mark.parametrize("control", CONTROLS)
def test_matches_complex_step(backend, compiled, control, rng):
    ps = with_ends(random_problem(rng, control, max_steps=150)) + [ab.Lorenz63Problem.paper(control)]
    ps += [random_problem96(rng, control, n=n, max_steps=25) for n in (4, 5, 7, 40, None)]
    ps += with_ends(random_problem96(rng, control, max_steps=12))[1:]
    for p in ps:
        vg = backend.prepare(p)
        assert (vg.device, vg.dtype) == ("cpu", "float64")
        for u in (p.u0, perturbed(rng, p)):
            res = verify.check_vg(NAME, vg, p, u)
            assert res.passed, f"{res} on {p.to_json()}"
        J, g = vg(p.u0)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@pytest.mark.parametrize("control", CONTROLS)
def test_batch_rows_equal_single_calls(backend, compiled, control, rng):
    for p in (random_problem(rng, control, max_steps=60), random_problem96(rng, control, max_steps=15)):
        vg, vgb = backend.prepare(p), backend.prepare_batch(p)
        assert vgb.idiom == backend.batch_idiom == "batch axis"
        for B in (1, 3, 17):
            U = p.u0 * (1 + 0.05 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for i in range(B):
                Ji, gi = vg(U[i])
                assert J[i] == pytest.approx(Ji, rel=1e-13)
                np.testing.assert_allclose(G[i], gi, rtol=1e-12, atol=1e-13 * np.max(np.abs(gi)))
            assert len({float(j) for j in J}) == B  # distinct members, distinct costs


@pytest.mark.parametrize("control", CONTROLS)
def test_cost_equals_gradient_J(backend, compiled, control, rng):
    from adjointbench.backends import pytensor_ad

    assert backend.has_cost("lorenz63") and backend.has_cost("lorenz96")
    for p in (random_problem(rng, control, max_steps=150), random_problem96(rng, control, max_steps=20)):
        cost, vg = backend.prepare_cost(p), backend.prepare(p)
        for u in (p.u0, perturbed(rng, p)):
            J = cost(u)
            assert isinstance(J, float)
            assert J == pytest.approx(vg(u)[0], rel=1e-13)
            assert J == pytest.approx(float(p.cost(u)), rel=1e-12)
        ops = pytensor_ad._CACHE[p.model, control, False].ops  # the cost graph: C as well, one Scan
        assert ops["vm"] == "CVM" and ops["scan"] == 1 and ops["python"] == [], ops


def test_bad_inputs_are_value_errors(backend, compiled, rng, monkeypatch):
    from adjointbench.backends import pytensor_ad

    for p in (random_problem(rng, "state+params", max_steps=5), random_problem96(rng, "state", max_steps=5)):
        vg, vgb = backend.prepare(p), backend.prepare_batch(p)
        m = p.n_control
        good = np.tile(p.u0, (2, 1))
        nan = good.copy()
        nan[1, 0] = np.nan

        def ran(*a, **k):
            raise AssertionError("pytensor ran on an invalid control")

        with monkeypatch.context() as mp:
            mp.setattr(pytensor_ad.Compiled, "__call__", ran)
            for bad in (np.zeros(m - 1), np.zeros(m + 1), np.zeros((1, m)), np.zeros(m, dtype=complex),
                        np.full(m, np.nan), np.r_[np.zeros(m - 1), np.inf], "abc", ["a"] * m):
                with pytest.raises(ValueError):
                    vg(bad)
            for bad in (p.u0, np.zeros((2, m + 1)), np.zeros((0, m)), np.zeros((2, m, 1)), nan,
                        good.astype(complex), [[1.0] * m, [1.0] * (m - 1)]):
                with pytest.raises(ValueError):
                    vgb(bad)
        assert verify.check_vg(NAME, vg, p).passed  # still correct afterwards
