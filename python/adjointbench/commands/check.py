"""``adjointbench check``: every backend against the complex-step reference."""

from __future__ import annotations

import argparse

from .. import verify
from ..backends import all_backends, backend
from ..models import load_problem, model_names
from ..problem import CONTROLS
from ._common import default_problem

NAME = "check"
HELP = "compare backends' gradients with the complex-step reference (pass at <= 1e-10)"
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="backend to check (repeatable; default: all but references)")
    p.add_argument("--problem", metavar="FILE",
                   help="problem JSON, any model (default: the model's default problem, both controls)")
    p.add_argument("--model", choices=model_names(), default="lorenz63",
                   help="without --problem: lorenz63 (the paper's problem) or lorenz96 (standard, n = 40)")
    p.add_argument("--tolerance", type=float, default=verify.TOLERANCE)


def run(args: argparse.Namespace) -> int:
    if args.problem:
        problems = [load_problem(args.problem)]
    else:
        problems = [default_problem(args.model, c) for c in CONTROLS]
    if args.backend:
        chosen = [backend(n) for n in args.backend]  # unknown name: ValueError -> exit 2
    else:
        chosen = [b for b in all_backends() if not b.reference]
    failed = False
    width = max(len(b.name) for b in chosen)
    label = ", ".join(p.control for p in problems)
    print(f"{problems[0].label().split(' control=')[0]}: gradient vs complex step "
          f"(max-norm relative error over control {label}; tolerance {args.tolerance:g})")
    for b in chosen:
        ok, reason = b.available()
        if ok:
            ok, reason = b.supports(problems[0].model)
        if not ok:
            print(f"{b.name:<{width}}  skipped      ({reason})")
            continue
        try:
            results = [verify.check_backend(b.name, p, tolerance=args.tolerance) for p in problems]
        except Exception as e:  # a backend that crashes fails the check; it is not a usage error
            failed = True
            print(f"{b.name:<{width}}  FAIL         ({type(e).__name__}: {' '.join(str(e).split())})")
            continue
        err = max(max(r.grad_error, r.J_error) for r in results)
        passed = all(r.passed for r in results)
        failed |= not passed
        print(f"{b.name:<{width}}  {'pass' if passed else 'FAIL':<4} {err:9.2e}")
    return 1 if failed else 0
