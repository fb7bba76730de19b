"""Backends ``complex-step`` and ``fd``: derivative approximations of the Python model's J.

They are references for verification and for the Fig. 1 study, not adjoints: their cost grows
with the number of controls (one forward run per control, two for central differences).
"""

from __future__ import annotations

import numpy as np

from .. import verify
from .base import Backend, Prepared


class ComplexStepBackend(Backend):
    name = "complex-step"
    kind = "reference"
    reference = True
    models = ("lorenz63", "lorenz96")
    description = "complex-step derivative (eq. 24, h = 1e-20) of the Python forward model"

    def _prepare(self, problem, *, device: str, dtype: str) -> Prepared:
        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            return verify.reference(problem, u)

        return Prepared(vg, problem, device=device, dtype=dtype)

    _prepare_lorenz96 = _prepare  # the problem carries its own cost: one preparation for every model


class FiniteDifferenceBackend(Backend):
    name = "fd"
    kind = "reference"
    reference = True
    models = ("lorenz63", "lorenz96")
    description = "central finite differences (eq. 22) of the Python forward model"

    def _prepare(self, problem, *, device: str, dtype: str) -> Prepared:
        def f(u: np.ndarray) -> float:
            return float(problem.cost(u))

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            u = problem.check_control(u)
            return f(u), verify.fd_gradient(f, u)

        return Prepared(vg, problem, device=device, dtype=dtype)

    _prepare_lorenz96 = _prepare  # the problem carries its own cost: one preparation for every model


BACKENDS = [ComplexStepBackend(), FiniteDifferenceBackend()]
