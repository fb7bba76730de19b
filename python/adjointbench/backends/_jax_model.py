"""The Lorenz (1963) forward model and 4D-Var cost written once in ``jax.numpy``, and the
device/precision/compile logic of the JAX backends for every model.

Shared by the backends ``jax``, ``jax-nojit`` (``jax_ad.py``) and ``enzyme-jax``
(``enzyme_jax.py``): they differ only in how this one cost is differentiated and run.
Lorenz-96's cost is ``_jax_lorenz96.py``; :func:`cost_for` picks the model's, and everything
below it (single, batched and fused callables) is model-agnostic.

Design choices (paper §3-4):

* The time loop is a ``lax.scan`` (List 1 as the scan body).  A Python loop under ``jit`` is
  unrolled, so XLA's compile time grows with the number of steps (7-12 minutes were reported
  for the paper's code); a scan compiles in a fraction of a second whatever the window.
* A problem is fixed per ``prepare``, so its observation steps, values and the window length
  (``problem.last_obs_step``) are baked in as constants: shapes are static, the scan stops at
  the last observation and J gathers the stored trajectory at the observed steps.
* float64 is the default.  JAX's ``jax_enable_x64`` flag is *not* switched on globally:
  everything JAX does for these backends (tracing, compiling, every call) runs inside the
  thread-local ``jax.enable_x64(True)`` context (:func:`x64`), so the user's own JAX code
  keeps its default (float32) precision.  The flag is a tracing-time setting, hence
  the context around each call too (it costs well under a microsecond).
* Batches (``prepare_batch``) are ``jax.vmap`` of the same value-and-gradient: one XLA
  executable computes all B members (the time loop is one scan over (B, N) states), compiled
  ahead of time once per batch size B on first use.
* This module imports JAX at import time; only the backend modules' methods import it,
  so the package imports without JAX.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..models import Lorenz96Problem, Problem
from ..problem import Lorenz63Problem
from .base import DescentResult, Prepared, PreparedBatch, check_controls

Cost = Callable[[jax.Array], jax.Array]

#: our device names (DESIGN.md) -> JAX platform names
PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "tpu": "tpu"}
#: scan unroll per differentiation route and platform, measured by bench/jax_unroll.py (numbers
#: in bench/README.md): JAX's own AD gains from 2 on CPU and 12 on a GPU; Enzyme-MLIR's
#: gradient of the 2-unrolled loop was 3x slower per call on CPU (25 -> 76 us), so it keeps 1
#: (Lorenz-63; Lorenz-96's table is ``_jax_lorenz96.UNROLL``)
UNROLL = {"jax": {"cpu": 2, "gpu": 12}, "enzyme-jax": {"cpu": 1}}


@contextmanager
def x64() -> Iterator[None]:
    """float64 types for JAX inside this block only (thread-local; no global side effect)."""
    with jax.enable_x64(True):
        yield


def np_dtype(dtype: str) -> type[np.floating[Any]]:
    types: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}
    return types[dtype]


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


def unroll_table(model: str = "lorenz63") -> dict[str, dict[str, int]]:
    """The measured scan unroll per AD route and platform for ``model``."""
    if model == "lorenz96":
        from . import _jax_lorenz96

        return _jax_lorenz96.UNROLL
    return UNROLL


def default_unroll(dev: jax.Device, route: str = "jax", model: str = "lorenz63") -> int:
    """Time steps per iteration of the scan's XLA while loop for this model, AD route and device."""
    return unroll_table(model)[route].get(platform_name(dev), 1)


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


def cost_for(problem: Problem, dtype: str = "float64", unroll: int = 1, route: str = "jax") -> Cost:
    """The ``jax.numpy`` cost J(u) of ``problem``'s model (Lorenz-63 here, Lorenz-96 in
    ``_jax_lorenz96.py``), as AD route ``route`` gets it (``_jax_lorenz96.MIN_TRIP``,
    ``GATHER_PREFIX``)."""
    if isinstance(problem, Lorenz96Problem):
        from . import _jax_lorenz96 as l96

        return l96.make_cost(problem, dtype, unroll, l96.MIN_TRIP.get(route, 0), route not in l96.GATHER_PREFIX)
    return make_cost(problem, dtype, unroll)


# ---- preparing the callables the backends return -----------------------------------------

Differentiate = Callable[[Cost], Callable[[jax.Array], tuple[jax.Array, jax.Array]]]


def _spec(shape: int | tuple[int, ...], dtype: str, dev: jax.Device) -> jax.ShapeDtypeStruct:
    """Abstract argument that pins the compiled executable to ``dev``."""
    shape = (shape,) if isinstance(shape, int) else shape
    return jax.ShapeDtypeStruct(shape, np_dtype(dtype), sharding=jax.sharding.SingleDeviceSharding(dev))


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
    problem: Problem, device: str, dtype: str, differentiate: Differentiate, info: dict[str, Any],
    unroll: int | None = None, route: str = "jax",
) -> Prepared:
    """vg(u) backed by one AOT-compiled XLA executable of ``differentiate(cost)``."""
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    unroll = default_unroll(dev, route, problem.model) if unroll is None else unroll
    compiled, times = _compile(differentiate(cost_for(problem, dtype, unroll, route)), _spec(problem.n_control, dtype, dev))
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


def jit_cost(problem: Problem, device: str, dtype: str, route: str = "jax") -> Callable[[np.ndarray], float]:
    """Forward-only J(u): the same cost, AOT-compiled by XLA without differentiation (no tape)."""
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    unroll = default_unroll(dev, route, problem.model)
    compiled, _ = _compile(cost_for(problem, dtype, unroll, route), _spec(problem.n_control, dtype, dev))
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        u = check(u).astype(npdt, copy=False)
        with x64():
            return float(compiled(u))  # float() waits for the device

    return J


def eager_cost(problem: Problem, device: str, dtype: str) -> Callable[[np.ndarray], float]:
    """Forward-only J(u) under ``jax.disable_jit()``, operation by operation."""
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    cost = cost_for(problem, dtype)
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        u = check(u).astype(npdt, copy=False)
        with x64(), jax.disable_jit(), jax.default_device(dev):
            return float(cost(jax.device_put(u, dev)))

    return J


def eager_vg(problem: Problem, device: str, dtype: str, info: dict[str, Any]) -> Prepared:
    """vg(u) with ``jax.disable_jit()``: every operation dispatched one at a time from Python.

    Under ``disable_jit`` the ``lax.scan`` of the time loop runs as a Python loop too, so this
    is the paper's "JAX without JIT" (Tbl. 3): the same cost, no XLA compilation of it.
    """
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    value_and_grad = jax.value_and_grad(cost_for(problem, dtype))
    check = problem.check_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u).astype(npdt, copy=False)
        with x64(), jax.disable_jit(), jax.default_device(dev):
            J, g = value_and_grad(jax.device_put(u, dev))
            g.block_until_ready()
            return float(J), np.array(g, dtype=np.float64)

    return Prepared(vg, problem, device=platform_name(dev), dtype=dtype, compile_s=None,
                    info={**device_report(dev), **info})


class _PerBatchSize:
    """AOT executables of one batched function, compiled on first use of each batch size B.

    An XLA executable has static shapes and a batch size is known only at the call, so each
    new B costs one compile (timed into ``times[B]``), later calls with that B none.  The lock
    makes two threads asking for a new B at once compile it once.
    """

    def __init__(self, fn: Callable, n: int, dtype: str, dev: jax.Device) -> None:
        self._fn, self._n, self._dtype, self._dev = fn, n, dtype, dev
        self._compiled: dict[int, Any] = {}
        self._lock = threading.Lock()
        #: seconds of trace+lower+compile per batch size compiled so far
        self.times: dict[int, float] = {}

    def __call__(self, B: int) -> Any:
        exe = self._compiled.get(B)
        if exe is None:
            with self._lock:
                exe = self._compiled.get(B)
                if exe is None:
                    exe, times = _compile(self._fn, _spec((B, self._n), self._dtype, self._dev))
                    self.times[B] = sum(times.values())
                    self._compiled[B] = exe
        return exe


def vmap_of(differentiate: Differentiate) -> Differentiate:
    """cost -> ``jax.vmap(differentiate(cost))``: U (B, n_u) -> (J[B], G[B, n_u])."""
    return lambda cost: jax.vmap(differentiate(cost))


def jit_vgb(
    problem: Problem, device: str, dtype: str, batched: Differentiate, info: dict[str, Any],
    unroll: int | None = None, route: str = "jax",
) -> PreparedBatch:
    """vgb(U) backed by the AOT-compiled ``batched(cost)`` (idiom "vmap").

    ``batched`` maps the single-control cost to U (B, n_u) -> (J[B], G[B, n_u]), typically
    :func:`vmap_of` ``jax.value_and_grad``.  vmap turns the scan over (N,) states into one
    scan over (B, N) states, so each time step is one set of vector operations over every
    member; each row is what ``jit_vg`` gives, to rounding (XLA may fuse the batched
    operations differently).  Compiled once per batch size, on its first call.
    """
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    unroll = default_unroll(dev, route, problem.model) if unroll is None else unroll
    executable = _PerBatchSize(batched(cost_for(problem, dtype, unroll, route)), problem.n_control, dtype, dev)

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U).astype(npdt, copy=False)
        run = executable(U.shape[0])
        with x64():
            J, G = run(U)
            G.block_until_ready()
            return np.array(J, dtype=np.float64), np.array(G, dtype=np.float64)

    return PreparedBatch(
        vgb, problem, idiom="vmap", device=platform_name(dev), dtype=dtype, compile_s=None,
        info={**device_report(dev), "scan_unroll": unroll, "batch_compile_s": executable.times, **info},
    )


def jit_cost_batch(problem: Problem, device: str, dtype: str, route: str = "jax") -> Callable[[np.ndarray], np.ndarray]:
    """Forward-only costs(U) -> J[B]: ``jax.vmap`` of the cost ``jit_vgb`` differentiates, AOT-compiled
    without differentiation, once per batch size (the batched forward of the scaling study)."""
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    executable = _PerBatchSize(jax.vmap(cost_for(problem, dtype, default_unroll(dev, route, problem.model), route)),
                               problem.n_control, dtype, dev)

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U).astype(npdt, copy=False)
        run = executable(U.shape[0])
        with x64():
            return np.array(run(U), dtype=np.float64)  # np.array waits for the device

    return costs


def eager_cost_batch(problem: Problem, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """Forward-only costs(U): ``jax.vmap`` of the eager cost under ``jax.disable_jit()``."""
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    cost = jax.vmap(cost_for(problem, dtype))

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U).astype(npdt, copy=False)
        with x64(), jax.disable_jit(), jax.default_device(dev):
            return np.array(cost(jax.device_put(U, dev)), dtype=np.float64)

    return costs


def eager_vgb(problem: Problem, device: str, dtype: str, info: dict[str, Any]) -> PreparedBatch:
    """vgb(U): ``jax.vmap`` of the eager value-and-gradient under ``jax.disable_jit()``.

    Each primitive is still dispatched from Python, once for the whole batch (the ops act
    on (B, N) arrays), so a batch costs about what one call costs, not B times it.
    """
    dev = jax_device(device)
    npdt = np_dtype(dtype)
    value_and_grad = jax.vmap(jax.value_and_grad(cost_for(problem, dtype)))

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U).astype(npdt, copy=False)
        with x64(), jax.disable_jit(), jax.default_device(dev):
            J, G = value_and_grad(jax.device_put(U, dev))
            G.block_until_ready()
            return np.array(J, dtype=np.float64), np.array(G, dtype=np.float64)

    return PreparedBatch(vgb, problem, idiom="vmap", device=platform_name(dev), dtype=dtype, compile_s=None,
                         info={**device_report(dev), **info})


class FusedDescent:
    """The whole Tbl. 3 descent as one compiled ``lax.fori_loop``: ``run(u0) -> DescentResult``."""

    def __init__(self, compiled: Any, problem: Problem, device: str, dtype: str,
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
    problem: Problem, device: str, dtype: str, differentiate: Differentiate,
    iterations: int, step: float, info: dict[str, Any], unroll: int | None = None, route: str = "jax",
) -> FusedDescent:
    dev = jax_device(device)
    unroll = default_unroll(dev, route, problem.model) if unroll is None else unroll
    run = descent(differentiate(cost_for(problem, dtype, unroll, route)), iterations, step, dtype)
    compiled, times = _compile(run, _spec(problem.n_control, "float64", dev))
    return FusedDescent(compiled, problem, platform_name(dev), dtype, times,
                        {**device_report(dev), "scan_unroll": unroll, **info})
