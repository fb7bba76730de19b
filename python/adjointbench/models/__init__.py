"""The models: one problem class each, chosen by a problem file's ``"model"`` (docs/DESIGN.md).

``load_problem(path)`` / ``problem_from_json(text)`` / ``problem_from_dict(d)`` dispatch on it;
a file without ``"model"`` is Lorenz-63 (its format predates the key being required).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..problem import Lorenz63Problem, read_problem_text
from .lorenz96 import Lorenz96Problem, MemoryBudgetError

Problem = Lorenz63Problem | Lorenz96Problem

#: model name -> problem class; the order is the display order
MODELS: dict[str, type[Problem]] = {"lorenz63": Lorenz63Problem, "lorenz96": Lorenz96Problem}
PROBLEM_TYPES = tuple(MODELS.values())


def model_names() -> list[str]:
    return list(MODELS)


def problem_class(model: Any) -> type[Problem]:
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    return MODELS[model]


def problem_from_dict(d: Any) -> Problem:
    if not isinstance(d, dict):
        raise ValueError("problem must be a JSON object")
    return problem_class(d.get("model", "lorenz63")).from_dict(d)


def problem_from_json(text: str) -> Problem:
    try:
        d = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed problem JSON: {e}") from None
    return problem_from_dict(d)


def load_problem(path: str | Path) -> Problem:
    """The problem in a JSON file, whatever its model; ValueError (naming the file) if invalid."""
    text = read_problem_text(path)
    try:
        return problem_from_json(text)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN, Infinity and -Infinity, which are not JSON
    raise ValueError(f"{name} is not a JSON number (non-finite values are not allowed)")


def is_problem(obj: Any) -> bool:
    return isinstance(obj, PROBLEM_TYPES)


__all__ = [
    "MODELS", "Lorenz63Problem", "Lorenz96Problem", "MemoryBudgetError", "Problem", "is_problem", "load_problem", "model_names",
    "problem_class", "problem_from_dict", "problem_from_json",
]
