"""Backend ``enzyme``: C++ forward model + cost differentiated by Enzyme at the LLVM level.

The paper's fastest row (Tbl. 3, Enzyme, 279 us for the workload).  Only the forward model
(List 1) and the cost are written, in kernels/lorenz63_enzyme.cpp; Enzyme generates the
adjoint from their LLVM IR (``__enzyme_autodiff``).  enzyme-ad's clang produced that IR ahead
of time (kernels/generated/), llvmlite turned it into an object file and Cython wrapped it in
``adjointbench._enzyme`` at install time (build_tools/ext_enzyme.py), so nothing is compiled
here: one build serves every problem, whose sizes are passed at run time.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import native
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, DescentResult, Prepared, native_descent

MODULE = "_enzyme"


def _kernel(problem: Lorenz63Problem):
    """The native kernel for this problem: observations converted and sizes checked once."""
    mod, reason = native.load(MODULE)
    if mod is None:
        raise ValueError(reason)
    return mod.Lorenz63Enzyme(
        problem.dt, [problem.params[k] for k in PARAM_NAMES], problem.obs_steps, problem.obs_values,
        problem.n_control, problem.check_control,
    )


class EnzymeAOTBackend(Backend):
    name = "enzyme"
    kind = "AD, source → IR"
    description = "C++ forward model + cost differentiated by Enzyme (LLVM IR, enzyme-ad), built ahead of time, Cython-wrapped"
    fused = True
    native_module = MODULE

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        # the bound cpdef method is the callable: it validates u in C (a float64 vector of the
        # right length goes straight through, anything else to problem.check_control)
        vg = _kernel(problem).vg
        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=None, info={"build": "ahead of time (pip install)"})

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(_kernel(problem).descent, iterations, step)


BACKENDS = [EnzymeAOTBackend()]
