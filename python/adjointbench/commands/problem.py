"""``adjointbench problem paper``: print the paper's problem as JSON (DESIGN.md format)."""

from __future__ import annotations

import argparse

from ..problem import CONTROLS, Lorenz63Problem

NAME = "problem"
HELP = "print a problem file (the paper's set-up, optionally with noisy observations)"
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", choices=["paper"], help="which problem to write")
    p.add_argument("--control", choices=CONTROLS, default="state")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="observation error std. dev.")
    p.add_argument("--seed", type=int, default=None, help="random seed for the observation noise")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")


def run(args: argparse.Namespace) -> int:
    problem = Lorenz63Problem.paper(control=args.control, noise=args.noise, seed=args.seed)
    if args.out:
        problem.save(args.out)
    else:
        print(problem.to_json())
    return 0
