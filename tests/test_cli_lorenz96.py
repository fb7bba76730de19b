"""The CLI on Lorenz-96: problem files in, the DESIGN.md grad object out, one line and exit 2 on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.models import Lorenz96Problem
from adjointbench.testing import random_problem96

HAND = ["numpy", "numba", "cython"]


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "adjointbench", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def one_line_error(rc, out, err):
    assert rc == 2, (rc, out, err)
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_problem_command_writes_the_standard_problem(tmp_path):
    rc, out, err = cli("problem", "lorenz96", "--n", "12", "--nsteps", "9", "--obs-every", "3", "--seed", "4",
                       "--control", "state+params", "--no-background")
    assert rc == 0, err
    d = json.loads(out)
    assert d["model"] == "lorenz96" and d["n"] == 12 and d["nsteps"] == 9 and d["background"] is None
    assert d["obs"]["steps"] == [3, 6, 9] and d["control"] == "state+params"
    p = ab.problem_from_json(out)
    ref = Lorenz96Problem.standard(n=12, nsteps=9, obs_every=3, seed=4, control="state+params", background=False)
    assert p.to_dict() == ref.to_dict()


@pytest.mark.parametrize("name", HAND)
def test_grad_json_agrees_with_an_independent_complex_step(tmp_path, rng, name):
    b = ab.backend(name)
    ok, why = b.available()
    if not ok or not b.supports("lorenz96")[0]:
        pytest.skip(why or b.supports("lorenz96")[1])
    for i, n in enumerate([4, int(rng.integers(5, 60)), 100_000 + int(rng.integers(1000))]):
        control = ("state", "state+params")[i % 2 if n < 1000 else int(rng.integers(2))]
        if n < 1000:
            p = random_problem96(rng, control, n=n)
        else:
            p = Lorenz96Problem.standard(n=n, nsteps=3, obs_every=1, spinup=5, control=control,
                                         seed=int(rng.integers(1 << 30)))
        path = tmp_path / f"p{i}.json"
        p.save(path)
        rc, out, err = cli("grad", "--backend", name, "--problem", str(path), "--json")
        assert rc == 0, err
        res = json.loads(out)
        expected_keys = ["x0", "F"] if control == "state+params" else ["x0"]
        assert list(res) == ["backend", "model", "J", "grad"] and list(res["grad"]) == expected_keys
        assert res["backend"] == name and res["model"] == "lorenz96" and len(res["grad"]["x0"]) == n
        g = np.array(res["grad"]["x0"] + ([res["grad"]["F"]] if control == "state+params" else []))
        q = ab.load_problem(path)  # independent of the backend: the Python cost, complex step
        assert abs(res["J"] - float(q.cost(q.u0))) <= 1e-12 * abs(res["J"])
        if n <= 64:
            g_ref = verify.complex_step_gradient(q.cost, q.u0)
            assert verify.relative_error(g, g_ref) <= 1e-10
        else:
            assert verify.directional_error(q, q.u0, g, seed=int(rng.integers(1 << 30))) <= 1e-10


def _write(tmp_path, d, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return str(path)


def _small():
    return Lorenz96Problem.standard(n=6, nsteps=8).to_dict()


BAD = {
    "short x0": lambda d: d.update(x0=d["x0"][:-1]),
    "short background": lambda d: d["background"].update(values=d["background"]["values"][:-1]),
    "short obs row": lambda d: d["obs"]["values"][0].pop(),
    "missing obs row": lambda d: d["obs"]["values"].pop(),
    "index outside": lambda d: d["obs"].update(indices=[0, 2, d["n"]]),
    "negative index": lambda d: d["obs"].update(indices=[-1, 2, 4]),
    "repeated index": lambda d: d["obs"].update(indices=[0, 2, 2]),
    "n < 4": lambda d: d.update(n=3, x0=d["x0"][:3]),
    "unknown scheme": lambda d: d.update(scheme="rk3"),
    "step outside": lambda d: d["obs"].update(steps=[4, d["nsteps"] + 1]),
    "string number": lambda d: d.update(dt="0.05"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    d = _small()
    BAD[case](d)
    one_line_error(*cli("grad", "--backend", "numpy", "--problem", _write(tmp_path, d), "--json"))


def test_non_finite_numbers_anywhere(tmp_path):
    for where in ("x0", "background", "obs", "F"):
        d = _small()
        text = json.dumps(d)
        if where == "x0":
            d["x0"][2] = 123.25
        elif where == "background":
            d["background"]["values"][2] = 123.25
        elif where == "obs":
            d["obs"]["values"][1][1] = 123.25
        else:
            d["params"]["F"] = 123.25
        text = json.dumps(d).replace("123.25", "NaN")
        path = tmp_path / f"{where}.json"
        path.write_text(text)
        one_line_error(*cli("grad", "--backend", "numpy", "--problem", str(path)))


def test_bad_input_at_a_million_variables(tmp_path, rng):
    n = 10**6
    x = (8 + rng.standard_normal(n)).tolist()
    base = {"model": "lorenz96", "n": n, "dt": 0.05, "nsteps": 2, "x0": x, "params": {"F": 8.0},
            "obs": {"steps": [1, 2], "indices": list(range(0, n, 2)), "values": [x[::2], x[::2]]}}
    cases = {
        "short": {**base, "x0": x[:-1]},
        "nan": {**base, "x0": x[:500] + [float("nan")] + x[501:]},
        "repeated": {**base, "obs": {**base["obs"], "indices": [0, 0] + base["obs"]["indices"][2:]}},
    }
    for name, d in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(d))  # json.dumps writes NaN, which is not JSON: rejected too
        rc, out, err = cli("grad", "--backend", "numpy", "--problem", str(path), "--json")
        one_line_error(rc, out, err)
        assert len(err) < 400


def test_non_finite_result_is_an_error_not_a_number(tmp_path):
    # observations made with dt = 0.05, assimilated with dt = 1: the RK4 trajectory overflows
    p = Lorenz96Problem.standard(n=8, nsteps=40).with_(dt=1.0)
    path = tmp_path / "diverges.json"
    p.save(path)
    rc, out, err = cli("grad", "--backend", "numpy", "--problem", str(path), "--json")
    one_line_error(rc, out, err)
    assert "non-finite" in err and "numpy" in err


def test_grad_model_default_and_unsupported_backend(tmp_path):
    rc, out, err = cli("grad", "--backend", "numpy", "--model", "lorenz96", "--json")
    assert rc == 0, err
    assert len(json.loads(out)["grad"]["x0"]) == 40
    rc, out, err = cli("grad", "--backend", "fd", "--model", "lorenz96", "--control", "state+params", "--json")
    assert rc == 0 and "F" in json.loads(out)["grad"]


def test_check_model_lorenz96():
    rc, out, err = cli("check", "--model", "lorenz96", "--backend", "numpy", "--backend", "complex-step")
    assert rc == 0, out + err
    assert out.count("pass") == 2 and out.startswith("lorenz96 n=40")
