"""Backend ``cython``: the hand adjoint (List 1, List 2) in Cython, ``kernels/lorenz63_hand.pyx``.

The extension ``adjointbench._cython_hand`` is built by setup.py (build_tools/ext_cython.py);
when it is missing the backend is unavailable with the build's reason.  A ``HandAdjoint``
object, made in ``prepare``, owns the work arrays; its ``value_and_grad`` validates the control
vector in C (a contiguous float64 vector of the right length goes straight through; anything
else is passed to ``problem.check_control``, which converts it or raises ValueError) and runs
the time loops without the GIL.  Its ``descent`` is the fused Tbl. 3 driver.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import native
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, DescentResult, Prepared, native_descent

MODULE = "_cython_hand"


def _hand_adjoint(problem: Lorenz63Problem):
    mod, reason = native.load(MODULE)
    if mod is None:
        raise ValueError(f"backend 'cython' is unavailable: {reason}")
    return mod.HandAdjoint(
        problem.dt, problem.obs_steps, problem.obs_values, [problem.params[k] for k in PARAM_NAMES],
        problem.n_control, problem.check_control,
    )


class CythonBackend(Backend):
    name = "cython"
    kind = "hand adjoint"
    description = "hand adjoint (paper List 2) in Cython: typed memoryviews, loops without the GIL"
    fused = True
    native_module = MODULE

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        # the bound cpdef method is the callable: no Python frame between the caller and C
        vg = _hand_adjoint(problem).value_and_grad
        return Prepared(vg, problem, device=device, dtype=dtype)

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(_hand_adjoint(problem).descent, iterations, step)


BACKENDS = [CythonBackend()]
