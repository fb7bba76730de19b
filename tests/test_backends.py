"""The contract every gradient backend must meet, run for each registered backend.

New backends are picked up automatically: vs complex step <= 1e-10 on randomised problems
(both controls, observations at step 0 and the last step), size validation, repeated calls,
and, where a backend has one, its fused driver against the Python-driven loop.
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import all_backends, python_descent
from adjointbench.testing import random_problem

from conftest import backend_or_skip

GRADIENT_BACKENDS = [b.name for b in all_backends() if b.kind != "reference"]


def max_steps(name):
    """Short windows for backends marked slow (eager JAX costs ~10 ms per time step)."""
    return 20 if ab.backend(name).slow else 250


def prepared_or_skip(name, problem, **kw):
    return backend_or_skip(name).prepare(problem, **kw)


@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("name", GRADIENT_BACKENDS)
def test_matches_complex_step_on_random_problems(name, control, rng):
    problems = [random_problem(rng, control, max_steps=max_steps(name)) for _ in range(5)]
    # the ends of the window are always covered: one problem observed at 0 only, one at nsteps only
    p = problems[0]
    problems.append(p.with_(obs_steps=[0], obs_values=p.obs_values[:1]))
    problems.append(p.with_(obs_steps=[p.nsteps], obs_values=p.obs_values[-1:]))
    problems.append(p.with_(nsteps=1, obs_steps=[0, 1], obs_values=np.vstack([p.obs_values[:1]] * 2)))
    for problem in problems:
        vg = prepared_or_skip(name, problem)
        for u in (problem.u0, problem.u0 * (1 + 0.01 * rng.standard_normal(problem.n_control))):
            res = verify.check_vg(name, vg, problem, u)
            assert res.passed, f"{name}: {res} on {problem.to_json()} at u={u.tolist()}"


@pytest.mark.parametrize("name", GRADIENT_BACKENDS)
def test_paper_problem(name):
    for control in ab.CONTROLS:
        p = ab.Lorenz63Problem.paper(control)
        vg = prepared_or_skip(name, p)
        J, g = vg(p.u0)
        assert isinstance(J, float)
        assert isinstance(g, np.ndarray) and g.dtype == np.float64 and g.shape == (p.n_control,)
        assert verify.check_vg(name, vg, p).passed


@pytest.mark.parametrize("name", GRADIENT_BACKENDS)
def test_wrong_sizes_are_value_errors(name):
    p = ab.Lorenz63Problem.paper("state+params")
    vg = prepared_or_skip(name, p)
    for bad in (np.zeros(3), np.zeros(7), np.zeros((6, 1)), np.zeros(0), [1.0] * 5):
        with pytest.raises(ValueError):
            vg(bad)
    with pytest.raises(ValueError):
        vg(np.full(6, np.nan))
    # still correct afterwards
    assert verify.check_vg(name, vg, p).passed


@pytest.mark.parametrize("name", GRADIENT_BACKENDS)
def test_calls_do_not_interfere(name, rng):
    """Two prepared problems used alternately keep giving their own answers."""
    a = random_problem(rng, "state+params", max_steps=max_steps(name))
    b = random_problem(rng, "state", max_steps=max_steps(name))
    va, vb = prepared_or_skip(name, a), prepared_or_skip(name, b)
    ja, ga = va(a.u0)
    jb, gb = vb(b.u0)
    for _ in range(2):
        assert va(a.u0)[0] == ja and np.array_equal(va(a.u0)[1], ga)
        assert vb(b.u0)[0] == jb and np.array_equal(vb(b.u0)[1], gb)


@pytest.mark.parametrize("name", [n for n in GRADIENT_BACKENDS if ab.backend(n).fused])
def test_fused_driver_matches_python_loop(name, rng):
    """Same iterates as the Python loop: bit for bit for the native drivers; for XLA (which
    may contract u - step*g into an FMA or fuse the gradient differently) within 100x of how far
    one-ulp gradient changes move the Python loop itself (verify.descent_rounding_floor)."""
    b = backend_or_skip(name)
    for problem in (ab.Lorenz63Problem.paper(), random_problem(rng, "state")):
        step = 5e-4 if problem.nsteps == 200 else 1e-5
        run = b.prepare_descent(problem, iterations=101, step=step)
        fused = run(problem.u0)
        vg = b.prepare(problem)
        ref = python_descent(vg, problem.u0, iterations=101, step=step)
        floor = verify.descent_rounding_floor(vg, problem.u0, 101, step)
        diff = verify.descent_difference(fused, ref)
        assert diff <= max(1e-12, 100 * floor), f"{name}: fused differs by {diff:.3g} (rounding floor {floor:.3g})"
        with pytest.raises(ValueError):
            run(np.zeros(5))


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        ab.backend("nope")


def test_no_fused_driver_is_a_value_error():
    with pytest.raises(ValueError, match="no fused descent driver"):
        ab.backend("numpy").prepare_descent(ab.Lorenz63Problem.paper())


def test_prepare_rejects_non_problems():
    with pytest.raises(ValueError):
        ab.backend("numpy").prepare({"dt": 0.01})
    with pytest.raises(ValueError, match="dtype"):
        ab.backend("numpy").prepare(ab.Lorenz63Problem.paper(), dtype="float16")
    with pytest.raises(ValueError, match="device"):
        ab.backend("numpy").prepare(ab.Lorenz63Problem.paper(), device="tpu")


def test_python_descent_decreases_cost():
    p = ab.Lorenz63Problem.paper()
    res = python_descent(ab.backend("numpy").prepare(p), p.u0)
    assert len(res.costs) == 101 and res.costs[-1] < res.costs[0]
