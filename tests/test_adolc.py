"""Backends ``adolc`` (tape replay) and ``adolc-retape``: ADOL-C on both models.

Against complex step on randomised problems (both models, both controls, observations at
step 0 and the last step), batches against single calls, the forward-only J against vg's J,
bad input, and the tape handling: tapes stay in memory (no ADOLC-*.tap file in the cwd, or
anywhere), a tape larger than ADOL-C's default buffers neither spills nor crashes, more live
problems than ADOL-C has Taylor stacks, garbage collection and threads.
"""

import gc
import os
import threading

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import native, verify
from adjointbench.models import Lorenz96Problem
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

NAMES = ["adolc", "adolc-retape"]
#: ADOL-C's default buffer size (OBUFSIZE etc. in adolc/internal/usrparms.h)
DEFAULT_BUFFER = 524288


def _module():
    mod, reason = native.load("_adolc")
    if mod is None:
        pytest.skip(reason)
    return mod


def _ends(p):
    """p observed at step 0 only and at the last step only."""
    out = [p.with_(obs_steps=[0], obs_values=p.obs_values[:1]), p.with_(obs_steps=[p.nsteps], obs_values=p.obs_values[-1:])]
    return out


def _problems63(rng, control):
    ps = [random_problem(rng, control, max_steps=60) for _ in range(3)]
    return ps + _ends(ps[0])


def _problems96(rng, control):
    ps = [random_problem96(rng, control, n=n, max_steps=12) for n in (4, 5, 7, 40, int(rng.integers(4, 30)))]
    return ps + _ends(ps[0])


@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("name", NAMES)
def test_matches_complex_step(name, control, rng):
    b = backend_or_skip(name)
    for p in _problems63(rng, control) + _problems96(rng, control):
        vg = b.prepare(p)
        for u in (p.u0, p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control))):
            res = verify.check_vg(name, vg, p, u)
            assert res.passed, f"{name}: {res} on {p.label()} at u={u.tolist()}"
        J, g = vg(p.u0)
        assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)


@pytest.mark.parametrize("name", NAMES)
def test_info_records_the_tape(name):
    b = backend_or_skip(name)
    for p in (ab.Lorenz63Problem.paper("state+params"), Lorenz96Problem.standard(n=40, nsteps=10)):
        info = b.prepare(p).info
        assert info["tape_bytes"] > 0 and info["tape_ops"] > 0
        assert info["spilled_to_file"] is False


@pytest.mark.parametrize("name", NAMES)
def test_batch_rows_equal_single_calls(name, rng):
    b = backend_or_skip(name)
    assert b.batch_idiom.startswith("native loop")
    for p in (random_problem(rng, "state+params", max_steps=40), random_problem96(rng, "state", max_steps=8),
              random_problem96(rng, "state+params", n=7, max_steps=8)):
        vg, vgb = b.prepare(p), b.prepare_batch(p)
        for B in (1, 3, 17):
            U = p.u0 * (1 + 0.02 * rng.standard_normal((B, p.n_control)))
            J, G = vgb(U)
            assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
            for k in range(B):
                Jk, gk = vg(U[k])
                np.testing.assert_allclose(J[k], Jk, rtol=1e-13)
                np.testing.assert_allclose(G[k], gk, rtol=1e-12, atol=1e-12 * np.abs(gk).max())


@pytest.mark.parametrize("name", NAMES)
def test_cost_equals_vg_value(name, rng):
    b = backend_or_skip(name)
    for p in (random_problem(rng, "state", max_steps=60), random_problem96(rng, "state+params", max_steps=10)):
        assert b.has_cost(p.model)
        J = b.prepare_cost(p)
        vg = b.prepare(p)
        for u in (p.u0, p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control))):
            assert isinstance(J(u), float)
            np.testing.assert_allclose(J(u), vg(u)[0], rtol=1e-13)
            np.testing.assert_allclose(J(u), float(p.cost(u)), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_are_value_errors(name):
    b = backend_or_skip(name)
    for p in (ab.Lorenz63Problem.paper("state+params"), Lorenz96Problem.standard(n=8, nsteps=4, control="state")):
        vg, vgb, J = b.prepare(p), b.prepare_batch(p), b.prepare_cost(p)
        n = p.n_control
        for bad in (np.zeros(n - 1), np.zeros(n + 1), np.zeros((n, 1)), np.zeros(0), np.full(n, np.nan), ["a"] * n,
                    np.zeros(n, dtype=complex)):
            with pytest.raises(ValueError):
                vg(bad)
            with pytest.raises(ValueError):
                J(bad)
        for bad in (np.zeros((0, n)), np.zeros((2, n + 1)), np.zeros(n), np.full((2, n), np.inf)):
            with pytest.raises(ValueError):
                vgb(bad)
        assert np.isfinite(vg(p.u0)[0])  # still usable after the errors


def test_tape_over_the_memory_budget_is_a_value_error():
    b = backend_or_skip("adolc")
    p = Lorenz96Problem.standard(n=64, nsteps=8)
    small = p.with_(memory_budget=(p.last_obs_step + 1) * p.n * 8 + 1000)  # the trajectory fits, the tape does not
    with pytest.raises(ab.MemoryBudgetError, match="memory budget"):
        b.prepare(small)


@pytest.mark.parametrize("name", NAMES)
def test_no_tape_files_in_the_cwd(name, tmp_path, monkeypatch, rng):
    b = backend_or_skip(name)
    mod = _module()
    monkeypatch.chdir(tmp_path)
    for p in (random_problem(rng, "state+params", max_steps=50), random_problem96(rng, "state", max_steps=8)):
        vg = b.prepare(p)
        vg(p.u0)
        b.prepare_batch(p)(np.vstack([p.u0] * 3))
        b.prepare_cost(p)(p.u0)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("ADOLC")]
    assert mod.tape_files() == []


@pytest.mark.parametrize("name", NAMES)
def test_tape_larger_than_a_default_buffer_stays_in_memory(name, tmp_path, monkeypatch, rng):
    b = backend_or_skip(name)
    mod = _module()
    monkeypatch.chdir(tmp_path)
    p = random_problem96(rng, "state+params", n=1500, max_steps=1).with_(nsteps=16)
    p = p.with_(obs_steps=[0, 8, 16], obs_values=np.ones((3, p.obs_indices.size)))
    vg = b.prepare(p)
    assert vg.info["tape_ops"] > DEFAULT_BUFFER and vg.info["tape_locations"] > 2 * DEFAULT_BUFFER
    assert vg.info["spilled_to_file"] is False
    res = verify.check_vg(name, vg, p)
    assert res.passed, res
    assert not os.listdir(tmp_path) and mod.tape_files() == []


def test_more_live_problems_than_taylor_stacks(rng):
    """ADOL-C has 32 Taylor stacks: 40 live prepared problems evict and re-tape, all correct."""
    b = backend_or_skip("adolc")
    mod = _module()
    problems = [random_problem(rng, "state", max_steps=20) for _ in range(40)]
    vgs = [b.prepare(p) for p in problems]
    for _ in range(2):
        for p, vg in zip(problems, vgs, strict=True):
            assert verify.check_vg("adolc", vg, p).passed
    assert len(mod.resident_tags()) <= mod.MAX_RESIDENT


def test_collected_tapes_are_removed(rng):
    b = backend_or_skip("adolc")
    mod = _module()
    p = random_problem(rng, "state", max_steps=20)
    before = set(mod.resident_tags())
    vg = b.prepare(p)
    vg(p.u0)
    del vg
    gc.collect()
    b.prepare(p)(p.u0)  # the next call into ADOL-C removes the collected tape
    assert len(set(mod.resident_tags()) - before) <= 1


def test_threads_share_adolc_safely(rng):
    b = backend_or_skip("adolc")
    problems = [random_problem96(rng, "state", n=int(rng.integers(4, 20)), max_steps=10) for _ in range(4)]
    vgs = [b.prepare(p) for p in problems]
    expected = [vg(p.u0) for p, vg in zip(problems, vgs, strict=True)]
    errors = []

    def work(k):
        try:
            for _ in range(20):
                J, g = vgs[k](problems[k].u0)
                assert J == expected[k][0] and np.array_equal(g, expected[k][1])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
