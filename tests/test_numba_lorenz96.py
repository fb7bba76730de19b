"""Backend ``numba`` on Lorenz-96 and on batches of both models.

The RK4 hand adjoint in typed loops (``backends/_numba_lorenz96.py``) against complex step on
random problems (both controls, with and without background, observation steps at 0 and at the
last step), the directional check at N >= 10^5, the fused descent against the Python-driven one,
the prange batch (rows equal single calls, numba's thread count, bad input, the memory budget,
calls from several threads), and the forward-only cost (``prepare_cost``) against the gradient's J.  numba compiles
each group of entries once per process, so the first test that needs one pays for it (seconds).
"""

import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import python_descent
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

CONTROLS = ["state", "state+params"]


@pytest.fixture(scope="module")
def numba_backend():
    return backend_or_skip("numba")


def with_ends(p, rng):
    """p with observations at step 0 and at the last step added (values: first guess + noise)."""
    steps = sorted(set(p.obs_steps.tolist()) | {0, p.nsteps})
    y = l96.observe(p.x0, p.F, p.dt, np.array(steps), p.obs_indices)
    return p.with_(obs_steps=steps, obs_values=y + p.sigma_o * rng.standard_normal(y.shape))


def perturbed(p, rng, scale=0.05):
    return p.u0 * (1 + scale * rng.standard_normal(p.n_control))


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("control", CONTROLS)
def test_matches_complex_step_and_numpy(numba_backend, control, background, rng):
    ref = ab.backend("numpy")
    sizes = [4, 5, 7, 40, int(rng.integers(4, 65))]
    for i, n in enumerate(sizes):
        p = random_problem96(rng, control, n=n, background=background)
        if i % 2 == 0:
            p = with_ends(p, rng)
        vg = numba_backend.prepare(p)
        u = perturbed(p, rng)
        r = verify.check_vg("numba", vg, p, u)
        assert r.passed, (p.label(), p.obs_steps, r)
        J, g = vg(u)
        assert g.shape == (p.n_control,) and g.dtype == np.float64
        J0, g0 = ref.prepare(p)(u)
        # the same arithmetic as NumPy up to the order of a few sums
        assert J == pytest.approx(J0, rel=1e-13)
        np.testing.assert_allclose(g, g0, rtol=1e-11, atol=1e-12 * np.max(np.abs(g0)))


def test_only_step_zero_observed(numba_backend, rng):
    """No time step at all (last observation at 0): dJ/dF = 0, dJ/dx_0 the innovation."""
    p = random_problem96(rng, "state+params", n=6)
    p = p.with_(obs_steps=[0], obs_values=p.obs_values[:1])
    u = perturbed(p, rng)
    assert verify.check_vg("numba", numba_backend.prepare(p), p, u).passed
    assert numba_backend.prepare(p)(u)[1][-1] == 0.0


@pytest.mark.parametrize("control", CONTROLS)
def test_large_n_directional(numba_backend, control, rng):
    p = ab.Lorenz96Problem.standard(n=100_000, nsteps=2, obs_every=1, spinup=10, control=control,
                                    seed=int(rng.integers(2**31)))
    assert p.n_control > verify.FULL_GRADIENT_MAX  # the directional complex-step gate
    r = verify.check_vg("numba", numba_backend.prepare(p), p, perturbed(p, rng, 0.01))
    assert r.passed, r


def test_bad_single_inputs(numba_backend, rng):
    p = random_problem96(rng, "state+params", n=7)
    vg = numba_backend.prepare(p)
    for bad in (np.zeros(p.n), np.zeros(p.n + 2), np.full(p.n + 1, np.nan), np.zeros((1, p.n + 1)),
                np.zeros(p.n + 1, dtype=complex)):
        with pytest.raises(ValueError):
            vg(bad)
    u = perturbed(p, rng)
    # lists, float32, strided views: the same answer as the contiguous float64 vector
    J, g = vg(u)
    ro = u.copy()
    ro.setflags(write=False)
    for form in (u.tolist(), np.repeat(u, 2)[::2], ro):
        J1, g1 = vg(form)
        assert J1 == J and np.array_equal(g1, g)


def test_never_compiles_at_call_time(numba_backend, rng):
    from adjointbench.backends import numba_hand

    p = random_problem96(rng, "state", n=5)
    vg = numba_backend.prepare(p)
    numba_backend.prepare_descent(p, iterations=2, step=1e-6)(p.u0)
    numba_backend.prepare_batch(p)(np.stack([p.u0, p.u0]))
    cost = numba_backend.prepare_cost(p)
    entries = {**numba_hand._group("l96")[0], **numba_hand._group("l96_batch")[0],
               **numba_hand._group("l96_cost")[0]}
    before = {k: len(d.signatures) for k, d in entries.items()}
    for u in (p.u0, p.u0.tolist(), p.u0.astype(np.float32)):
        vg(u)
        cost(u)
    assert {k: len(d.signatures) for k, d in entries.items()} == before == {k: 1 for k in entries}


@pytest.mark.parametrize("control", CONTROLS)
def test_fused_descent_reproduces_python_loop(numba_backend, control, rng):
    problems = [ab.Lorenz96Problem.standard(n=40, nsteps=40, control=control),
                with_ends(random_problem96(rng, control), rng)]
    for p in problems:
        step = 3e-5 if p is problems[0] else 1e-5
        u0 = perturbed(p, rng, 0.01)
        keep = u0.copy()
        fused = numba_backend.prepare_descent(p, iterations=25, step=step)(u0)
        loop = python_descent(numba_backend.prepare(p), u0, iterations=25, step=step)
        np.testing.assert_array_equal(u0, keep)  # the driver works on a copy
        assert fused.u.shape == (p.n_control,) and fused.costs.shape == (25,)
        assert verify.descent_difference(fused, loop) <= 1e-12
        np.testing.assert_allclose(fused.costs, loop.costs, rtol=1e-12)
        if p is problems[0]:
            assert fused.costs[-1] < fused.costs[0]  # the standard problem's descent goes downhill
    with pytest.raises(ValueError):
        numba_backend.prepare_descent(problems[0], iterations=3)(np.zeros(problems[0].n_control + 1))


def _random(model, rng, control):
    if model == "lorenz96":
        return random_problem96(rng, control)
    return random_problem(rng, control, max_steps=60)


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_batch_rows_equal_single_calls(numba_backend, model, control, rng):
    import numba

    p = _random(model, rng, control)
    vgb = numba_backend.prepare_batch(p)
    vg = numba_backend.prepare(p)
    assert vgb.idiom == "threads" and vgb.info["threads"] == numba.get_num_threads()
    for B in (1, 3, 17):
        U = p.u0 * (1 + 0.02 * rng.standard_normal((B, p.n_control)))
        J, G = vgb(U)
        assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
        for b in range(B):
            Jb, gb = vg(U[b])
            assert J[b] == pytest.approx(Jb, rel=1e-14, abs=0)
            np.testing.assert_allclose(G[b], gb, rtol=1e-14, atol=0)
        assert len(set(J.tolist())) == B  # distinct rows, distinct answers
    # lists, Fortran order and read-only arrays are accepted like contiguous writable arrays
    ro = U[::2].copy()
    ro.setflags(write=False)
    for form in (U[::2].tolist(), np.asfortranarray(U[::2]), ro):
        J2, G2 = vgb(form)
        np.testing.assert_array_equal(J2, J[::2])
        np.testing.assert_array_equal(G2, G[::2])


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_batch_honours_thread_count(numba_backend, model, rng):
    import numba

    p = _random(model, rng, "state")
    U = p.u0 * (1 + 0.02 * rng.standard_normal((5, p.n_control)))
    ref = numba_backend.prepare_batch(p)(U)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        vgb = numba_backend.prepare_batch(p)
        assert vgb.info["threads"] == 1
        J, G = vgb(U)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(J, ref[0])
    np.testing.assert_array_equal(G, ref[1])


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_batch_bad_inputs(numba_backend, model, rng):
    p = _random(model, rng, "state+params")
    vgb = numba_backend.prepare_batch(p)
    n = p.n_control
    good = np.tile(p.u0, (3, 1))
    nan_row, inf_row = good.copy(), good.copy()
    nan_row[1, 0] = np.nan
    inf_row[2, -1] = np.inf
    for bad in (np.zeros((3, n + 1)), np.zeros((3, n - 1)), np.zeros(n), np.zeros((0, n)), nan_row, inf_row,
                good.astype(complex), np.zeros((2, 3, n))):
        with pytest.raises(ValueError):
            vgb(bad)


# ---- forward-only cost (prepare_cost) -----------------------------------------------------------


@pytest.mark.parametrize("control", CONTROLS)
def test_cost_equals_gradient_J_and_python_cost(numba_backend, control, rng):
    """The gradient's rk4_step and sums on two state rows: its J to the last bit."""
    for i, n in enumerate([4, 5, 7, 40, int(rng.integers(4, 65))]):
        p = random_problem96(rng, control, n=n)
        if i % 2 == 0:
            p = with_ends(p, rng)
        cost, vg = numba_backend.prepare_cost(p), numba_backend.prepare(p)
        for u in (p.u0, perturbed(p, rng)):
            J = cost(u)
            assert isinstance(J, float)
            assert J == vg(u)[0], (p.label(), p.obs_steps.tolist())
            assert J == pytest.approx(float(p.cost(u)), rel=1e-13)
    # no time step at all: J is the innovation at step 0 (+ background)
    p = random_problem96(rng, control, n=6)
    p = p.with_(obs_steps=[0], obs_values=p.obs_values[:1])
    assert numba_backend.prepare_cost(p)(p.u0) == numba_backend.prepare(p)(p.u0)[0]


def test_cost_inputs(numba_backend, rng):
    p = random_problem96(rng, "state+params", n=7)
    cost = numba_backend.prepare_cost(p)
    u = perturbed(p, rng)
    J = cost(u)
    ro = u.copy()
    ro.setflags(write=False)
    for form in (u.tolist(), tuple(u), np.repeat(u, 2)[::2], ro, u.astype(">f8"), np.asfortranarray(u)):
        assert cost(form) == J, type(form)
    n = p.n_control
    for bad in (np.zeros(n - 1), np.zeros(n + 1), np.zeros((1, n)), np.zeros(n, dtype=complex), np.full(n, np.nan),
                np.r_[np.zeros(n - 1), np.inf], None, "abc", ["a"] * n):
        with pytest.raises(ValueError):
            cost(bad)
    assert cost(u) == J


def test_cost_keeps_no_trajectory(numba_backend, rng):
    """prepare + calls allocate O(N), not (last step + 1) x N like the gradient's trajectory."""
    p = ab.Lorenz96Problem.standard(n=2000, nsteps=400, obs_every=100, spinup=0, seed=int(rng.integers(2**31)))
    numba_backend.prepare_cost(p)  # compiled outside the measurement
    tracemalloc.start()
    try:
        cost = numba_backend.prepare_cost(p)
        J = cost(p.u0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < p.trajectory_bytes / 20, (peak, p.trajectory_bytes)
    assert J == numba_backend.prepare(p)(p.u0)[0]


# ---- batches: memory budget, reused work slots, calls from threads -------------------------------


def test_batch_over_budget_is_value_error(numba_backend, rng):
    from adjointbench.backends import numba_hand

    p = random_problem96(rng, "state+params")
    U = p.u0 * (1 + 0.02 * rng.standard_normal((5, p.n_control)))
    J0, G0 = numba_backend.prepare_batch(p)(U)
    # the budget holds the trajectory (the problem is valid) but not a work slot (+ the work rows)
    tight = p.with_(memory_budget=p.trajectory_bytes)
    with pytest.raises(ab.MemoryBudgetError, match=r"needs at least \d+ bytes.*memory budget of \d+ bytes"):
        numba_backend.prepare_batch(tight)(U)
    # room for exactly one slot and the results: one slot runs every member, the same rows
    slot = 8 * p.n * (p.last_obs_step + 1 + 8)
    one = p.with_(memory_budget=slot + 5 * 8 * (p.n_control + 1))
    J1, G1 = numba_backend.prepare_batch(one)(U)
    np.testing.assert_array_equal(J1, J0)
    np.testing.assert_array_equal(G1, G0)
    with pytest.raises(ab.MemoryBudgetError, match="memory budget"):  # a larger batch's results do not fit as well
        numba_backend.prepare_batch(one)(np.tile(U, (2, 1)))
    # the unit: slots capped by the budget, ValueError before make() is called
    made = []
    slots = numba_hand._Slots(lambda T: made.append(T) or (np.empty((T, 3)),), slot_bytes=100, row_bytes=10,
                              budget=1000)
    assert [slots.count(B, 8) for B in (1, 2, 5, 20, 89)] == [1, 2, 5, 8, 1]
    with pytest.raises(ValueError, match="1100 bytes"):
        slots.count(100, 8)
    assert made == []


def test_batch63_over_budget_is_value_error(numba_backend, rng, monkeypatch):
    p = random_problem(rng, "state+params", max_steps=60)
    U = p.u0 * (1 + 0.02 * rng.standard_normal((4, p.n_control)))
    J0, G0 = numba_backend.prepare_batch(p)(U)
    nstates, k = p.last_obs_step + 1, len(p.obs_steps)
    slot = 8 * (6 * nstates + 3 * k + 6)
    monkeypatch.setenv("ADJOINTBENCH_MEMORY_BUDGET", str(slot - 1))
    with pytest.raises(ab.MemoryBudgetError, match="memory budget"):
        numba_backend.prepare_batch(p)(U)
    monkeypatch.setenv("ADJOINTBENCH_MEMORY_BUDGET", str(slot + 4 * 8 * 7))
    J1, G1 = numba_backend.prepare_batch(p)(U)
    np.testing.assert_array_equal(J1, J0)
    np.testing.assert_array_equal(G1, G0)


def test_slots_reused_unless_busy():
    from adjointbench.backends import numba_hand

    made = []

    def make(T):
        made.append(T)
        return np.empty((T, 4)), np.empty((T, 2, 3))

    slots = numba_hand._Slots(make, slot_bytes=8, row_bytes=8, budget=10**6)
    with slots.take(2) as (a, _):
        first = a
    with slots.take(1) as (a, b):  # the first slots of the cached set, contiguous views
        assert a.base is first.base and a.shape == (1, 4) and b.flags.c_contiguous
    with slots.take(3) as (a, _):  # a larger set replaces the cache
        assert a.shape[0] == 3
        with slots.take(2) as (c, _):  # in use: a fresh set, never the same memory
            assert not np.shares_memory(a, c)
    assert made == [2, 3, 2]
    with pytest.raises(RuntimeError):
        with slots.take(1):
            raise RuntimeError
    with slots.take(3):  # the lock was released by the error
        assert made == [2, 3, 2]


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
def test_batch_from_two_threads(numba_backend, model, rng):
    """Calls of one prepared vgb from two threads: every row its own member's single-call answer."""
    p = _random(model, rng, "state+params")
    vgb, vg = numba_backend.prepare_batch(p), numba_backend.prepare(p)
    Us = [p.u0 * (1 + 0.02 * rng.standard_normal((int(rng.integers(1, 7)), p.n_control))) for _ in range(6)]
    expected = [vgb(U) for U in Us]
    for U, (J, G) in zip(Us, expected, strict=True):
        for b in range(U.shape[0]):
            Jb, gb = vg(U[b])
            assert J[b] == pytest.approx(Jb, rel=1e-14, abs=0)
            np.testing.assert_allclose(G[b], gb, rtol=1e-14, atol=0)

    def work(i):
        return i, vgb(Us[i % 6])

    with ThreadPoolExecutor(2) as pool:
        for i, (J, G) in pool.map(work, range(60)):
            np.testing.assert_array_equal(J, expected[i % 6][0])
            np.testing.assert_array_equal(G, expected[i % 6][1])
