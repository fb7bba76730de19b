"""``adjointbench grad``: J and its gradient at the problem's first guess."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..backends import backend
from ..problem import Lorenz63Problem
from ._common import add_problem_arguments, load_problem, require_finite

NAME = "grad"
HELP = "evaluate J and dJ/du at the first guess with one backend"
ORDER = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", required=True, metavar="NAME")
    add_problem_arguments(p, model=True)
    p.add_argument("--device", default=None, help="device for backends that have several (cpu, gpu, tpu)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--json", action="store_true", help="print one JSON object")


def result_object(name: str, problem, J: float, g: np.ndarray) -> dict:
    """The ``grad --json`` object of docs/DESIGN.md (Lorenz-63's has no "model" key)."""
    out: dict = {"backend": name}
    if problem.model != "lorenz63":
        out["model"] = problem.model
    out["J"] = float(J)
    out["grad"] = problem.grad_dict(g)
    return out


def run(args: argparse.Namespace) -> int:
    b = backend(args.backend)  # unknown name first: cheaper than loading a large problem
    problem = load_problem(args)
    vg = b.prepare(problem, device=args.device, dtype=args.dtype)
    with np.errstate(all="ignore"):  # an overflow is reported once, below, not as NumPy warnings
        J, g = vg(problem.u0)
        g = np.asarray(g, dtype=np.float64)
    require_finite(b.name, J, g)
    if args.json:
        print(json.dumps(result_object(b.name, problem, J, g), allow_nan=False))
        return 0
    print(f"backend {b.name} on {vg.device} ({vg.dtype}), {problem.label()}")
    print(f"J = {float(J)!r}")
    if isinstance(problem, Lorenz63Problem):  # the one model whose problem.model is "lorenz63"
        for name, value in zip(problem.names, g, strict=True):
            print(f"dJ/d{name:<6}= {float(value)!r}")
    else:
        n = problem.n
        shown = ", ".join(repr(float(v)) for v in g[: min(n, 6)])
        print(f"dJ/dx0 ({n} entries) = [{shown}{', ...' if n > 6 else ''}]   |dJ/dx0|_2 = {float(np.linalg.norm(g[:n]))!r}")
        if problem.control == "state+params":
            print(f"dJ/dF = {float(g[n])!r}")
    return 0
