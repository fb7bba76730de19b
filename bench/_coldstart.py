"""Cold-start worker for the ``compile`` group: one fresh process per measured round.

Protocol (stdin/stdout lines): started with a JSON spec, it imports the package, the
backend's required libraries and the problem, prints ``ready`` and waits; on ``go`` it runs
``prepare()`` (or ``prepare_descent()``) and the first call, and prints one JSON line with its
own timings and the result, which the parent checks against complex step.  Library import is
done before ``ready`` so it is not counted as compile time; JIT caches (Numba, JAX, Inductor)
are pointed at empty folders by the parent, so nothing compiled by an earlier run is reused.
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def main() -> int:
    spec = json.loads(sys.argv[1])
    from adjointbench.backends import backend
    from adjointbench.problem import Lorenz63Problem

    b = backend(spec["backend"])
    for mod in b.requires:
        importlib.import_module(mod)
    problem = Lorenz63Problem.paper(control="state")
    u0 = problem.u0
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    t0 = time.perf_counter()
    if spec["driver"] == "fused":
        run = b.prepare_descent(problem, device=spec["device"], dtype=spec["dtype"])
        t1 = time.perf_counter()
        res = run(u0)
        t2 = time.perf_counter()
        out = {"costs": [float(c) for c in res.costs], "compile_s": None}
    else:
        vg = b.prepare(problem, device=spec["device"], dtype=spec["dtype"])
        t1 = time.perf_counter()
        J, g = vg(u0)
        t2 = time.perf_counter()
        out = {"J": float(J), "grad": [float(x) for x in g], "compile_s": vg.compile_s}
    out.update({"prepare_s": t1 - t0, "first_call_s": t2 - t1})
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
