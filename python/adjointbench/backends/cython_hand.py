"""Backend ``cython``: the hand adjoints in Cython, for both models.

Lorenz-63: paper List 1 and List 2, ``kernels/lorenz63_hand.pyx`` -> ``adjointbench._cython_hand``.
Lorenz-96: the RK4 adjoint of ``models/lorenz96_equations.py`` (stored states, stages recomputed
in the backward sweep), ``kernels/lorenz96_hand.pyx`` -> ``adjointbench._cython_lorenz96``.

The extensions are built by setup.py (build_tools/ext_cython.py); when one is missing the backend
(or its Lorenz-96 half) is unavailable with the build's reason.  A kernel object, made in
``prepare``, owns the work arrays; its ``value_and_grad`` validates the control vector in C (a
contiguous float64 vector of the right length goes straight through; anything else is passed to
``problem.check_control``, which converts it or raises ValueError) and runs the time loops
without the GIL.  Its ``descent`` is the fused Tbl. 3 driver.

Forward-only cost (``prepare_cost``, the cheap-gradient ratio's denominator): ``HandCost`` /
``Lorenz96Cost`` of the same extensions run the gradient's forward sweep by the same C
functions, with J summed in the same order, but keep only the current state; their J equals
the gradient's J to the last bit.  Controls are validated as for the gradient.

Batches (idiom "threads"): the rows run on OpenMP threads, each thread with its own work arrays
(allocated once, in ``prepare_batch``); the forward-only batch (``prepare_cost_batch``) runs the
cost kernels the same way.  The thread count is read from OMP_NUM_THREADS at
prepare time (default: OpenMP's own default, the number of CPUs), capped so that one trajectory
per thread stays within the problem's memory budget, and recorded in ``info["threads"]``; an
extension built without OpenMP runs the rows serially (``info["openmp"]`` is False).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import native
from ..models import Lorenz96Problem
from ..models.lorenz96 import default_memory_budget
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import (
    Backend,
    DescentResult,
    Prepared,
    PreparedBatch,
    check_controls,
    native_descent,
    requested_threads,
)

MODULE = "_cython_hand"
MODULE96 = "_cython_lorenz96"


def _module(name: str):
    mod, reason = native.load(name)
    if mod is None:
        raise ValueError(f"backend 'cython' is unavailable: {reason}")
    return mod


def _kernel63(cls: str, problem: Lorenz63Problem):
    """``cls`` (HandAdjoint or HandCost) of the Lorenz-63 extension, built for ``problem``."""
    return getattr(_module(MODULE), cls)(
        problem.dt, problem.obs_steps, problem.obs_values, [problem.params[k] for k in PARAM_NAMES],
        problem.n_control, problem.check_control,
    )


def _kernel96(cls: str, problem: Lorenz96Problem):
    """``cls`` (Lorenz96Adjoint or Lorenz96Cost) of the Lorenz-96 extension, built for ``problem``."""
    return getattr(_module(MODULE96), cls)(
        problem.n, problem.dt, problem.obs_steps, problem.obs_indices, problem.obs_values, problem.sigma_o,
        problem.background, problem.sigma_b, problem.F, problem.n_control, problem.check_control,
    )


def _hand_adjoint(problem: Lorenz63Problem):
    return _kernel63("HandAdjoint", problem)


def _adjoint96(problem: Lorenz96Problem):
    return _kernel96("Lorenz96Adjoint", problem)


def _batch_threads(mod: Any, problem: Any) -> tuple[int, dict[str, Any]]:
    """(threads, info) for a batch kernel of ``mod`` on ``problem``."""
    asked = requested_threads(mod.max_threads())
    threads = asked if mod.OPENMP else 1
    if isinstance(problem, Lorenz96Problem):
        # one stored trajectory per thread: keep them all within the problem's budget
        budget = default_memory_budget() if problem.memory_budget is None else problem.memory_budget
        threads = max(1, min(threads, budget // max(problem.trajectory_bytes, 1)))
    info = {"threads": threads, "threads_requested": asked, "openmp": bool(mod.OPENMP)}
    return threads, info


class CythonBackend(Backend):
    name = "cython"
    compiled = True
    kind = "hand adjoint"
    description = "hand adjoints (List 2; Lorenz-96 RK4) in Cython: typed loops without the GIL, OpenMP batches"
    models = ("lorenz63", "lorenz96")
    fused = True
    batch_idiom = "threads"
    native_module = MODULE

    def supports(self, model: str) -> tuple[bool, str]:
        ok, reason = super().supports(model)
        if ok and model == "lorenz96":
            mod, why = native.load(MODULE96)
            if mod is None:
                return False, f"backend 'cython' cannot compute model 'lorenz96' here: {why}"
        return ok, reason

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        # the bound cpdef method is the callable: no Python frame between the caller and C
        vg = _hand_adjoint(problem).value_and_grad
        return Prepared(vg, problem, device=device, dtype=dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return Prepared(_adjoint96(problem).value_and_grad, problem, device=device, dtype=dtype)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        # List 1 on three doubles: the gradient's forward step and J order, nothing stored
        return _kernel63("HandCost", problem).cost

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        # the gradient's forward sweep keeping only the current state (2 N doubles, not the trajectory)
        return _kernel96("Lorenz96Cost", problem).cost

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(_hand_adjoint(problem).descent, iterations, step)

    def _prepare_descent_lorenz96(
        self, problem: Lorenz96Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        return native_descent(_adjoint96(problem).descent, iterations, step)

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        if isinstance(problem, Lorenz96Problem):
            mod = _module(MODULE96)
            threads, info = _batch_threads(mod, problem)
            kernel = mod.Lorenz96Batch(_adjoint96(problem), threads)
        else:
            mod = _module(MODULE)
            threads, info = _batch_threads(mod, problem)
            kernel = mod.HandAdjointBatch(_hand_adjoint(problem), threads)
        run = kernel.value_and_grad

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # shape, B >= 1, finite rows: ValueError here, before any native loop runs
            return run(check_controls(problem, U))

        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, info=info)

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        # the gradient batch's idiom (OpenMP threads over rows, each with its own work arrays)
        # around the forward-only kernel: the batch's cheap-gradient ratio divides like by like
        if isinstance(problem, Lorenz96Problem):
            mod = _module(MODULE96)
            threads, _ = _batch_threads(mod, problem)
            run = mod.Lorenz96CostBatch(_kernel96("Lorenz96Cost", problem), threads).cost
        else:
            mod = _module(MODULE)
            threads, _ = _batch_threads(mod, problem)
            run = mod.HandCostBatch(_kernel63("HandCost", problem), threads).cost
        return lambda U: run(check_controls(problem, U))


BACKENDS = [CythonBackend()]
