"""Backends ``jax`` and ``jax-nojit``: reverse-mode AD of the ``jax.numpy`` models.

Models: Lorenz-63 (cost in ``_jax_model.py``) and Lorenz-96 (``_jax_lorenz96.py``), both a
``lax.scan`` over time steps; the compile/device logic is shared (``_jax_model.py``).

``jax``: ``jax.value_and_grad`` of the cost under ``jax.jit``, compiled ahead of time in
``prepare`` (``lower``/``compile``, both timed into ``Prepared.compile_s``), plus a fused
driver running the whole Tbl. 3 descent in one ``lax.fori_loop`` (both models); batches are
``jax.vmap`` of the same value-and-gradient under ``jit``, compiled once per batch size.

``jax-nojit``: the same cost and the same ``jax.value_and_grad`` under ``jax.disable_jit()``,
every primitive dispatched from Python — the paper's "JAX without JIT" row of Tbl. 3; its
batches are the same ``jax.vmap``, also without ``jit``.

Both compute in float64 (``jax.enable_x64`` as a context around tracing and each call, never
the global flag) or, on request, float32 as the paper's JAX runs did.  Devices: ``cpu``,
``gpu``, ``tpu`` where JAX sees them (JAX's default platform is the default).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..models import Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch


class _JaxBase(Backend):
    requires = ("jax", "jaxlib")
    dtypes = ("float64", "float32")
    models = ("lorenz63", "lorenz96")
    batch_idiom = "vmap"

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        from . import _jax_model

        return _jax_model.visible_devices()


class JaxBackend(_JaxBase):
    name = "jax"
    compiled = True
    kind = "AD, XLA"
    description = "jax.value_and_grad under jax.jit, time loop as lax.scan (AOT-compiled in prepare)"
    fused = True

    def _prepare(self, problem: Problem, *, device: str, dtype: str) -> Prepared:
        import jax

        from . import _jax_model

        return _jax_model.jit_vg(problem, device, dtype, jax.value_and_grad, info={"mode": "jax.jit"})

    # the cost is picked by problem.model inside _jax_model: one code path for both models
    _prepare_lorenz96 = _prepare

    def _prepare_descent(
        self, problem: Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        import jax

        from . import _jax_model

        return _jax_model.jit_descent(
            problem, device, dtype, jax.value_and_grad, iterations, step, info={"mode": "jax.jit, lax.fori_loop"},
        )

    _prepare_descent_lorenz96 = _prepare_descent

    def _prepare_cost(self, problem: Problem, *, device: str, dtype: str):
        from . import _jax_model

        return _jax_model.jit_cost(problem, device, dtype)

    _prepare_cost_lorenz96 = _prepare_cost

    def _prepare_cost_batch(self, problem: Problem, *, device: str, dtype: str):
        from . import _jax_model

        return _jax_model.jit_cost_batch(problem, device, dtype)

    def _prepare_batch(self, problem: Problem, *, device: str, dtype: str) -> PreparedBatch:
        import jax

        from . import _jax_model

        return _jax_model.jit_vgb(problem, device, dtype, _jax_model.vmap_of(jax.value_and_grad),
                                  info={"mode": "jax.jit(jax.vmap(jax.value_and_grad))"})


class JaxNoJitBackend(_JaxBase):
    name = "jax-nojit"
    kind = "AD, eager"
    description = "the same jax.value_and_grad under jax.disable_jit() (paper Tbl. 3 'JAX without JIT')"
    #: ~10 ms per time step per call (seconds for the paper's window, as in Tbl. 3): a hint for
    #: test and benchmark suites to keep this backend's problems short
    slow = True

    def _prepare(self, problem: Problem, *, device: str, dtype: str) -> Prepared:
        from . import _jax_model

        return _jax_model.eager_vg(problem, device, dtype, info={"mode": "jax.disable_jit"})

    _prepare_lorenz96 = _prepare

    def _prepare_cost(self, problem: Problem, *, device: str, dtype: str):
        from . import _jax_model

        return _jax_model.eager_cost(problem, device, dtype)

    _prepare_cost_lorenz96 = _prepare_cost

    def _prepare_cost_batch(self, problem: Problem, *, device: str, dtype: str):
        from . import _jax_model

        return _jax_model.eager_cost_batch(problem, device, dtype)

    def _prepare_batch(self, problem: Problem, *, device: str, dtype: str) -> PreparedBatch:
        from . import _jax_model

        return _jax_model.eager_vgb(problem, device, dtype, info={"mode": "jax.vmap under jax.disable_jit"})


BACKENDS = [JaxBackend(), JaxNoJitBackend()]
