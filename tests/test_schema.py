"""The JSON Schemas in docs/schema/ against the code that reads and writes the formats.

Every file the CLI writes (``problem``, ``Problem.save``) and every ``grad --json`` output
validates; every invalid document below is refused by the reader, and by the schema too unless
it is marked semantic (a rule JSON Schema cannot say, listed in the schema's description).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from adjointbench import cli
from adjointbench.models import problem_from_json
from adjointbench.testing import random_problem, random_problem96

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schema"


def _schema(name: str) -> dict:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _valid(name: str, doc) -> bool:
    return jsonschema.Draft202012Validator(_schema(name)).is_valid(doc)


def _cli_json(args, capsys) -> dict:
    assert cli.main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["lorenz63-problem", "lorenz96-problem", "grad-output"])
def test_schemas_are_valid_draft_2020_12(name):
    _schema(name)


def test_problem_files_the_cli_writes_validate(capsys, tmp_path, rng):
    for args in (["paper"], ["paper", "--control", "state+params"], ["lorenz63", "--noise", "0.5", "--seed", "3"],
                 ["lorenz63", "--nsteps", "50", "--obs-steps", "0,10,50"]):
        assert _valid("lorenz63-problem", _cli_json(["problem", *args], capsys)), args
    for args in (["lorenz96", "--n", str(int(rng.integers(4, 60)))], ["lorenz96", "--n", "6", "--no-background"],
                 ["lorenz96", "--n", "9", "--control", "state+params", "--obs-every", "3"]):
        assert _valid("lorenz96-problem", _cli_json(["problem", *args], capsys)), args
    for control in ("state", "state+params"):
        p, q = random_problem(rng, control), random_problem96(rng, control)
        p.save(tmp_path / "p.json")
        q.save(tmp_path / "q.json")
        assert _valid("lorenz63-problem", json.loads((tmp_path / "p.json").read_text()))
        assert _valid("lorenz96-problem", json.loads((tmp_path / "q.json").read_text()))


def test_grad_json_output_validates(capsys, tmp_path, rng):
    for control in ("state", "state+params"):
        for problem in (random_problem(rng, control, max_steps=60), random_problem96(rng, control)):
            path = tmp_path / f"{problem.model}.json"
            problem.save(path)
            out = _cli_json(["grad", "--backend", "numpy", "--problem", str(path), "--json"], capsys)
            assert _valid("grad-output", out), out
    # and what it must not look like: a missing component, a stray key, a string for a number
    good = _cli_json(["grad", "--backend", "numpy", "--json"], capsys)
    for bad in ({**good, "extra": 1}, {**good, "J": "70.5"}, {k: v for k, v in good.items() if k != "grad"},
                {**good, "grad": {"x0": 1.0, "y0": 2.0}}, {**good, "grad": {**good["grad"], "sigma": 1.0}}):
        assert not _valid("grad-output", bad), bad


def _set(doc: dict, path: str, value) -> dict:
    """A deep copy of ``doc`` with the entry at dotted ``path`` set (``...`` deletes it)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ...:
        del node[last]
    else:
        node[last] = value
    return out


#: (path, value, semantic): documents the reader refuses; semantic = the schema cannot say it
BAD63 = [
    ("dt", ..., False), ("foo", 1, False), ("model", "lorenz64", False), ("dt", 0, False), ("dt", -1.0, False),
    ("dt", "0.01", False), ("nsteps", 0, False), ("nsteps", 1.5, False), ("nsteps", True, False),
    ("x0", [1.0, 2.0], False), ("x0", [1.0, True, 2.0], False), ("x0", [1.0, "3.3", 5.5], False),
    ("x0", [1.0, float("nan"), 5.5], True), ("params.beta", ..., False), ("params.gamma", 1.0, False),
    ("params.sigma", "10", False), ("control", "params", False), ("obs.values", ..., False),
    ("obs.extra", 1, False), ("obs.steps", [], False), ("obs.steps", [60, 60, 180], False),
    ("obs.steps", [120, 60, 180], True), ("obs.steps", [60, 120, 999], True), ("obs.values.0", [1.0, 2.0], False),
    ("obs.values.1.2", False, False), ("obs.values.1.2", "1.5", False), ("obs.noise", 0.5, False),
    ("obs.noise", {"sigma": 0.5, "seed": 1, "kind": "gauss"}, False), ("obs.noise", {"sigma": -1.0}, False),
]
BAD96 = [
    ("model", ..., False), ("n", 3, False), ("n", "40", False), ("dt", 0, False), ("nsteps", 0, False),
    ("scheme", "euler", False), ("x0", [1.0, 2.0, 3.0], True), ("x0.1", True, False), ("x0.1", "2", False),
    ("params", {"F": 8.0, "G": 1.0}, False), ("params.F", "8", False), ("control", "params", False),
    ("background", {"values": [1.0] * 6, "sigma": 0.0}, False), ("background", {"sigma": 1.0}, False),
    ("background", {"values": [1.0] * 6, "rho": 1.0}, False), ("background", [1.0] * 6, False),
    ("background", {"values": [1.0] * 5}, True), ("obs.sigma", 0, False), ("obs.indices", [0, 0], False),
    ("obs.indices", [2, 0], True), ("obs.indices", [0, 6], True), ("obs.steps", [4, 4], False),
    ("obs.steps", [0, 99], True), ("obs.values.0.0", True, False), ("obs.values.0", [], False),
    ("obs.extra", 1, False),
]


def _refused(doc) -> bool:
    try:
        problem_from_json(json.dumps(doc))
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("path,value,semantic", BAD63, ids=[f"{p}={v!r}" for p, v, _ in BAD63])
def test_invalid_lorenz63_files_are_refused_by_reader_and_schema(path, value, semantic, capsys):
    good = _cli_json(["problem", "paper", "--control", "state+params", "--noise", "0.1"], capsys)
    assert _valid("lorenz63-problem", good) and not _refused(good)
    bad = _set(good, path, value)
    assert _refused(bad), f"the reader accepts {path}={value!r}"
    assert _valid("lorenz63-problem", bad) == semantic, f"schema and the semantic list disagree on {path}={value!r}"


@pytest.mark.parametrize("path,value,semantic", BAD96, ids=[f"{p}={v!r}" for p, v, _ in BAD96])
def test_invalid_lorenz96_files_are_refused_by_reader_and_schema(path, value, semantic, capsys):
    good = _cli_json(["problem", "lorenz96", "--n", "6", "--nsteps", "8", "--obs-every", "4"], capsys)
    good["obs"]["indices"] = [0, 3]
    good["obs"]["values"] = np.asarray(good["obs"]["values"])[:, :2].tolist()
    assert _valid("lorenz96-problem", good) and not _refused(good)
    bad = _set(good, path, value)
    assert _refused(bad), f"the reader accepts {path}={value!r}"
    assert _valid("lorenz96-problem", bad) == semantic, f"schema and the semantic list disagree on {path}={value!r}"
