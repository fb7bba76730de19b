"""Backends ``jax`` and ``jax-nojit``: reverse-mode AD of the ``jax.numpy`` model.

``jax``: ``jax.value_and_grad`` of the cost in ``_jax_model.py`` under ``jax.jit``, compiled
ahead of time in ``prepare`` (``lower``/``compile``, both timed into ``Prepared.compile_s``),
plus a fused driver running the whole Tbl. 3 descent in one ``lax.fori_loop``.

``jax-nojit``: the same cost and the same ``jax.value_and_grad`` under ``jax.disable_jit()``,
every primitive dispatched from Python — the paper's "JAX without JIT" row of Tbl. 3.

Both compute in float64 (``jax.enable_x64`` as a context around tracing and each call, never
the global flag) or, on request, float32 as the paper's JAX runs did.  Devices: ``cpu``,
``gpu``, ``tpu`` where JAX sees them (JAX's default platform is the default).
"""

from __future__ import annotations

from typing import Callable

from ..problem import Lorenz63Problem
from .base import Backend, DescentResult, Prepared


class _JaxBase(Backend):
    requires = ("jax", "jaxlib")
    dtypes = ("float64", "float32")

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        from . import _jax_model

        return _jax_model.visible_devices()


class JaxBackend(_JaxBase):
    name = "jax"
    kind = "AD, XLA"
    description = "jax.value_and_grad under jax.jit, time loop as lax.scan (AOT-compiled in prepare)"
    fused = True

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        import jax

        from . import _jax_model

        return _jax_model.jit_vg(problem, device, dtype, jax.value_and_grad, info={"mode": "jax.jit"})

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[object], DescentResult]:
        import jax

        from . import _jax_model

        return _jax_model.jit_descent(
            problem, device, dtype, jax.value_and_grad, iterations, step, info={"mode": "jax.jit, lax.fori_loop"},
        )


class JaxNoJitBackend(_JaxBase):
    name = "jax-nojit"
    kind = "AD, eager"
    description = "the same jax.value_and_grad under jax.disable_jit() (paper Tbl. 3 'JAX without JIT')"
    #: ~10 ms per time step per call (seconds for the paper's window, as in Tbl. 3): a hint for
    #: test and benchmark suites to keep this backend's problems short
    slow = True

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        from . import _jax_model

        return _jax_model.eager_vg(problem, device, dtype, info={"mode": "jax.disable_jit"})


BACKENDS = [JaxBackend(), JaxNoJitBackend()]
