"""Backend ``enzyme-jit``: the same C++ source as ``enzyme``, compiled at run time by JAX.

The just-in-time route of Enzyme-JAX: ``enzyme_ad.jax.cpp_call`` hands
kernels/lorenz63_enzyme.cpp (front door ``lorenz63_vg_tensor``, whose array shapes fix the
number of observations) to enzyme-ad's embedded clang + Enzyme when the JAX function is
compiled in ``prepare``, and XLA calls the result.  Next to ``enzyme`` (the same IR built
ahead of time and called through Cython) it shows what the JIT route costs: compile time in
prepare and JAX's dispatch on every call.  The C++ source is read from the source checkout.

Lorenz-96: kernels/lorenz96_enzyme.cpp, front door ``lorenz96_vg_tensor``, whose template
parameters (N, the observation counts) are deduced from the array shapes, so every problem
size is its own compilation; Enzyme's scratch is a second output of the call (XLA owns it).
No batch or fused driver for Lorenz-96 here (a vmap of cpp_call has no batching rule).

``prepare_cost`` (J alone) calls the front doors ``lorenz63_cost_tensor`` /
``lorenz96_cost_tensor`` of the same sources: the primal ``cost`` that Enzyme differentiates,
compiled by the same cpp_call route (its own compilation in prepare).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..models import Lorenz96Problem
from ..native import kernel_source
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, DescentResult, Prepared, missing_modules, timed

SOURCE = "lorenz63_enzyme.cpp"
FRONT_DOOR = "lorenz63_vg_tensor"
SOURCE96 = "lorenz96_enzyme.cpp"
FRONT_DOOR96 = "lorenz96_vg_tensor"
COST_DOOR = "lorenz63_cost_tensor"
COST_DOOR96 = "lorenz96_cost_tensor"


def _compiled(problem: Lorenz63Problem, iterations: int | None = None, step: float = 0.0, *, cost: bool = False):
    """A jitted function of the full 6-vector u: (J, grad), with iterations the descent, or
    with ``cost`` J alone (res = (J,))."""
    import jax
    import jax.numpy as jnp
    from enzyme_ad.jax import cpp_call

    source = kernel_source(SOURCE).read_text()
    n = problem.n_control
    reals = np.array([problem.dt])
    steps = np.asarray(problem.obs_steps, dtype=np.int32)
    obs = np.asarray(problem.obs_values, dtype=np.float64)
    if cost:
        def forward(u6):
            (res,) = cpp_call(u6, reals, steps, obs, out_shapes=[jax.core.ShapedArray((1,), jnp.float64)],
                              source=source, fn=COST_DOOR)
            return res

        return jax.jit(forward)
    out_shapes = [jax.core.ShapedArray((7,), jnp.float64)]

    def value_and_grad(u6):
        (res,) = cpp_call(u6, reals, steps, obs, out_shapes=out_shapes, source=source, fn=FRONT_DOOR)
        return res

    if iterations is None:
        return jax.jit(value_and_grad)

    def descent(u6):
        def body(i, carry):
            u, costs = carry
            res = value_and_grad(u)
            return u.at[:n].set(u[:n] - step * res[1:1 + n]), costs.at[i].set(res[0])

        return jax.lax.fori_loop(0, iterations, body, (u6, jnp.zeros(iterations)))

    return jax.jit(descent)


def _compiled96(problem: Lorenz96Problem, *, cost: bool = False):
    """A jitted function of the control u: res = (J, grad) from lorenz96_vg_tensor, or with
    ``cost`` res = (J,) from lorenz96_cost_tensor."""
    import jax
    import jax.numpy as jnp
    from enzyme_ad.jax import cpp_call

    source = kernel_source(SOURCE96).read_text()
    n, nc = problem.n, problem.n_control
    reals = np.array([problem.dt, problem.F, problem.sigma_o, problem.sigma_b, float(problem.has_background)])
    steps = np.asarray(problem.obs_steps, dtype=np.int32)
    idx = np.asarray(problem.obs_indices, dtype=np.int32)
    obs = np.asarray(problem.obs_values, dtype=np.float64)
    xb = np.zeros(n) if problem.background is None else np.asarray(problem.background, dtype=np.float64)
    nres, nwork, door = (1, 4 * n, COST_DOOR96) if cost else (nc + 1, 8 * n, FRONT_DOOR96)
    out_shapes = [jax.core.ShapedArray((nres,), jnp.float64), jax.core.ShapedArray((nwork,), jnp.float64)]

    def value_and_grad(u):
        res, _work = cpp_call(u, reals, steps, idx, obs, xb, out_shapes=out_shapes, source=source, fn=door)
        return res

    return jax.jit(value_and_grad)


class EnzymeJITBackend(Backend):
    name = "enzyme-jit"
    compiled = True
    kind = "AD, source → IR (JIT)"
    description = "the enzyme backend's C++ source differentiated by Enzyme at run time through enzyme_ad.jax.cpp_call (JAX/XLA)"
    models = ("lorenz63", "lorenz96")
    fused = True
    fused_models = ("lorenz63",)
    requires = ("jax", "enzyme_ad")

    def available(self) -> tuple[bool, str]:
        reason = missing_modules(*self.requires)
        if reason:
            return False, reason
        try:
            kernel_source(SOURCE)
        except FileNotFoundError as e:
            return False, str(e)
        return True, ""

    def supports(self, model: str) -> tuple[bool, str]:
        ok, reason = super().supports(model)
        if ok and model == "lorenz96":
            try:
                kernel_source(SOURCE96)
            except FileNotFoundError as e:
                return False, str(e)
        return ok, reason

    @staticmethod
    def _full(problem: Lorenz63Problem, u: np.ndarray) -> np.ndarray:
        """The 6-vector the C++ front door takes: u, completed by the fixed parameters."""
        if problem.n_control == 6:
            return u
        return np.concatenate([u, [problem.params[k] for k in PARAM_NAMES]])

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        import jax

        with jax.enable_x64(True):
            fn = _compiled(problem)
            u0 = self._full(problem, problem.u0)
            _, compile_s = timed(lambda: np.asarray(fn(u0)))
        check, full, n = problem.check_control, self._full, problem.n_control

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            u = full(problem, check(u))
            with jax.enable_x64(True):
                res = np.asarray(fn(u))
            return float(res[0]), res[1:1 + n].copy()

        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=compile_s, info={"jax": jax.__version__})

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        import jax

        with jax.enable_x64(True):
            fn = _compiled96(problem)
            _, compile_s = timed(lambda: np.asarray(fn(problem.u0)))
        check = problem.check_control

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            u = check(u)
            with jax.enable_x64(True):
                res = np.asarray(fn(u))
            return float(res[0]), res[1:].copy()

        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=compile_s, info={"jax": jax.__version__})

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        import jax

        with jax.enable_x64(True):
            fn = _compiled(problem, cost=True)
            fn(self._full(problem, problem.u0))  # compile here, not in the timed call
        check, full = problem.check_control, self._full

        def J(u: np.ndarray) -> float:
            u = full(problem, check(u))
            with jax.enable_x64(True):
                return float(np.asarray(fn(u))[0])

        return J

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        import jax

        with jax.enable_x64(True):
            fn = _compiled96(problem, cost=True)
            fn(problem.u0)
        check = problem.check_control

        def J(u: np.ndarray) -> float:
            u = check(u)
            with jax.enable_x64(True):
                return float(np.asarray(fn(u))[0])

        return J

    def _prepare_descent(
        self, problem: Lorenz63Problem, *, iterations: int, step: float, device: str, dtype: str
    ) -> Callable[[np.ndarray], DescentResult]:
        import jax

        with jax.enable_x64(True):
            fn = _compiled(problem, iterations, step)
            fn(self._full(problem, problem.u0))  # compile here, not in the timed call
        check, full, n = problem.check_control, self._full, problem.n_control

        def run(u0: np.ndarray) -> DescentResult:
            u = full(problem, check(u0))
            with jax.enable_x64(True):
                u_final, costs = fn(u)
                return DescentResult(u=np.array(u_final[:n]), costs=np.array(costs))

        return run


BACKENDS = [EnzymeJITBackend()]
