"""Group ``gradient``: one value-and-gradient call at the paper problem, per backend.

What is timed is ``vg(u0)`` after ``prepare()`` (so no compile time) and after the
correctness gate; fast calls are repeated within a round so the timer's resolution does not
dominate, and the table reports the minimum per call.
"""

import pytest

from _bench import gated, record, rounds_for


@pytest.mark.benchmark(group="gradient")
def test_gradient(benchmark, case, pol):
    g = gated(case)
    u0 = g.problem.u0
    rounds, per_round = rounds_for(g.call_s, pol.gradient_s, pol.gradient_min_rounds, pol)
    record(benchmark, g, "gradient", "python", iterations=1)
    J, grad = benchmark.pedantic(g.vg, args=(u0,), rounds=rounds, iterations=per_round, warmup_rounds=1)
    assert grad.shape == u0.shape
