"""Helpers shared by the sub-commands: problem loading and backend selection."""

from __future__ import annotations

import argparse

from ..problem import CONTROLS, Lorenz63Problem


def add_problem_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problem", metavar="FILE", help="problem JSON (default: the paper's set-up)")
    p.add_argument("--control", choices=CONTROLS, help="override the problem's control")


def load_problem(args: argparse.Namespace, default_control: str = "state") -> Lorenz63Problem:
    """The problem named by --problem (or the paper's), with --control applied."""
    if args.problem:
        problem = Lorenz63Problem.load(args.problem)
        if args.control and args.control != problem.control:
            problem = problem.with_(control=args.control)
        return problem
    return Lorenz63Problem.paper(control=args.control or default_control)
