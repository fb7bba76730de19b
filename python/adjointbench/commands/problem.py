"""``adjointbench problem``: print a problem file (docs/DESIGN.md formats) for a preset."""

from __future__ import annotations

import argparse

from ..models import Problem
from ..models.lorenz96 import STANDARD_DT, STANDARD_F, STANDARD_OBS_EVERY, Lorenz96Problem
from ..problem import CONTROLS, PAPER_DT, PAPER_NSTEPS, PAPER_OBS_STEPS, Lorenz63Problem

NAME = "problem"
HELP = ("print a problem file: 'paper' or 'lorenz63' (Lorenz-63, the paper's set-up, window adjustable) "
        "or 'lorenz96' (the standard set-up)")
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", choices=["paper", "lorenz63", "lorenz96"],
                   help="which problem to write ('lorenz63' is 'paper' with the options below)")
    p.add_argument("--control", choices=CONTROLS, default="state")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (paper: observation noise; lorenz96: spin-up, observations, background; default 0)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--nsteps", type=int, default=None, help=f"steps in the window (default: paper {PAPER_NSTEPS}, lorenz96 40)")
    p.add_argument("--dt", type=float, default=None, help=f"time step (default: paper {PAPER_DT}, lorenz96 {STANDARD_DT})")
    g = p.add_argument_group("paper / lorenz63")
    g.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="observation error std. dev.")
    g.add_argument("--obs-steps", type=_steps, default=None, metavar="S,S,...",
                   help="observation steps, comma-separated (default 60,120,180)")
    g = p.add_argument_group("lorenz96")
    g.add_argument("--n", type=int, default=40, help="number of variables (>= 4; default 40)")
    g.add_argument("--obs-every", type=int, default=STANDARD_OBS_EVERY, metavar="K",
                   help=f"observe every K steps (default {STANDARD_OBS_EVERY})")
    g.add_argument("--F", type=float, default=STANDARD_F, dest="F", help=f"forcing, truth and first guess (default {STANDARD_F})")
    g.add_argument("--no-background", action="store_true", help="no background term in J")


def _steps(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    problem: Problem
    if args.preset in ("paper", "lorenz63"):
        window = {k: v for k, v in (("dt", args.dt), ("nsteps", args.nsteps), ("obs_steps", args.obs_steps)) if v is not None}
        if "nsteps" in window and "obs_steps" not in window:
            window["obs_steps"] = [s for s in PAPER_OBS_STEPS if s <= window["nsteps"]] or [window["nsteps"]]
        problem = Lorenz63Problem.paper(control=args.control, noise=args.noise, seed=args.seed, **window)
    else:
        problem = Lorenz96Problem.standard(
            n=args.n, nsteps=40 if args.nsteps is None else args.nsteps, seed=0 if args.seed is None else args.seed,
            obs_every=args.obs_every, dt=STANDARD_DT if args.dt is None else args.dt, F=args.F,
            background=not args.no_background, control=args.control,
        )
    if args.out:
        problem.save(args.out)
    else:
        print(problem.to_json())
    return 0
