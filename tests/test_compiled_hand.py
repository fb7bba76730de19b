"""What is specific to the compiled hand adjoints: backends ``numba`` and ``cython``,
their fused Tbl. 3 drivers, their input fast paths, and the plain C reference.

The generic contract (complex step on random problems, sizes, fused driver on control
``state``) is in test_backends.py; here: both controls for the fused drivers, every kind of
input the fast paths might mishandle, the native constructor's own size checks, the compile
time report, the C yardstick against complex step, and the forward-only cost (``prepare_cost``:
the gradient's J, the Python cost, the same input checks) where a backend has one.
"""

import array
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import c_reference, verify
from adjointbench.backends import python_descent
from adjointbench.testing import random_problem

from conftest import backend_or_skip

COMPILED = ["numba", "cython"]




@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("name", COMPILED)
def test_matches_complex_step_and_numpy(name, control, rng):
    b = backend_or_skip(name)
    for _ in range(4):
        p = random_problem(rng, control)
        vg, ref = b.prepare(p), ab.backend("numpy").prepare(p)
        u = p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control))
        assert verify.check_vg(name, vg, p, u).passed
        J, g = vg(u)
        J0, g0 = ref(u)
        # the same arithmetic as the interpreted source: equal to rounding
        assert J == pytest.approx(J0, rel=1e-13)
        np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12 * np.max(np.abs(g0)))


@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("name", COMPILED)
def test_fused_driver_equals_python_loop(name, control, rng):
    b = backend_or_skip(name)
    problems = [ab.Lorenz63Problem.paper(control), random_problem(rng, control)]
    for p in problems:
        step = 5e-4 if p is problems[0] and control == "state" else 1e-6
        fused = b.prepare_descent(p, iterations=37, step=step)(p.u0)
        loop = python_descent(b.prepare(p), p.u0, iterations=37, step=step)
        np.testing.assert_allclose(fused.costs, loop.costs, rtol=1e-12)
        np.testing.assert_allclose(fused.u, loop.u, rtol=1e-12, atol=1e-14)
        assert fused.u.shape == (p.n_control,) and fused.costs.shape == (37,)


@pytest.mark.parametrize("name", COMPILED)
def test_fused_driver_leaves_input_alone_and_repeats(name):
    b = backend_or_skip(name)
    p = ab.Lorenz63Problem.paper()
    run = b.prepare_descent(p)
    u0 = p.u0
    first = run(u0)
    np.testing.assert_array_equal(u0, p.u0)
    second = run(u0)
    np.testing.assert_array_equal(first.u, second.u)
    np.testing.assert_array_equal(first.costs, second.costs)
    assert first.costs[-1] < first.costs[0]


@pytest.mark.parametrize("name", COMPILED)
def test_every_input_form_gives_the_same_answer(name, rng):
    """The fast path (contiguous writable float64) and the slow path (check_control) agree."""
    b = backend_or_skip(name)
    p = random_problem(rng, "state+params")
    vg = b.prepare(p)
    u = p.u0
    J, g = vg(u)
    readonly = u.copy()
    readonly.setflags(write=False)
    strided = np.repeat(u, 2)[::2]
    forms = [u.tolist(), tuple(u), array.array("d", u), memoryview(u.copy()), readonly, strided,
             u.astype(">f8"), np.asfortranarray(u), np.ascontiguousarray(u)]
    for form in forms:
        J2, g2 = vg(form)
        assert J2 == J and np.array_equal(g2, g), type(form)
    ints = np.round(u).astype(np.int64)
    assert vg(ints)[0] == vg(ints.astype(np.float64))[0]
    # a fresh gradient each call: the caller may keep it
    g_again = vg(u)[1]
    assert g_again is not g and np.array_equal(g_again, g)


@pytest.mark.parametrize("name", COMPILED)
def test_bad_controls_are_value_errors(name):
    b = backend_or_skip(name)
    for control in ("state", "state+params"):
        p = ab.Lorenz63Problem.paper(control)
        vg = b.prepare(p)
        run = b.prepare_descent(p, iterations=3)
        n = p.n_control
        bad = [np.zeros(n - 1), np.zeros(n + 1), np.zeros((n, 1)), np.zeros((1, n)), np.zeros(0), np.float64(1.0),
               np.zeros(n, dtype=complex), np.zeros(n, dtype=bool), ["a"] * n, None, "abc", b"\0" * (8 * n),
               np.full(n, np.nan), np.full(n, np.inf), np.r_[np.zeros(n - 1), -np.inf]]
        for u in bad:
            with pytest.raises(ValueError):
                vg(u)
            with pytest.raises(ValueError):
                run(u)
        # still correct afterwards
        assert verify.check_vg(name, vg, p).passed


def test_native_constructor_checks_sizes():
    mod, reason = ab.native.load("_cython_hand")
    if mod is None:
        pytest.skip(reason)
    p = ab.Lorenz63Problem.paper()
    params = [10.0, 28.0, 8 / 3]
    ok = dict(dt=0.01, steps=[60, 120, 180], obs=np.ones((3, 3)), params=params, n_control=3, check=p.check_control)
    mod.HandAdjoint(**ok)
    for change in [
        dict(obs=np.ones((2, 3))), dict(obs=np.ones((4, 3))), dict(obs=np.ones((3, 2))), dict(obs=np.ones(9)),
        dict(steps=[]), dict(steps=[[60, 120, 180]]), dict(steps=[60, 60, 180]), dict(steps=[120, 60, 180]),
        dict(steps=[-1, 60, 180]), dict(obs=np.full((3, 3), np.nan)), dict(params=[1.0, 2.0]),
        dict(n_control=4), dict(dt=np.inf), dict(check=None), dict(steps=[60.5, 120, 180]),
        dict(steps=["a", "b", "c"]), dict(obs=[["x"] * 3] * 3),
    ]:
        with pytest.raises(ValueError):
            mod.HandAdjoint(**{**ok, **change})
    with pytest.raises(TypeError):  # no instance without its work arrays
        mod.HandAdjoint.__new__(mod.HandAdjoint)
    h = mod.HandAdjoint(**ok)
    with pytest.raises(ValueError):
        h.descent(p.u0, 0, 1e-3)
    with pytest.raises(ValueError):
        h.descent(p.u0, 3, np.nan)


@pytest.mark.parametrize("name", COMPILED)
def test_concurrent_calls_from_threads(name, rng):
    """The Cython loops run without the GIL: a call that finds the work arrays busy uses its own."""
    b = backend_or_skip(name)
    p = random_problem(rng, "state+params", max_steps=2000)
    vg = b.prepare(p)
    # a step that keeps the descent finite however steep this random problem is
    run = b.prepare_descent(p, iterations=5, step=1e-3 / np.max(np.abs(vg(p.u0)[1])))
    us = [p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control)) for _ in range(16)]
    expected = [vg(u) for u in us]
    expected_run = [run(u) for u in us[:4]]

    def work(i):
        J, g = vg(us[i % 16])
        res = run(us[i % 4]) if i % 8 == 0 else None
        return i, J, g, res

    with ThreadPoolExecutor(4) as pool:
        for i, J, g, res in pool.map(work, range(400)):
            assert J == expected[i % 16][0] and np.array_equal(g, expected[i % 16][1])
            if res is not None:
                np.testing.assert_array_equal(res.costs, expected_run[i % 4].costs)


def test_cython_unavailable_says_why(monkeypatch):
    b = ab.backend("cython")
    monkeypatch.setattr(ab.native, "load", lambda name: (None, f"native extension adjointbench.{name} is not built (test)"))
    ok, reason = b.available()
    assert not ok and "_cython_hand" in reason and "(test)" in reason
    with pytest.raises(ValueError, match="unavailable"):
        b.prepare(ab.Lorenz63Problem.paper())


def test_numba_never_compiles_at_call_time(rng):
    b = backend_or_skip("numba")
    p = random_problem(rng, "state")
    vg = b.prepare(p)
    from adjointbench.backends import numba_hand

    entries = numba_hand._kernels()[0]
    before = {k: len(d.signatures) for k, d in entries.items()}
    for u in (p.u0, p.u0.tolist(), p.u0.astype(np.float32), np.repeat(p.u0, 2)[::2]):
        vg(u)
    b.prepare_descent(p, iterations=2)(p.u0.tolist())
    cost = b.prepare_cost(p)
    cost_entries = numba_hand._group("l63_cost")[0]
    for u in (p.u0, p.u0.tolist(), p.u0.astype(np.float32), np.repeat(p.u0, 2)[::2]):
        cost(u)
    assert {k: len(d.signatures) for k, d in entries.items()} == before == {k: 1 for k in entries}
    assert {k: len(d.signatures) for k, d in cost_entries.items()} == {"cost": 1}


def test_numba_reports_compile_time():
    """In a fresh interpreter the first prepare compiles and says how long it took."""
    pytest.importorskip("numba")
    code = (
        "import adjointbench as ab\n"
        "p = ab.Lorenz63Problem.paper()\n"
        "a = ab.backend('numba').prepare(p); b = ab.backend('numba').prepare(p)\n"
        "print(a.compile_s, b.compile_s, a.info['compile_s_in_process'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, second, total = map(float, out.split())
    assert first > 0 and first == total
    assert second == 0.0


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_c_reference_matches_complex_step(control, rng):
    ok, reason = c_reference.available()
    if not ok:
        pytest.skip(reason)
    for p in (ab.Lorenz63Problem.paper(control), random_problem(rng, control)):
        m = c_reference.measure(p, repeats=2, batch=2, iterations=5, step=1e-6)
        J_ref, g_ref = verify.reference(p)
        assert verify.relative_error(m["grad"], g_ref) <= verify.TOLERANCE
        assert abs(m["J"] - J_ref) <= verify.TOLERANCE * abs(J_ref)
        loop = python_descent(ab.backend("numpy").prepare(p), p.u0, iterations=5, step=1e-6)
        np.testing.assert_allclose(m["descent_costs"], loop.costs, rtol=1e-12)
        np.testing.assert_allclose(m["descent_u"], loop.u, rtol=1e-12)
        assert m["call_s"] > 0 and m["workload_s"] > 0 and m["compiler"].startswith("gcc")


def test_c_reference_bad_arguments():
    with pytest.raises(ValueError):
        c_reference.measure({"dt": 0.01})
    with pytest.raises(ValueError):
        c_reference.measure(repeats=0)
    with pytest.raises(ValueError):
        c_reference.measure(ab.Lorenz63Problem.paper(), u=np.zeros(4))


# ---- forward-only cost (prepare_cost, the cheap-gradient ratio's denominator) -----------------


def cost_or_skip(name, model="lorenz63"):
    b = backend_or_skip(name)
    if not b.has_cost(model):
        pytest.skip(f"{name} has no forward-only cost for {model}")
    return b


@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("name", COMPILED)
def test_forward_cost_equals_gradient_J_and_python_cost(name, control, rng):
    b = cost_or_skip(name)
    problems = [ab.Lorenz63Problem.paper(control)] + [random_problem(rng, control) for _ in range(6)]
    for p in problems:
        cost, vg = b.prepare_cost(p), b.prepare(p)
        for u in (p.u0, p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control))):
            J = cost(u)
            assert isinstance(J, float)
            if name in ("cython", "numba"):  # the gradient's forward step and summation order: the same bits
                assert J == vg(u)[0], p.obs_steps.tolist()
            else:
                assert J == pytest.approx(vg(u)[0], rel=1e-14)
            assert J == pytest.approx(float(p.cost(u)), rel=1e-13)


@pytest.mark.parametrize("name", COMPILED)
def test_forward_cost_inputs(name, rng):
    """Every input form the gradient accepts gives the same J; every bad one is a ValueError."""
    b = cost_or_skip(name)
    for control in ("state", "state+params"):
        p = random_problem(rng, control)
        cost = b.prepare_cost(p)
        u = p.u0
        J = cost(u)
        for form in (u.tolist(), tuple(u), array.array("d", u), np.repeat(u, 2)[::2], u.astype(">f8"),
                     np.asfortranarray(u)):
            assert cost(form) == J, type(form)
        n = p.n_control
        bad = [np.zeros(n - 1), np.zeros(n + 1), np.zeros((n, 1)), np.zeros((1, n)), np.zeros(0), np.float64(1.0),
               np.zeros(n, dtype=complex), np.zeros(n, dtype=bool), ["a"] * n, None, "abc", b"\0" * (8 * n),
               np.full(n, np.nan), np.full(n, np.inf), np.r_[np.zeros(n - 1), -np.inf]]
        for v in bad:
            with pytest.raises(ValueError):
                cost(v)
        assert cost(u) == J  # still correct afterwards
    with pytest.raises(ValueError, match="needs a problem"):
        b.prepare_cost("paper")


def test_native_cost_constructor_checks_sizes():
    mod, reason = ab.native.load("_cython_hand")
    if mod is None:
        pytest.skip(reason)
    p = ab.Lorenz63Problem.paper()
    ok = dict(dt=0.01, steps=[60, 120, 180], obs=np.ones((3, 3)), params=[10.0, 28.0, 8 / 3], n_control=3,
              check=p.check_control)
    assert np.isfinite(mod.HandCost(**ok).cost(p.u0))
    for change in [
        dict(obs=np.ones((2, 3))), dict(obs=np.ones((3, 2))), dict(steps=[]), dict(steps=[60, 60, 180]),
        dict(steps=[-1, 60, 180]), dict(steps=[60.5, 120, 180]), dict(obs=np.full((3, 3), np.nan)),
        dict(params=[1.0, 2.0]), dict(n_control=4), dict(dt=np.inf), dict(check=None),
    ]:
        with pytest.raises(ValueError):
            mod.HandCost(**{**ok, **change})
    with pytest.raises(TypeError):  # no instance without its checked data
        mod.HandCost.__new__(mod.HandCost)


def test_cython_forward_cost_from_threads(rng):
    """The cost runs without the GIL and shares nothing between calls."""
    b = cost_or_skip("cython")
    p = random_problem(rng, "state+params", max_steps=2000)
    cost = b.prepare_cost(p)
    us = [p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control)) for _ in range(16)]
    expected = [cost(u) for u in us]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: cost(us[i % 16]), range(200)))
    assert got == [expected[i % 16] for i in range(200)]
