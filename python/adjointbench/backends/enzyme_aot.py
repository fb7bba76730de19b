"""Backend ``enzyme``: C++ forward model + cost differentiated by Enzyme at the LLVM level.

The paper's fastest row (Tbl. 3, Enzyme, 279 us for the workload).  Only the forward model
(List 1) and the cost are written, in kernels/lorenz63_enzyme.cpp; Enzyme generates the
adjoint from their LLVM IR (``__enzyme_autodiff``).  enzyme-ad's clang produced that IR ahead
of time (kernels/generated/), llvmlite turned it into an object file and Cython wrapped it in
``adjointbench._enzyme`` at install time (build_tools/ext_enzyme.py), so nothing is compiled
here: one build serves every problem, whose sizes are passed at run time.

Lorenz-96 (kernels/lorenz96_enzyme.cpp, RK4 forward model and cost only; extension
``adjointbench._enzyme96``) is built the same way.  Its batch is one native call that loops
over the members in C++ (idiom "native loop"; no OpenMP in enzyme-ad's embedded toolchain
and llvmlite's object).  Lorenz-63 batches keep the base class's loop over ``vg``: its
front door has no batch entry, and at ~3 us per gradient a native loop would save only the
~1 us of Python per row.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import native
from ..models import Lorenz96Problem
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch, check_controls, loop_batch, native_descent

MODULE = "_enzyme"
MODULE96 = "_enzyme96"


def _kernel(problem: Lorenz63Problem):
    """The native kernel for this problem: observations converted and sizes checked once."""
    mod, reason = native.load(MODULE)
    if mod is None:
        raise ValueError(reason)
    return mod.Lorenz63Enzyme(
        problem.dt, [problem.params[k] for k in PARAM_NAMES], problem.obs_steps, problem.obs_values,
        problem.n_control, problem.check_control,
    )


def _kernel96(problem: Lorenz96Problem):
    """The native Lorenz-96 kernel: observations and background converted and checked once."""
    mod, reason = native.load(MODULE96)
    if mod is None:
        raise ValueError(reason)
    return mod.Lorenz96Enzyme(
        problem.n, problem.dt, problem.F, problem.obs_steps, problem.obs_indices, problem.obs_values,
        problem.sigma_o, problem.background, problem.sigma_b, problem.n_control, problem.check_control,
    )


class EnzymeAOTBackend(Backend):
    name = "enzyme"
    kind = "AD, source → IR"
    description = "C++ forward model + cost differentiated by Enzyme (LLVM IR, enzyme-ad), built ahead of time, Cython-wrapped"
    models = ("lorenz63", "lorenz96")
    fused = True
    batch_idiom = "native loop"
    native_module = MODULE

    def supports(self, model: str) -> tuple[bool, str]:
        ok, reason = super().supports(model)
        if ok and model == "lorenz96":  # a separate extension: it may be missing on its own
            mod, why = native.load(MODULE96)
            if mod is None:
                return False, why
        return ok, reason

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        # the bound cpdef method is the callable: it validates u in C (a float64 vector of the
        # right length goes straight through, anything else to problem.check_control)
        vg = _kernel(problem).vg
        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=None, info={"build": "ahead of time (pip install)"})

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(_kernel(problem).descent, iterations, step)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        vg = _kernel96(problem).vg  # validates u in Cython (check_control for anything unusual)
        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=None, info={"build": "ahead of time (pip install)"})

    def _prepare_descent_lorenz96(
        self, problem: Lorenz96Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(_kernel96(problem).descent, iterations, step)

    def _prepare_batch(self, problem, *, device: str, dtype: str) -> PreparedBatch:
        if problem.model != "lorenz96":
            return loop_batch(self._prepare(problem, device=device, dtype=dtype))
        vgb_native = _kernel96(problem).vgb

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return vgb_native(check_controls(problem, U))

        return PreparedBatch(
            vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=None,
            info={"build": "ahead of time (pip install)"},
        )


BACKENDS = [EnzymeAOTBackend()]
