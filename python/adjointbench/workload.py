"""The Tbl. 3 workload: steepest descent on the state, driven from Python (paper §4.2).

101 value-and-gradient evaluations of u <- u - step * grad from the first guess, step 5e-4
(docs/DESIGN.md "Problem"): what every backend's Python-driven row times, and what a fused
driver (the loop compiled inside a backend) must reproduce iterate for iterate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: the Tbl. 3 workload: 101 value-and-gradient evaluations of steepest descent on the state
TBL3_ITERATIONS = 101
TBL3_STEP = 5e-4

#: u -> (J, grad): what ``Backend.prepare`` returns and every optimiser drives
VG = Callable[[np.ndarray], "tuple[float, np.ndarray]"]


@dataclass(frozen=True)
class DescentResult:
    """Outcome of steepest descent: final control and J at each evaluated iterate."""

    u: np.ndarray
    costs: np.ndarray


def python_descent(vg: VG, u0: np.ndarray, iterations: int = TBL3_ITERATIONS, step: float = TBL3_STEP) -> DescentResult:
    """Steepest descent driven from Python: u <- u - step * g, ``iterations`` evaluations.

    This is the Tbl. 3 workload for every backend (timed: nothing but the loop); a fused
    driver must reproduce its iterates.
    """
    u = np.array(u0, dtype=np.float64)
    costs = np.empty(iterations)
    for i in range(iterations):
        J, g = vg(u)
        costs[i] = J
        u = u - step * g
    return DescentResult(u=u, costs=costs)
