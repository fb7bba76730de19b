"""The contract on Lorenz-96 and on batches, for every registered backend that declares the model.

New backends are picked up automatically (as tests/test_backends.py does for Lorenz-63): the
gradient against complex step on randomised problems (both controls, with and without a
background, observations at step 0 and at the last step), batch rows against single calls for
B in {1, 3, 17} on both models, bad batches as ValueErrors, the forward-only J against the
gradient call's, and a non-finite result reported as an error by the CLI.
"""

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import all_backends
from adjointbench.cli import main
from adjointbench.models import Lorenz96Problem
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

L96 = [b.name for b in all_backends() if not b.reference and "lorenz96" in b.models]
ALL = [b.name for b in all_backends() if not b.reference]


def _steps(name: str) -> int:
    return 4 if ab.backend(name).slow else 25


def _usable(name: str, model: str = "lorenz96"):
    b = backend_or_skip(name)
    ok, why = b.supports(model)
    if not ok:
        pytest.skip(why)
    return b


@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("name", L96)
def test_lorenz96_matches_complex_step(name, control, rng):
    b = _usable(name)
    problems = [random_problem96(rng, control, n=n, max_steps=_steps(name), background=bg)
                for n, bg in ((4, True), (5, False), (7, None), (40, None), (None, None))]
    p = problems[-1]
    problems.append(p.with_(obs_steps=[0], obs_values=p.obs_values[:1]))
    problems.append(p.with_(obs_steps=[p.nsteps], obs_values=p.obs_values[-1:]))
    for problem in problems:
        r = verify.check_vg(name, b.prepare(problem), problem)
        assert r.passed, (name, problem.label(), r)


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
@pytest.mark.parametrize("name", ALL)
def test_batch_rows_equal_single_calls(name, model, rng):
    b = _usable(name, model)
    control = ("state", "state+params")[int(rng.integers(2))]
    # slow (eager) backends: short windows, the loop over 21 single calls is most of the time
    p = (random_problem96(rng, control, max_steps=_steps(name)) if model == "lorenz96"
         else random_problem(rng, control, max_steps=_steps(name) if b.slow else 4 * _steps(name)))
    vg, vgb = b.prepare(p), b.prepare_batch(p)
    assert isinstance(vgb.idiom, str) and vgb.idiom
    for B in (1, 3, 17):
        U = p.u0 + 0.05 * np.abs(p.u0).max() * rng.standard_normal((B, p.n_control))
        J, G = vgb(U)
        assert np.shape(J) == (B,) and np.shape(G) == (B, p.n_control)
        for i in range(B):
            Ji, gi = vg(U[i])
            assert abs(J[i] - Ji) <= 1e-12 * abs(Ji), (name, B, i)
            assert verify.relative_error(G[i], gi) <= 1e-12, (name, B, i)


@pytest.mark.parametrize("name", ALL)
def test_bad_batches_are_value_errors(name):
    b = _usable(name, "lorenz96")
    p = Lorenz96Problem.standard(n=6, nsteps=4)
    vgb = b.prepare_batch(p)
    bad = [np.zeros((0, 6)), np.zeros((2, 7)), np.zeros(6), np.zeros((2, 6, 1)), np.full((2, 6), np.nan),
           np.zeros((2, 6), dtype=complex), np.array([["a"] * 6])]
    for U in bad:
        with pytest.raises(ValueError):
            vgb(U)


def _with_cost(name: str, model: str):
    b = _usable(name, model)
    if not b.has_cost(model):
        pytest.skip(f"{name} has no forward-only cost for {model}")
    return b


def _cost_problem(rng, name: str, model: str, control: str):
    return (random_problem96(rng, control, max_steps=_steps(name)) if model == "lorenz96"
            else random_problem(rng, control, max_steps=4 * _steps(name)))


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
@pytest.mark.parametrize("name", ALL)
def test_forward_only_cost_equals_the_gradient_calls_J(name, model, rng):
    b = _with_cost(name, model)
    for control in ("state", "state+params"):
        p = _cost_problem(rng, name, model, control)
        J = b.prepare_cost(p)(p.u0)
        Jg, _ = b.prepare(p)(p.u0)
        assert isinstance(J, float)
        assert abs(J - Jg) <= 1e-12 * abs(Jg) and abs(J - float(p.cost(p.u0))) <= 1e-11 * abs(Jg)
        with pytest.raises(ValueError):
            b.prepare_cost(p)(np.zeros(p.n_control + 1))


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
@pytest.mark.parametrize("name", ALL)
def test_batched_forward_cost_equals_the_batch_gradients_J(name, model, rng):
    """``prepare_cost_batch``: J[B] of the batch gradient's rows, by the gradient batch's own idiom
    (the scaling study's gradient/forward ratio of an ensemble divides only like by like)."""
    b = _with_cost(name, model)
    p = _cost_problem(rng, name, model, ("state", "state+params")[int(rng.integers(2))])
    costs, vgb = b.prepare_cost_batch(p), b.prepare_batch(p)
    assert costs.idiom == vgb.idiom, (name, costs.idiom, vgb.idiom)
    for B in (1, 5):
        U = p.u0 + 0.05 * np.abs(p.u0).max() * rng.standard_normal((B, p.n_control))
        J, (Jg, _) = costs(U), vgb(U)
        assert np.shape(J) == (B,)
        assert np.all(np.abs(J - Jg) <= 1e-12 * np.abs(Jg)), (name, B, J, Jg)
    for U in (np.zeros((0, p.n_control)), np.zeros((2, p.n_control + 1)), np.full((2, p.n_control), np.nan)):
        with pytest.raises(ValueError):
            costs(U)


#: native backends whose forward-only batch runs by their gradient batch's idiom (OpenMP threads):
#: without it the scaling study has no cheap-gradient ratio for their ensembles
OWN_BATCHED_FORWARD = ("numba", "cython", "fortran")


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
@pytest.mark.parametrize("name", OWN_BATCHED_FORWARD)
def test_native_batched_forward_runs_by_the_gradient_batch_idiom(name, model, rng):
    b = _with_cost(name, model)
    p = _cost_problem(rng, name, model, "state")
    vgb = b.prepare_batch(p)
    if vgb.info.get("openmp") is False:
        pytest.skip(f"{name} was built without OpenMP: both batches are native loops")
    costs = b.prepare_cost_batch(p)
    assert costs.idiom == vgb.idiom == "threads" or (name == "numba" and costs.idiom == vgb.idiom)
    U = p.u0 + 0.01 * rng.standard_normal((7, p.n_control))
    single = b.prepare_cost(p)
    assert np.array_equal(costs(U), np.array([single(u) for u in U]))  # the same kernel: to the bit


@pytest.mark.parametrize("model", ["lorenz63", "lorenz96"])
@pytest.mark.parametrize("name", ALL)
def test_non_finite_result_is_an_error(name, model, tmp_path, capsys):
    """An overflowing trajectory: one line naming the backend, exit 2, never a NaN printed."""
    _usable(name, model)
    if model == "lorenz96":  # observed with dt = 0.05, assimilated with dt = 1
        p = Lorenz96Problem.standard(n=8, nsteps=12 if ab.backend(name).slow else 40).with_(dt=1.0)
    else:  # the paper's truth observed with dt = 0.01, assimilated with dt = 0.2
        p = ab.Lorenz63Problem.paper().with_(dt=0.2)
    path = tmp_path / "diverges.json"
    p.save(path)
    assert main(["grad", "--backend", name, "--problem", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "non-finite" in err and name in err
