"""Backend ``enzyme-jax``: the JAX forward model differentiated by Enzyme at the MLIR level.

The cost is the very ``jax.numpy`` cost of the backends ``jax``/``jax-nojit``
(``_jax_model.py``), wrapped by ``enzyme_ad.jax.enzyme_jax_ir()``: JAX lowers it to
StableHLO, and Enzyme-MLIR, not JAX's own AD, produces the derivative of that IR when
``jax.value_and_grad`` asks for it; the whole thing is compiled by XLA under ``jax.jit``.
The time loop stays a ``lax.scan`` (an ``stablehlo.while`` that Enzyme differentiates).
No published comparison has this row; it sits between ``jax`` (AD in JAX) and ``enzyme``
(AD of LLVM IR).  Same precision, devices, models (Lorenz-63 and Lorenz-96) and fused
Tbl. 3 driver as ``jax``.

Batches: ``jax.vmap`` cannot be applied *around* Enzyme's primitive (enzyme-ad 0.0.16 has
no batching rule for ``enzyme_primal``: ``NotImplementedError``), so the vmap goes *inside*:
``enzyme_jax_ir`` wraps the vmapped cost U (B, n_u) -> J[B], and Enzyme-MLIR differentiates
that batched StableHLO (one ``stablehlo.while`` over (B, N) states) in reverse mode, seeded
with ones: G[b] = dJ_b/dU_b, the members being independent.  Still one XLA executable for the
batch (idiom "vmap"), no Python loop, and the derivative still Enzyme's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from ..models import Problem
from .base import Backend, DescentResult, Prepared, PreparedBatch


@lru_cache(maxsize=1)
def _imports() -> tuple[bool, str]:
    """enzyme-ad may be installed yet built for another jaxlib: try it once."""
    try:
        from enzyme_ad.jax import enzyme_jax_ir  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure means "cannot run here"
        return False, f"enzyme_ad.jax does not import: {type(e).__name__}: {' '.join(str(e).split())}"
    return True, ""


def _enzyme_value_and_grad(cost: Callable) -> Callable:
    """``jax.value_and_grad`` of the cost as Enzyme-MLIR differentiates it."""
    import jax
    from enzyme_ad.jax import enzyme_jax_ir

    return jax.value_and_grad(enzyme_jax_ir()(cost))


def _enzyme_batch_value_and_grad(cost: Callable) -> Callable:
    """U (B, n_u) -> (J[B], G[B, n_u]): Enzyme-MLIR's reverse mode of the vmapped cost.

    The pullback of J[B] seeded with ones gives sum_b dJ_b/dU = the rows dJ_b/dU_b, since
    J_b depends on U_b only.
    """
    import jax
    import jax.numpy as jnp
    from enzyme_ad.jax import enzyme_jax_ir

    batched = enzyme_jax_ir()(jax.vmap(cost))

    def vgb(U: Any) -> tuple[Any, Any]:
        J, pullback = jax.vjp(batched, U)
        (G,) = pullback(jnp.ones_like(J))
        return J, G

    return vgb


def _versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"mode": "enzyme_jax_ir + jax.jit", "enzyme_ad_version": version("enzyme-ad")}
    except PackageNotFoundError:
        return {"mode": "enzyme_jax_ir + jax.jit"}


class EnzymeJaxBackend(Backend):
    name = "enzyme-jax"
    compiled = True
    kind = "AD, MLIR"
    description = "the JAX model's StableHLO differentiated by Enzyme-MLIR (enzyme_ad.jax), under jax.jit"
    requires = ("jax", "jaxlib", "enzyme_ad")
    dtypes = ("float64", "float32")
    models = ("lorenz63", "lorenz96")
    fused = True
    batch_idiom = "vmap"

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok:
            return ok, reason
        return _imports()

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        from . import _jax_model

        return _jax_model.visible_devices()

    def _prepare(self, problem: Problem, *, device: str, dtype: str) -> Prepared:
        from . import _jax_model

        return _jax_model.jit_vg(problem, device, dtype, _enzyme_value_and_grad, info=_versions(), route=self.name)

    # the cost is picked by problem.model inside _jax_model: one code path for both models
    _prepare_lorenz96 = _prepare

    def _prepare_descent(
        self, problem: Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        from . import _jax_model

        return _jax_model.jit_descent(
            problem, device, dtype, _enzyme_value_and_grad, iterations, step, info=_versions(), route=self.name,
        )

    _prepare_descent_lorenz96 = _prepare_descent

    def _prepare_cost(self, problem: Problem, *, device: str, dtype: str):
        # the forward pass is plain JAX (Enzyme-MLIR differentiates it): the primal compiled by XLA
        from . import _jax_model

        return _jax_model.jit_cost(problem, device, dtype, route=self.name)

    _prepare_cost_lorenz96 = _prepare_cost

    def _prepare_cost_batch(self, problem: Problem, *, device: str, dtype: str):
        from . import _jax_model

        return _jax_model.jit_cost_batch(problem, device, dtype, route=self.name)

    def _prepare_batch(self, problem: Problem, *, device: str, dtype: str) -> PreparedBatch:
        from . import _jax_model

        info = {**_versions(), "batch_mode": "enzyme_jax_ir(jax.vmap(cost)), reverse mode seeded with ones"}
        return _jax_model.jit_vgb(problem, device, dtype, _enzyme_batch_value_and_grad, info=info, route=self.name)


BACKENDS = [EnzymeJaxBackend()]
