"""How ``lax.scan``'s unroll factor changes the ``jax`` backend's compile time and per-call time.

    python bench/jax_unroll.py [--backend jax|enzyme-jax] [--device cpu|gpu] [--unroll 1 2 12] [--dtype float64]
                               [--model lorenz63|lorenz96] [--n 40] [--nsteps 40]

An XLA while loop costs a fixed overhead per iteration (on a GPU a kernel launch and a
device-to-host copy of the loop predicate, tens of µs); unrolling k steps into one iteration
divides that count by k and lets XLA fuse k Euler steps, at the cost of compile time.  Each
variant's gradient is checked against complex step before it is timed (min of repeats).
Lorenz-63: the paper's problem; Lorenz-96: ``Lorenz96Problem.standard(n, nsteps)`` (the
check is the directional complex step beyond 65 controls).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from adjointbench import verify  # noqa: E402
from adjointbench.backends import _jax_model as jm  # noqa: E402
from adjointbench.models import Lorenz96Problem  # noqa: E402
from adjointbench.problem import Lorenz63Problem  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=sorted(jm.UNROLL), default="jax", help="AD route (default jax)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--unroll", type=int, nargs="+", default=[1, 2, 4, 10, 20, 60, 180])
    ap.add_argument("--seconds", type=float, default=1.0, help="timing budget per variant")
    ap.add_argument("--model", choices=["lorenz63", "lorenz96"], default="lorenz63")
    ap.add_argument("--n", type=int, default=40, help="Lorenz-96 variables (default 40)")
    ap.add_argument("--nsteps", type=int, default=40, help="Lorenz-96 window (default 40)")
    ap.add_argument("--no-fused", action="store_true", help="skip timing the fused 101-iteration descent")
    a = ap.parse_args()
    if a.model == "lorenz96":
        problem = Lorenz96Problem.standard(n=a.n, nsteps=a.nsteps)
        label = f"Lorenz-96 standard problem n={a.n} nsteps={a.nsteps}"
    else:
        problem = Lorenz63Problem.paper(control="state")
        label = "paper problem"
    if a.backend == "enzyme-jax":
        from adjointbench.backends.enzyme_jax import _enzyme_value_and_grad as differentiate
    else:
        differentiate = jax.value_and_grad
    print(f"{a.backend}: jax {jax.__version__} on {jm.jax_device(a.device)}; {label}, {a.dtype}; "
          f"default unroll {jm.default_unroll(jm.jax_device(a.device), a.backend, a.model)}")
    print(f"{'unroll':>6} {'compile s':>10} {'per call µs':>12} {'median µs':>10} "
          f"{'101 evals ms':>13} {'fused ms':>9} {'rel err':>9}")
    for k in a.unroll:
        vg = jm.jit_vg(problem, a.device, a.dtype, differentiate, info={}, unroll=k, route=a.backend)
        err = verify.check_vg(a.backend, vg, problem).grad_error
        times = []
        t_end = time.perf_counter() + a.seconds
        while time.perf_counter() < t_end or len(times) < 5:
            t0 = time.perf_counter()
            vg(problem.u0)
            times.append(time.perf_counter() - t0)
        fused = [float("nan")]
        if not a.no_fused:
            run = jm.jit_descent(problem, a.device, a.dtype, differentiate, 101, 5e-4, info={}, unroll=k,
                                 route=a.backend)
            fused = []
            for _ in range(5):
                t0 = time.perf_counter()
                run(problem.u0)
                fused.append(time.perf_counter() - t0)
        print(f"{k:>6} {vg.compile_s:>10.3f} {min(times) * 1e6:>12.1f} {np.median(times) * 1e6:>10.1f} "
              f"{min(times) * 101e3:>13.2f} {min(fused) * 1e3:>9.2f} {err:>9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
