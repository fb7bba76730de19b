"""Group ``gradient``: one value-and-gradient call per backend, at every selected problem.

By default the paper's problem (the per-call column of Tbl. 3) and Lorenz-96 at N = 40;
``--ab-problem`` (``adjointbench bench --problem FILE`` / ``--model lorenz96 --n N``) chooses.

What is timed is ``vg(u0)`` after ``prepare()`` (so no compile time) and after the
correctness gate; fast calls are repeated within a round so the timer's resolution does not
dominate, and the table reports the minimum per call.
"""

import pytest

from _bench import gated, record, rounds_for


@pytest.mark.problems
@pytest.mark.benchmark(group="gradient")
def test_gradient(benchmark, case, pol):
    g = gated(case)
    u0 = g.problem.u0
    # seconds-long calls (JAX without JIT): 3 rounds, the full run must stay within 15 minutes
    min_rounds = min(pol.gradient_min_rounds, 3) if g.call_s > 1.0 else pol.gradient_min_rounds
    rounds, per_round = rounds_for(g.call_s, pol.gradient_s, min_rounds, pol)
    record(benchmark, g, "gradient", "python", iterations=1)
    warmup = 0 if g.call_s > 0.5 else 1  # the gate already made the first call
    J, grad = benchmark.pedantic(g.vg, args=(u0,), rounds=rounds, iterations=per_round, warmup_rounds=warmup)
    assert grad.shape == u0.shape
