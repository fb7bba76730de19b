import json
import subprocess
import sys

import numpy as np
import pytest

from adjointbench import Lorenz63Problem, verify
from adjointbench.cli import main
from adjointbench.testing import random_problem


def cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "adjointbench", *args], capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def test_console_script_installed():
    r = subprocess.run(["adjointbench", "backends"], capture_output=True, text=True)
    assert r.returncode == 0 and "numpy" in r.stdout


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_round_trip_problem_to_grad(tmp_path, control):
    rc, out, err = cli("problem", "paper", "--control", control, "--noise", "0.2", "--seed", "5")
    assert rc == 0, err
    path = tmp_path / "p.json"
    path.write_text(out)
    rc, out, err = cli("grad", "--backend", "numpy", "--problem", str(path), "--json")
    assert rc == 0, err
    res = json.loads(out)
    problem = Lorenz63Problem.load(path)
    J, g = verify.reference(problem)
    assert res["backend"] == "numpy" and list(res["grad"]) == list(problem.names)
    assert abs(res["J"] - J) <= 1e-12 * J
    assert verify.relative_error(np.array(list(res["grad"].values())), g) <= 1e-10


def test_grad_on_unseen_random_problems(tmp_path, rng):
    for control in ("state", "state+params"):
        problem = random_problem(rng, control)
        path = tmp_path / f"{control}.json"
        problem.save(path)
        assert main(["grad", "--backend", "numpy", "--problem", str(path), "--json"]) == 0


def test_backends_json():
    rc, out, _ = cli("backends", "--json")
    rows = json.loads(out)
    assert rc == 0 and {"name", "kind", "available", "reason"} <= set(rows[0])
    assert [r for r in rows if r["name"] == "numpy"][0]["available"] is True


def test_check_passes_numpy_and_fails_fd():
    rc, out, _ = cli("check", "--backend", "numpy")
    assert rc == 0 and "pass" in out
    rc, out, _ = cli("check", "--backend", "fd")
    assert rc == 1 and "FAIL" in out


def bad_files(tmp_path):
    good = Lorenz63Problem.paper().to_dict()
    cases = {
        "malformed.json": "{ not json",
        "empty.json": "",
        "list.json": "[]",
        "baddt.json": json.dumps({**good, "dt": -1}),
        "badobs.json": json.dumps({**good, "obs": {"steps": [300], "values": [[0, 0, 0]]}}),
        "binary.json": b"\xff\xfe\x00garbage",
    }
    paths = []
    for name, text in cases.items():
        p = tmp_path / name
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
        paths.append(p)
    return paths + [tmp_path / "missing.json", tmp_path]


def assert_one_line_error(rc, out, err):
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert err.startswith("error:")


def test_bad_problem_files_give_exit_2(tmp_path):
    for path in bad_files(tmp_path):
        for cmd in (["grad", "--backend", "numpy", "--problem", str(path), "--json"], ["check", "--problem", str(path)]):
            assert_one_line_error(*cli(*cmd))


@pytest.mark.parametrize("args", [
    ["grad", "--backend", "nope"],
    ["grad"],
    ["grad", "--backend", "numpy", "--bogus"],
    ["grad", "--backend", "numpy", "--dtype", "float16"],
    ["grad", "--backend", "numpy", "--device", "tpu"],
    ["check", "--backend", "nope"],
    ["problem", "lorenz05"],
    ["problem", "lorenz96", "--n", "3"],
    ["problem", "lorenz63", "--obs-steps", "5,x"],
    ["problem", "paper", "--noise", "abc"],
    ["problem", "paper", "--noise", "-1"],
    ["problem", "paper", "--control", "params"],
    ["nonsense"],
    [],
])
def test_bad_arguments_give_exit_2(args):
    assert_one_line_error(*cli(*args))


def test_core_install_runs_the_cli_without_the_extras(monkeypatch, capsys):
    # as if pandas, matplotlib, scipy and tqdm were not installed (the core install: NumPy only)
    import adjointbench.cli as cli_mod

    for m in ("pandas", "matplotlib", "scipy", "tqdm"):
        monkeypatch.setitem(sys.modules, m, None)
    assert cli_mod.main(["backends"]) == 0
    assert cli_mod.main(["grad", "--backend", "numpy", "--model", "lorenz96", "--json"]) == 0
    capsys.readouterr()
    assert cli_mod.main(["table", "results"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs pandas" in err
