"""Helpers shared by the sub-commands: problem loading, backend selection, result checks."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..models import Problem, model_names
from ..models import load_problem as load_problem_file
from ..models.lorenz96 import Lorenz96Problem
from ..problem import CONTROLS, Lorenz63Problem


def add_problem_arguments(p: argparse.ArgumentParser, model: bool = False) -> None:
    p.add_argument("--problem", metavar="FILE", help="problem JSON, any model (default: the paper's set-up)")
    p.add_argument("--control", choices=CONTROLS, help="override the problem's control")
    if model:
        p.add_argument("--model", choices=model_names(), default=None,
                       help="without --problem: the model's default problem (lorenz63: the paper's; lorenz96: standard n=40)")


def default_problem(model: str, control: str) -> Problem:
    """The default problem of a model: the paper's Lorenz-63, the standard Lorenz-96 (n = 40)."""
    if model == "lorenz96":
        return Lorenz96Problem.standard(control=control)
    return Lorenz63Problem.paper(control=control)


def load_problem(args: argparse.Namespace, default_control: str = "state") -> Problem:
    """The problem named by --problem (or the --model default), with --control applied."""
    if args.problem:
        problem = load_problem_file(args.problem)
        if args.control and args.control != problem.control:
            problem = problem.with_(control=args.control)
        return problem
    return default_problem(getattr(args, "model", None) or "lorenz63", args.control or default_control)


def require_finite(backend: str, J: Any, g: np.ndarray, names: tuple[str, ...] | None = None) -> None:
    """ValueError in one line when J or the gradient holds NaN/inf (never printed as a result)."""
    g = np.asarray(g, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(g))
    J_bad = not np.isfinite(float(J))
    if not bad.size and not J_bad:
        return
    parts = []
    if J_bad:
        parts.append(f"J = {float(J)!r}")
    if bad.size:
        parts.append(f"{bad.size} of {g.size} gradient entries non-finite (first at index {bad[0]})")
    raise ValueError(
        f"backend {backend!r} returned a non-finite result: {'; '.join(parts)} "
        "(likely overflow: the trajectory diverged for this dt/window)"
    )
