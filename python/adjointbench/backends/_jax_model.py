"""The Lorenz (1963) forward model and 4D-Var cost written once in ``jax.numpy``.

Shared by the backends ``jax``, ``jax-nojit`` (``jax_ad.py``) and ``enzyme-jax``
(``enzyme_jax.py``): they differ only in how this one cost is differentiated and run.

Design choices (paper §3-4):

* The time loop is a ``lax.scan`` (List 1 as the scan body).  A Python loop under ``jit`` is
  unrolled, so XLA's compile time grows with the number of steps (issue 5 cites 7-12 minutes
  for the paper's code); a scan compiles in a fraction of a second whatever the window.
* A problem is fixed per ``prepare``, so its observation steps, values and the window length
  (``problem.last_obs_step``) are baked in as constants: shapes are static, the scan stops at
  the last observation and J gathers the stored trajectory at the observed steps.
* float64 is the default.  JAX's ``jax_enable_x64`` flag is *not* switched on globally:
  everything JAX does for these backends (tracing, compiling, every call) runs inside the
  thread-local ``jax.enable_x64(True)`` context (:func:`x64`), so the user's own JAX code
  keeps its default (float32) precision.  The flag is a tracing-time setting, hence
  the context around each call too (it costs well under a microsecond).
* This module imports JAX at import time; only the backend modules' methods import it,
  so the package imports without JAX.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..problem import Lorenz63Problem
from .base import DescentResult, Prepared

Cost = Callable[[jax.Array], jax.Array]

#: our device names (DESIGN.md) -> JAX platform names
PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "tpu": "tpu"}
#: scan unroll per differentiation route and platform, measured by bench/jax_unroll.py (numbers
#: in bench/README.md): JAX's own AD gains from 2 on CPU and 12 on a GPU; Enzyme-MLIR's
#: gradient of the 2-unrolled loop was 3x slower per call on CPU (25 -> 76 us), so it keeps 1
UNROLL = {"jax": {"cpu": 2, "gpu": 12}, "enzyme-jax": {"cpu": 1}}


@contextmanager
def x64() -> Iterator[None]:
    """float64 types for JAX inside this block only (thread-local; no global side effect)."""
    with jax.enable_x64(True):
        yield


def np_dtype(dtype: str) -> type:
    return {"float64": np.float64, "float32": np.float32}[dtype]


def visible_devices() -> list[str]:
    """Our names of the JAX platforms present here, JAX's default platform first."""
    found = []
    for name, platform in PLATFORMS.items():
        try:
            if jax.devices(platform):
                found.append(name)
        except RuntimeError:  # platform not installed / no such device
            continue
    default = jax.default_backend()
    default = "gpu" if default in ("cuda", "rocm") else default
    return sorted(found, key=lambda d: d != default)


def jax_device(device: str) -> jax.Device:
    return jax.devices(PLATFORMS[device])[0]


def device_report(dev: jax.Device) -> dict[str, Any]:
    """What to record with a result about the device that actually ran the computation."""
    return {"jax_device": str(dev), "device_kind": dev.device_kind, "jax_version": jax.__version__}


def default_unroll(dev: jax.Device, route: str = "jax") -> int:
    """Euler steps per iteration of the scan's XLA while loop for this AD route on this device."""
    return UNROLL[route].get(platform_name(dev), 1)


def platform_name(dev: jax.Device) -> str:
    """Our device name ('cpu', 'gpu', 'tpu') for a JAX device."""
    return "gpu" if dev.platform in ("cuda", "rocm", "gpu") else dev.platform


def euler_step(w: jax.Array, sigma: Any, r: Any, beta: Any, dt: float) -> jax.Array:
    """One forward-Euler step of eq. (20), List 1."""
    x, y, z = w[0], w[1], w[2]
    return jnp.stack([
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    ])


def trajectory(x0: jax.Array, sigma: Any, r: Any, beta: Any, dt: float, nlast: int, unroll: int = 1) -> jax.Array:
    """States w_0..w_nlast, shape (nlast+1, 3), the loop as a ``lax.scan`` (``unroll`` steps per
    iteration of the XLA while loop: same arithmetic, fewer loop iterations)."""
    if nlast == 0:
        return x0[None]

    def body(w: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        w1 = euler_step(w, sigma, r, beta, dt)
        return w1, w1

    _, ws = lax.scan(body, x0, None, length=nlast, unroll=max(1, min(unroll, nlast)))
    return jnp.concatenate([x0[None], ws])


def make_cost(problem: Lorenz63Problem, dtype: str = "float64", unroll: int = 1) -> Cost:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2 for this problem; u has problem.n_control entries.

    For control ``state`` the parameters are the problem's, baked in as constants.
    """
    npdt = np_dtype(dtype)
    steps = np.asarray(problem.obs_steps, dtype=np.int32)
    obs = np.asarray(problem.obs_values, dtype=npdt)
    nlast = problem.last_obs_step
    dt = problem.dt
    fixed = tuple(npdt(problem.params[k]) for k in ("sigma", "r", "beta"))
    n = problem.n_control

    def cost(u: jax.Array) -> jax.Array:
        sigma, r, beta = (u[3], u[4], u[5]) if n == 6 else fixed
        w = trajectory(u[:3], sigma, r, beta, dt, nlast, unroll)
        d = w[steps] - obs
        return 0.5 * jnp.sum(d * d)

    return cost


def descent(
    value_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]], iterations: int, step: float,
    dtype: str = "float64",
) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """The Tbl. 3 workload as one ``lax.fori_loop``: run(u0) -> (u_final, J at each iterate).

    The iterate is kept in float64 whatever ``dtype`` the gradient is computed in, so that a
    float32 run reproduces the Python-driven loop (which keeps ``u`` as a float64 ndarray and
    gets a float32-accurate gradient back as float64).
    """
    lo = np_dtype(dtype)

    def run(u0: jax.Array) -> tuple[jax.Array, jax.Array]:
        def body(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            u, costs = carry
            J, g = value_and_grad(u.astype(lo))
            return u - step * g.astype(jnp.float64), costs.at[i].set(J.astype(jnp.float64))

        return lax.fori_loop(0, iterations, body, (u0, jnp.zeros(iterations, dtype=jnp.float64)))

    return run


# ---- preparing the callables the backends return -----------------------------------------

Differentiate = Callable[[Cost], Callable[[jax.Array], tuple[jax.Array, jax.Array]]]


def _spec(n: int, dtype: str, dev: jax.Device) -> jax.ShapeDtypeStruct:
    """Abstract argument that pins the compiled executable to ``dev``."""
    return jax.ShapeDtypeStruct((n,), np_dtype(dtype), sharding=jax.sharding.SingleDeviceSharding(dev))


def _compile(fn: Callable, spec: jax.ShapeDtypeStruct) -> tuple[Any, dict[str, float]]:
    """AOT-compile ``jax.jit(fn)`` for ``spec``; times of tracing+lowering and of XLA compile."""
    with x64():
        t0 = time.perf_counter()
        lowered = jax.jit(fn).lower(spec)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
    return compiled, {"trace_lower_s": t1 - t0, "xla_compile_s": t2 - t1}


def jit_vg(
    problem: Lorenz63Problem, device: str, dtype: str, differentiate: Differentiate, info: dict[str, Any],
    unroll: int | None = None, route: str = "jax",
) -> Prepared:
    """vg(u) backed by one AOT-compiled XLA executable of ``differentiate(cost)``."""
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    unroll = default_unroll(dev, route) if unroll is None else unroll
    compiled, times = _compile(differentiate(make_cost(problem, dtype, unroll)), _spec(problem.n_control, dtype, dev))
    check = problem.check_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u).astype(npdt, copy=False)
        with x64():
            J, g = compiled(u)
            # wait for the device: what is timed is the work, not its dispatch
            g.block_until_ready()
            return float(J), np.array(g, dtype=np.float64)

    with x64():
        used = platform_name(next(iter(compiled(problem.u0.astype(npdt))[1].devices())))
    return Prepared(
        vg, problem, device=used, dtype=dtype, compile_s=sum(times.values()),
        info={**device_report(dev), **times, "scan_unroll": unroll, **info},
    )


def eager_vg(problem: Lorenz63Problem, device: str, dtype: str, info: dict[str, Any]) -> Prepared:
    """vg(u) with ``jax.disable_jit()``: every operation dispatched one at a time from Python.

    Under ``disable_jit`` the ``lax.scan`` of the time loop runs as a Python loop too, so this
    is the paper's "JAX without JIT" (Tbl. 3): the same cost, no XLA compilation of it.
    """
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    value_and_grad = jax.value_and_grad(make_cost(problem, dtype))
    check = problem.check_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u).astype(npdt, copy=False)
        with x64(), jax.disable_jit(), jax.default_device(dev):
            J, g = value_and_grad(jax.device_put(u, dev))
            g.block_until_ready()
            return float(J), np.array(g, dtype=np.float64)

    return Prepared(vg, problem, device=platform_name(dev), dtype=dtype, compile_s=None,
                    info={**device_report(dev), **info})


class FusedDescent:
    """The whole Tbl. 3 descent as one compiled ``lax.fori_loop``: ``run(u0) -> DescentResult``."""

    def __init__(self, compiled: Any, problem: Lorenz63Problem, device: str, dtype: str,
                 times: dict[str, float], info: dict[str, Any]) -> None:
        self._compiled = compiled
        self._check = problem.check_control
        self.device = device
        self.dtype = dtype
        self.compile_s = sum(times.values())
        self.info = {**times, **info}

    def __call__(self, u0: np.ndarray) -> DescentResult:
        u0 = self._check(u0)
        with x64():
            u, costs = self._compiled(u0)
            costs.block_until_ready()
            return DescentResult(u=np.array(u, dtype=np.float64), costs=np.array(costs, dtype=np.float64))


def jit_descent(
    problem: Lorenz63Problem, device: str, dtype: str, differentiate: Differentiate,
    iterations: int, step: float, info: dict[str, Any], unroll: int | None = None, route: str = "jax",
) -> FusedDescent:
    dev = jax_device(device)
    unroll = default_unroll(dev, route) if unroll is None else unroll
    run = descent(differentiate(make_cost(problem, dtype, unroll)), iterations, step, dtype)
    compiled, times = _compile(run, _spec(problem.n_control, "float64", dev))
    return FusedDescent(compiled, problem, platform_name(dev), dtype, times,
                        {**device_report(dev), "scan_unroll": unroll, **info})
