"""Lorenz96Problem: the DESIGN.md set-up, validation of every field, the JSON format, the budget."""

import json
import time

import numpy as np
import pytest

import adjointbench as ab
from adjointbench.models import Lorenz96Problem, load_problem, problem_from_dict
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem96


def test_standard_follows_design():
    p = Lorenz96Problem.standard(n=40, nsteps=40, seed=3)
    assert (p.n, p.dt, p.nsteps, p.F, p.scheme, p.control) == (40, 0.05, 40, 8.0, "rk4", "state")
    assert p.obs_steps.tolist() == list(range(4, 41, 4))
    assert p.obs_indices.tolist() == list(range(0, 40, 2))
    assert p.sigma_o == 1.0 and p.sigma_b == 1.0
    np.testing.assert_array_equal(p.x0, p.background)  # first guess = background
    # rebuild the draws in the documented order: xi, spin-up, eps, eta
    rng = np.random.default_rng(3)
    truth0 = l96.integrate(8.0 + 0.01 * rng.standard_normal(40), 8.0, 0.05, 500)
    y = l96.observe(truth0, 8.0, 0.05, p.obs_steps, p.obs_indices) + rng.standard_normal((10, 20))
    np.testing.assert_array_equal(p.obs_values, y)
    np.testing.assert_array_equal(p.background, truth0 + rng.standard_normal(40))
    # on the attractor after the spin-up, not near the unstable equilibrium x = F
    assert np.std(truth0) > 1.0


def test_standard_options():
    p = Lorenz96Problem.standard(n=7, nsteps=9, seed=1, obs_every=3, background=False, control="state+params")
    assert p.obs_steps.tolist() == [3, 6, 9] and p.obs_indices.tolist() == [0, 2, 4, 6]
    assert p.background is None and p.n_control == 8 and p.u0[-1] == 8.0
    assert not np.array_equal(Lorenz96Problem.standard(seed=1).x0, Lorenz96Problem.standard(seed=2).x0)


def test_standard_at_a_million_variables_takes_seconds():
    t0 = time.perf_counter()
    p = Lorenz96Problem.standard(n=10**6, nsteps=4, seed=0)
    assert time.perf_counter() - t0 < 60  # "seconds, not minutes" (typically ~10 s on 2 cores)
    assert p.n == 10**6 and p.obs_values.shape == (1, 500_000)


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_json_round_trip(rng, control):
    for _ in range(5):
        p = random_problem96(rng, control)
        q = ab.problem_from_json(p.to_json())
        assert isinstance(q, Lorenz96Problem) and q.to_dict() == p.to_dict()
        assert q.cost(q.u0) == p.cost(p.u0)


def test_file_optional_keys(tmp_path):
    d = Lorenz96Problem.standard(n=5, nsteps=4).to_dict()
    del d["scheme"], d["obs"]["sigma"]
    d["background"] = None
    p = problem_from_dict(d)
    assert p.scheme == "rk4" and p.sigma_o == 1.0 and p.background is None
    del d["background"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    assert load_problem(path).background is None


def _standard_dict():
    return Lorenz96Problem.standard(n=6, nsteps=8, seed=0).to_dict()


def _set(path, value):
    def change(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return d
    return change


BAD = [
    (_set(["n"], 3), "n must be >= 4"),
    (_set(["n"], 6.5), "n must be an integer"),
    (_set(["n"], True), "n must be an integer"),
    (_set(["dt"], 0.0), "dt must be > 0"),
    (_set(["dt"], "0.05"), "dt must be a real number"),
    (_set(["nsteps"], 0), "nsteps must be >= 1"),
    (_set(["scheme"], "euler"), "unknown scheme"),
    (_set(["control"], "params"), "unknown control"),
    (_set(["x0"], [1.0] * 5), "x0 must have 6 entries"),
    (_set(["x0"], [1.0] * 5 + ["a"]), "x0 must be a list of real numbers"),
    (_set(["x0"], [1.0] * 5 + [True]), "x0 must hold real numbers"),
    (_set(["x0"], [[1.0] * 6]), "x0 must be a list of real numbers"),
    (_set(["params"], {"F": 8.0, "G": 1.0}), 'exactly the key "F"'),
    (_set(["params", "F"], None), "params.F must be a real number"),
    (_set(["background", "values"], [0.0] * 7), "background.values must have 6 entries"),
    (_set(["background", "sigma"], -1.0), "background.sigma must be > 0"),
    (_set(["background"], [0.0] * 6), "background must be null or an object"),
    (_set(["obs", "sigma"], 0.0), "obs.sigma must be > 0"),
    (_set(["obs", "steps"], [4, 4]), "obs.steps entry 4 is repeated"),
    (_set(["obs", "steps"], [8, 4]), "strictly increasing"),
    (_set(["obs", "steps"], [4, 9]), "outside 0..nsteps=8"),
    (_set(["obs", "steps"], [-1, 4]), "outside 0..nsteps=8"),
    (_set(["obs", "steps"], []), "obs.steps must not be empty"),
    (_set(["obs", "steps"], [4.5, 8]), "obs.steps must hold integers"),
    (_set(["obs", "indices"], [0, 2, 6]), "outside 0..n-1=5"),
    (_set(["obs", "indices"], [0, 2, 2]), "obs.indices entry 2 is repeated"),
    (_set(["obs", "indices"], [2, 0, 4]), "strictly increasing"),
    (_set(["obs", "values"], [[1.0, 2.0, 3.0]]), "obs.values must have 2 rows"),
    (_set(["obs", "values"], [[1.0, 2.0], [3.0, 4.0]]), "of 3 numbers"),
    (_set(["obs", "values"], [1.0, 2.0, 3.0]), "obs.values must be a list of lists"),
    (_set(["obs", "indices"], KeyError), 'obs must be an object with "steps", "indices"'),
    (_set(["obs", "extra"], 1), "unknown obs key"),
    (_set(["extra"], 1), "unknown problem key"),
    (_set(["x0"], KeyError), "missing key(s): x0"),
]


@pytest.mark.parametrize("change,message", BAD)
def test_invalid_problem_is_value_error_naming_the_field(change, message):
    with pytest.raises(ValueError, match=None) as e:
        problem_from_dict(change(_standard_dict()))
    assert message in str(e.value)


def test_non_finite_anywhere_is_rejected():
    text = Lorenz96Problem.standard(n=6, nsteps=8).to_json()
    for bad in ("NaN", "Infinity", "-Infinity"):
        d = json.loads(text)
        d["x0"][3] = 0.0
        spliced = json.dumps(d).replace("0.0", bad, 1)
        with pytest.raises(ValueError, match="non-finite|not a JSON number"):
            ab.problem_from_json(spliced)
    with pytest.raises(ValueError, match="finite"):
        Lorenz96Problem.standard(n=6, nsteps=8).with_(obs_values=np.full((2, 3), np.inf))
    with pytest.raises(ValueError, match="finite"):
        Lorenz96Problem.standard(n=6, nsteps=8).with_(background=np.r_[np.zeros(5), np.nan])


def test_memory_budget_refuses_before_allocating(monkeypatch):
    p = Lorenz96Problem.standard(n=8, nsteps=8)
    need = 8 * 8 * (p.last_obs_step + 1)
    assert p.trajectory_bytes == need
    with pytest.raises(ValueError, match=f"would need {need} bytes"):
        p.with_(memory_budget=need - 1)
    assert p.with_(memory_budget=need).n == 8
    # 10^9 variables x 41 states = 328 GB: refused at once, nothing of that size allocated
    t0 = time.perf_counter()
    with pytest.raises(ab.MemoryBudgetError, match="memory budget"):
        Lorenz96Problem.standard(n=10**9, nsteps=40)
    assert time.perf_counter() - t0 < 5
    monkeypatch.setenv("ADJOINTBENCH_MEMORY_BUDGET", str(need - 1))
    with pytest.raises(ValueError, match="ADJOINTBENCH_MEMORY_BUDGET"):
        Lorenz96Problem.standard(n=8, nsteps=8)


def test_check_control():
    p = Lorenz96Problem.standard(n=5, nsteps=4, control="state+params")
    assert p.check_control(list(p.u0)).dtype == np.float64
    for bad in (np.zeros(5), np.zeros((6, 1)), np.r_[np.zeros(5), np.nan], np.zeros(6, complex)):
        with pytest.raises(ValueError, match="control vector"):
            p.check_control(bad)


def test_lorenz63_files_still_load_and_dispatch(tmp_path):
    p63 = ab.Lorenz63Problem.paper()
    path = tmp_path / "p.json"
    p63.save(path)
    assert isinstance(ab.load_problem(path), ab.Lorenz63Problem)
    d = p63.to_dict()
    del d["model"]  # files written before "model" was required
    assert isinstance(problem_from_dict(d), ab.Lorenz63Problem)
    with pytest.raises(ValueError, match="unknown model"):
        problem_from_dict({**d, "model": "lorenz05"})
    with pytest.raises(ValueError, match="not a lorenz63 problem"):
        ab.Lorenz63Problem.from_json(Lorenz96Problem.standard(n=4, nsteps=4).to_json())
