"""Group ``tbl3``: the paper's Tbl. 3 workload, 101 evaluations of steepest descent (step 5e-4).

``python``: the loop of ``adjointbench.backends.python_descent`` through the backend's vg, for
every backend (what the paper timed with %timeit).  ``fused``: the backend's own compiled
driver, for backends that have one; it is first checked to reproduce the Python iterates.
In quick mode a workload estimated above the cap is timed over its first k iterations (one
round) and the table scales it by 101/k and says so.
"""

import math

import pytest

from adjointbench.backends import python_descent
from adjointbench.workload import TBL3_ITERATIONS, TBL3_STEP

from _bench import estimate, fused_driver, gated, record, rounds_for, workload_cap


@pytest.mark.benchmark(group="tbl3")
def test_tbl3_python(benchmark, case, pol):
    g = gated(case)
    u0 = g.problem.u0
    cap = workload_cap(pol, case)
    if g.call_s * TBL3_ITERATIONS > cap:
        # the first k iterations, in pol.truncated_rounds rounds (quick: 3, so the minimum has
        # a chance to find a quiet moment; full: one long round)
        rounds = pol.truncated_rounds
        iterations = int(max(1, min(TBL3_ITERATIONS, cap // (g.call_s * rounds))))
    else:
        iterations = TBL3_ITERATIONS
        rounds, _ = rounds_for(g.call_s * iterations, pol.tbl3_s, pol.tbl3_min_rounds, pol)
        if g.call_s * iterations > 10.0:  # one round is already long
            rounds = 1
    est = g.call_s * iterations
    record(benchmark, g, "tbl3", "python", iterations=iterations)
    res = benchmark.pedantic(python_descent, args=(g.vg, u0, iterations, TBL3_STEP), rounds=rounds,
                             iterations=1, warmup_rounds=0 if est > 1.0 else 1)
    assert all(math.isfinite(c) for c in res.costs)


@pytest.mark.fused
@pytest.mark.benchmark(group="tbl3")
def test_tbl3_fused(benchmark, case, pol):
    g = gated(case)
    run = fused_driver(g)
    u0 = g.problem.u0
    est = estimate(lambda: run(u0), budget_s=0.5, max_n=3)
    rounds, per_round = rounds_for(est, pol.tbl3_s, pol.tbl3_min_rounds, pol)
    record(benchmark, g, "tbl3", "fused", iterations=TBL3_ITERATIONS)
    res = benchmark.pedantic(run, args=(u0,), rounds=rounds, iterations=per_round, warmup_rounds=1)
    assert len(res.costs) == TBL3_ITERATIONS
