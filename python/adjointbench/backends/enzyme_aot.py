"""Backend ``enzyme``: C++ forward model + cost differentiated by Enzyme at the LLVM level.

The paper's fastest row (Tbl. 3, Enzyme, 279 us for the workload).  Only the forward model
(List 1) and the cost are written, in kernels/lorenz63_enzyme.cpp; Enzyme generates the
adjoint from their LLVM IR (``__enzyme_autodiff``).  enzyme-ad's clang produced that IR ahead
of time (kernels/generated/), llvmlite turned it into an object file and Cython wrapped it in
``adjointbench._enzyme`` at install time (build_tools/ext_enzyme.py), so nothing is compiled
here: one build serves every problem, whose sizes are passed at run time.

Lorenz-96 (kernels/lorenz96_enzyme.cpp, RK4 forward model and cost only; extension
``adjointbench._enzyme96``) is built the same way.  Batches of either model are one native
call that loops over the members in C++ (idiom "native loop"): OpenMP is not available inside
that code, since enzyme-ad's embedded clang has no omp.h and llvmlite's object would need
LLVM's libomp linked in (see the front doors' comments).  Threads could come from the Cython
wrapper instead (a ``prange`` over members, each a B = 1 call with its own scratch, built with
GCC's OpenMP as the cython backend is): that is another idiom ("threads"), not tried here.

``prepare_cost`` (J alone, the denominator of the cheap-gradient ratio) calls the same front
door in its forward-only mode: the primal ``cost`` that Enzyme differentiates, in the same
IR, object and compiler flags, with no shadow and no tape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import native
from ..models import Lorenz96Problem
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch, check_controls, native_descent

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


def _any_kernel(problem):
    return _kernel96(problem) if problem.model == "lorenz96" else _kernel(problem)


class EnzymeAOTBackend(Backend):
    name = "enzyme"
    compiled = True
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

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return _kernel(problem).cost  # validates u like vg; returns a Python float

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return _kernel96(problem).cost

    def _prepare_cost_batch(self, problem, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """J[B] by the front door's COSTS mode: the loop of ``vgb`` over the primal alone."""
        costs = _any_kernel(problem).costs
        return lambda U: costs(check_controls(problem, U))

    def _prepare_batch(self, problem, *, device: str, dtype: str) -> PreparedBatch:
        vgb_native = _any_kernel(problem).vgb

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return vgb_native(check_controls(problem, U))

        return PreparedBatch(
            vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=None,
            info={"build": "ahead of time (pip install)"},
        )


BACKENDS = [EnzymeAOTBackend()]
