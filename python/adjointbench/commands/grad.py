"""``adjointbench grad``: J and its gradient at the problem's first guess."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..backends import backend
from ._common import add_problem_arguments, load_problem

NAME = "grad"
HELP = "evaluate J and dJ/du at the first guess with one backend"
ORDER = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", required=True, metavar="NAME")
    add_problem_arguments(p)
    p.add_argument("--device", default=None, help="device for backends that have several")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    problem = load_problem(args)
    b = backend(args.backend)
    vg = b.prepare(problem, device=args.device, dtype=args.dtype)
    J, g = vg(problem.u0)
    g = np.asarray(g, dtype=np.float64)
    if args.json:
        print(json.dumps({"backend": b.name, "J": float(J), "grad": dict(zip(problem.names, map(float, g)))}))
    else:
        print(f"backend {b.name} on {vg.device} ({vg.dtype}), control {problem.control}")
        print(f"J = {float(J)!r}")
        for name, value in zip(problem.names, g):
            print(f"dJ/d{name:<6}= {float(value)!r}")
    return 0
