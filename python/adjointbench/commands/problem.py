"""``adjointbench problem``: print a problem file (docs/DESIGN.md formats) for a preset."""

from __future__ import annotations

import argparse

from ..models.lorenz96 import STANDARD_DT, STANDARD_F, STANDARD_OBS_EVERY, Lorenz96Problem
from ..problem import CONTROLS, Lorenz63Problem

NAME = "problem"
HELP = "print a problem file: 'paper' (Lorenz-63, the paper's set-up) or 'lorenz96' (the standard set-up)"
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", choices=["paper", "lorenz96"], help="which problem to write")
    p.add_argument("--control", choices=CONTROLS, default="state")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (paper: observation noise; lorenz96: spin-up, observations, background; default 0)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    g = p.add_argument_group("paper (Lorenz-63)")
    g.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="observation error std. dev.")
    g = p.add_argument_group("lorenz96")
    g.add_argument("--n", type=int, default=40, help="number of variables (>= 4; default 40)")
    g.add_argument("--nsteps", type=int, default=40, help="RK4 steps in the window (default 40)")
    g.add_argument("--obs-every", type=int, default=STANDARD_OBS_EVERY, metavar="K",
                   help=f"observe every K steps (default {STANDARD_OBS_EVERY})")
    g.add_argument("--dt", type=float, default=STANDARD_DT, help=f"time step (default {STANDARD_DT})")
    g.add_argument("--F", type=float, default=STANDARD_F, dest="F", help=f"forcing, truth and first guess (default {STANDARD_F})")
    g.add_argument("--no-background", action="store_true", help="no background term in J")


def run(args: argparse.Namespace) -> int:
    if args.preset == "paper":
        problem = Lorenz63Problem.paper(control=args.control, noise=args.noise, seed=args.seed)
    else:
        problem = Lorenz96Problem.standard(
            n=args.n, nsteps=args.nsteps, seed=0 if args.seed is None else args.seed, obs_every=args.obs_every,
            dt=args.dt, F=args.F, background=not args.no_background, control=args.control,
        )
    if args.out:
        problem.save(args.out)
    else:
        print(problem.to_json())
    return 0
