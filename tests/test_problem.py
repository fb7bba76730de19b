import json

import numpy as np
import pytest

from adjointbench import Lorenz63Problem
from adjointbench.model import trajectory
from adjointbench.problem import PAPER_TRUTH_PARAMS


def test_paper_setup():
    p = Lorenz63Problem.paper()
    assert p.dt == 0.01 and p.nsteps == 200 and p.control == "state"
    assert p.obs_steps.tolist() == [60, 120, 180]
    np.testing.assert_array_equal(p.u0, [1.1, 3.3, 5.5])
    truth = trajectory(np.array([1.0, 3.0, 5.0]), 10.0, 32.0, 8 / 3, 0.01, 200)
    np.testing.assert_array_equal(p.obs_values, truth[[60, 120, 180]])
    q = Lorenz63Problem.paper("state+params")
    np.testing.assert_array_equal(q.u0, [1.1, 3.3, 5.5, 11.0, 30.0, 2.0])
    assert p.params == PAPER_TRUTH_PARAMS


def test_paper_noise_is_seeded():
    a = Lorenz63Problem.paper(noise=0.5, seed=3)
    b = Lorenz63Problem.paper(noise=0.5, seed=3)
    c = Lorenz63Problem.paper(noise=0.5, seed=4)
    np.testing.assert_array_equal(a.obs_values, b.obs_values)
    assert not np.allclose(a.obs_values, c.obs_values)
    assert not np.allclose(a.obs_values, Lorenz63Problem.paper().obs_values)


def test_u0_is_a_copy():
    p = Lorenz63Problem.paper()
    u = p.u0
    u[0] = 99
    assert p.u0[0] == 1.1


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_json_round_trip(rng, control):
    from adjointbench.testing import random_problem

    p = random_problem(rng, control)
    q = Lorenz63Problem.from_json(p.to_json())
    assert q.to_dict() == p.to_dict()
    noisy = Lorenz63Problem.paper(control, noise=0.1, seed=7)
    r = Lorenz63Problem.from_json(noisy.to_json())
    assert (r.noise, r.seed) == (0.1, 7)
    np.testing.assert_array_equal(r.obs_values, noisy.obs_values)


def good(**changes):
    d = Lorenz63Problem.paper().to_dict()
    d.update(changes)
    return d


BAD = [
    (good(dt=0.0), "dt must be > 0"),
    (good(dt=-0.01), "dt must be > 0"),
    (good(dt=float("nan")), "dt must be finite"),
    (good(dt="0.01"), "dt must be a real number"),
    (good(nsteps=0), "nsteps must be >= 1"),
    (good(nsteps=2.5), "nsteps must be an integer"),
    (good(nsteps=True), "nsteps must be an integer"),
    (good(nsteps=10**9), "nsteps must be <="),
    (good(x0=[1.0, 2.0]), "x0 must have shape (3,)"),
    (good(x0=[1.0, float("inf"), 2.0]), "x0 must be finite"),
    (good(x0=["a", 1, 2]), "x0 must be an array of real numbers"),
    (good(params={"sigma": 10, "r": 28}), "params must have exactly the keys"),
    (good(params={"sigma": 10, "r": 28, "beta": float("nan")}), "params.beta must be finite"),
    (good(control="params"), "unknown control"),
    (good(model="lorenz96"), "unknown model"),
    (good(obs={"steps": [60, 120, 201], "values": [[0, 0, 0]] * 3}), "outside 0..nsteps"),
    (good(obs={"steps": [-1, 120], "values": [[0, 0, 0]] * 2}), "outside 0..nsteps"),
    (good(obs={"steps": [120, 60], "values": [[0, 0, 0]] * 2}), "sorted"),
    (good(obs={"steps": [60, 60], "values": [[0, 0, 0]] * 2}), "repeated"),
    (good(obs={"steps": [60, 120], "values": [[0, 0, 0]] * 3}), "obs.values must have shape (2, 3)"),
    (good(obs={"steps": [60], "values": [[0, 0]]}), "obs.values must have shape (1, 3)"),
    (good(obs={"steps": [], "values": []}), "at least one observation"),
    (good(obs={"steps": [60]}), "obs must be an object"),
    (good(obs={"steps": [60], "values": [[0, 0, float("nan")]]}), "obs.values must be finite"),
    (good(extra=1), "unknown problem key"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_invalid_problem_is_value_error(data, message):
    with pytest.raises(ValueError, match=None) as e:
        Lorenz63Problem.from_dict(data)
    assert message in str(e.value)


def test_malformed_json():
    with pytest.raises(ValueError, match="malformed problem JSON"):
        Lorenz63Problem.from_json("{not json")
    with pytest.raises(ValueError, match="JSON object"):
        Lorenz63Problem.from_json(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="missing key"):
        Lorenz63Problem.from_json("{}")


def test_load_unreadable(tmp_path):
    with pytest.raises(ValueError, match="cannot read problem file"):
        Lorenz63Problem.load(tmp_path / "nope.json")


def test_check_control():
    p = Lorenz63Problem.paper()
    for bad in ([1.0, 2.0], np.zeros(6), np.zeros((3, 1)), [1.0, np.nan, 2.0], np.array([1j, 0, 0]), ["a", "b", "c"]):
        with pytest.raises(ValueError):
            p.check_control(bad)
    assert p.check_control([1, 2, 3]).dtype == np.float64
