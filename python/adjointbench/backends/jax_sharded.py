"""Backend ``jax-sharded``: the Lorenz-96 4D-Var gradient with the state split over devices.

Every device JAX sees on the chosen platform (``cpu``, ``gpu``, ``tpu``; on CPU as many as
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` or ``JAX_NUM_CPU_DEVICES=K`` make) is one
position of a 1-D mesh ``('x',)`` (``jax.make_mesh(..., axis_types=(AxisType.Auto,))``: JAX
0.10's default, Explicit, makes ``shard_map`` refuse unsharded inputs).  The N variables of the
ring are split into contiguous blocks, one per device (``NamedSharding(mesh, P('x'))``), and

* the RK4 step runs inside ``jax.shard_map``: each of its four tendency evaluations
  f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F needs x_{i-2}, x_{i-1} from the block on the left
  and x_{i+1} from the block on the right, exchanged as halos by two ``lax.ppermute`` around
  the ring.  Where every block holds >= 8 variables the exchange is once per *step* (8 values
  from the left, 4 from the right; the stages then run on shrinking extended ranges,
  :func:`wide_stepper`), else once per tendency (2 + 1 values, :func:`ppermute_ring`).
  The wide halo trades 12 recomputed entries per block for 3/4 of the collectives: at
  N = 40000, 40 steps, on 4 forced CPU devices the forward J took 16 ms against 28 ms and the
  gradient 96 against 110 ms (``HALO``; ``info['halo']`` says which ran);
* the time loop is a ``lax.scan`` inside the same ``shard_map`` (one XLA while loop per
  device, neighbours talking through collective-permutes), with each step a ``jax.checkpoint``
  so that reverse mode stores the states only (as ``jax``'s Lorenz-96 and the hand adjoint);
* each device sums its own observation misfits (and background term) and ``lax.psum`` adds
  the per-device sums into J;
* the gradient is ``jax.value_and_grad`` of that ``shard_map``-ed cost, all under one
  ``jax.jit`` compiled ahead of time in ``prepare``.  JAX's transpose rules do the parallel
  adjoint: each ``ppermute`` becomes the opposite ``ppermute`` (the adjoint halo exchange),
  and for control ``state+params`` the cotangent of the replicated F is the ``psum`` of every
  device's contribution (the transpose of using an unsharded value on every device).

Observed indices may be any subset: the observations become per-device dense blocks
(values and a 0/1 weight per variable, built from ``problem.obs_indices``), so a device sums
only what it observes.  float64 through the thread-local ``jax.enable_x64(True)`` (never the
global flag); float32 is not offered (the backend exists for its parallel structure).

N not divisible by the device count K: the blocks are padded, not refused.  Each block has
b = ceil(N/K) slots; the first N mod K blocks hold b variables, the others b - 1 and one unused
slot at their end.  A short block takes its right halo into that slot and sends its *last
real* values to the left halo of the next block (``lax.dynamic_slice`` at a per-device
offset from ``lax.axis_index``); the unused slot is reset to 0 after every step and weighs 0
in J, so padded and unpadded runs compute the same numbers (to rounding of the sums).  Each block must hold at least
two variables (the left halo comes from one neighbour): N < 2K is a ValueError naming N and K.

Lorenz-63 has 3 variables, nothing to shard: its J and gradient run unsharded on one device
per process (a ``lax.scan`` of List 1 under ``jit(value_and_grad)``, as the backend ``jax``
does), and only its batches are sharded (by member, below) -- there the devices do help.

Batches (``prepare_batch``, idiom "vmap (sharded members)"): the ensemble axis is sharded
instead, each device integrating its own members on the whole ring with no communication:
``jit(vmap(value_and_grad(J)), in_shardings=P('x', None))`` of the single-device cost (the
same local code with the ring closed on the device).  B not divisible by K: the batch is
padded with copies of the last row and the padded rows' results dropped.  Which to shard
(README): the state when one gradient of a large N is wanted fast (or N x window does not fit
one device); the members when there are several independent gradients (ensembles,
multi-start): no halos, no collectives, near-perfect scaling while B >= K.

Several hosts (multi-controller JAX): when ``JAX_COORDINATOR_ADDRESS`` is set (or
``ADJOINTBENCH_DISTRIBUTED=1`` under SLURM / Open MPI, whose variables JAX detects itself),
the first use of this backend calls ``jax.distributed.initialize()`` once, with
``num_processes`` / ``process_id`` from ``ADJOINTBENCH_NUM_PROCESSES`` /
``ADJOINTBENCH_PROCESS_ID`` when given (JAX reads ``JAX_COORDINATOR_ADDRESS``,
``JAX_LOCAL_DEVICE_IDS``, ``JAX_COORDINATOR_BIND_ADDRESS`` itself).  It must happen before
any other JAX use in the process, so run this backend alone in each process (e.g.
``adjointbench grad --backend jax-sharded``, the same command on every host).  The mesh is
``jax.devices(platform)`` (every process's devices), inputs are built with
``jax.make_array_from_callback`` from the copy of u every process holds, and results come
back by ``jax.device_get`` when fully addressable, else ``multihost_utils.process_allgather``.
CPU collectives across processes use gloo.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models import Lorenz96Problem, Problem
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

AXIS = "x"
#: environment switches for multi-host runs (module docstring)
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
DISTRIBUTED_ENV = "ADJOINTBENCH_DISTRIBUTED"
NUM_PROCESSES_ENV = "ADJOINTBENCH_NUM_PROCESSES"
PROCESS_ID_ENV = "ADJOINTBENCH_PROCESS_ID"
#: RK4 steps recomputed in the backward sweep instead of stored (module docstring)
CHECKPOINT_STEP = True
#: halo exchanges: "step" (one per RK4 step, 8 + 4 values, where every block holds >= 8
#: variables) or "stage" (one per tendency, 2 + 1 values); see :func:`wide_stepper`
HALO = "step"


# ---- JAX helpers ----------------------------------------------------------------------------
# _jax_model.py imports JAX at its top, so its stable helpers (x64, platform_name,
# visible_devices, device_report) are imported inside functions, never at package import.


def x64() -> Any:
    """float64 for JAX inside the block only (thread-local ``jax.enable_x64(True)``)."""
    import jax

    return jax.enable_x64(True)


def platform_name(dev: Any) -> str:
    """Our device name ('cpu', 'gpu', 'tpu') for a JAX device."""
    return "gpu" if dev.platform in ("cuda", "rocm", "gpu") else dev.platform


def visible_devices() -> list[str]:
    """Our names of the platforms JAX sees, its default first (``_jax_model``'s, or the same here)."""
    try:
        from ._jax_model import visible_devices as found
    except ImportError:  # pragma: no cover - only if _jax_model dropped it
        pass
    else:
        return found()
    import jax

    names = []
    for name in ("cpu", "gpu", "tpu"):
        try:
            if jax.devices(name):
                names.append(name)
        except RuntimeError:
            continue
    default = "gpu" if jax.default_backend() in ("cuda", "rocm") else jax.default_backend()
    return sorted(names, key=lambda d: d != default)


def device_report(dev: Any) -> dict[str, Any]:
    import jax

    return {"jax_device": str(dev), "device_kind": dev.device_kind, "jax_version": jax.__version__}


_DIST_LOCK = threading.Lock()
_DIST_STATE: dict[str, Any] = {"done": False, "error": None}


def ensure_distributed() -> str | None:
    """Call ``jax.distributed.initialize()`` once when a multi-host run is configured.

    Returns None when fine (initialised, or not asked for), else why it failed.  It must
    run before JAX initialises its backends, so it is the first thing this backend does.
    """
    with _DIST_LOCK:
        if _DIST_STATE["done"]:
            return _DIST_STATE["error"]
        _DIST_STATE["done"] = True
        wanted = bool(os.environ.get(COORDINATOR_ENV)) or os.environ.get(DISTRIBUTED_ENV, "") not in ("", "0")
        if not wanted:
            return None
        import jax

        if jax.distributed.is_initialized():
            return None
        kw: dict[str, Any] = {}
        for env, key in ((NUM_PROCESSES_ENV, "num_processes"), (PROCESS_ID_ENV, "process_id")):
            raw = os.environ.get(env, "").strip()
            if raw:
                try:
                    kw[key] = int(raw)
                except ValueError:
                    _DIST_STATE["error"] = f"{env} must be an integer, got {raw!r}"
                    return _DIST_STATE["error"]
        try:
            jax.distributed.initialize(**kw)
        except Exception as e:  # RuntimeError when JAX was used first, ValueError on bad settings
            _DIST_STATE["error"] = (f"jax.distributed.initialize() failed ({type(e).__name__}: {e}); it must run "
                                    "before any other JAX use in the process: run jax-sharded alone in each process")
        return _DIST_STATE["error"]


def make_mesh(device: str) -> Any:
    """The 1-D mesh ('x',) over every device of the platform, in every process (Auto axes)."""
    import jax
    from jax.sharding import AxisType

    devs = jax.devices({"gpu": "gpu", "cpu": "cpu", "tpu": "tpu"}[device])
    return jax.make_mesh((len(devs),), (AXIS,), axis_types=(AxisType.Auto,), devices=devs)


def global_array(mesh: Any, spec: Any, host: np.ndarray) -> Any:
    """A global ``jax.Array`` with ``NamedSharding(mesh, spec)`` from the full host copy.

    Every process holds ``host`` (the same u everywhere) and places the shards it owns, so
    this is correct with one process or several (``jax.device_put`` of a NumPy array onto
    another process's devices is not).
    """
    import jax
    from jax.sharding import NamedSharding

    return jax.make_array_from_callback(host.shape, NamedSharding(mesh, spec), lambda index: host[index])


def to_host(a: Any) -> np.ndarray:
    """The whole of a (possibly multi-process) jax.Array as float64 NumPy."""
    import jax

    if a.is_fully_addressable:
        return np.asarray(jax.device_get(a), dtype=np.float64)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True), dtype=np.float64)


# ---- the layout of the ring over the devices ----------------------------------------------


@dataclass(frozen=True)
class Layout:
    """N variables in K blocks of b slots: block s holds ``counts[s]`` variables, then padding.

    ``place[i]`` is the slot (of K*b) of variable i; ``padded`` when some block is short.
    """

    n: int
    k: int
    b: int
    counts: tuple[int, ...]
    place: np.ndarray

    @property
    def padded(self) -> bool:
        return self.k * self.b != self.n

    def pad(self, v: np.ndarray) -> np.ndarray:
        """v (..., N) -> (..., K*b) with zeros in the unused slots."""
        out = np.zeros(v.shape[:-1] + (self.k * self.b,), dtype=np.float64)
        out[..., self.place] = v
        return out


def layout(n: int, k: int) -> Layout:
    if n < 2 * k:
        raise ValueError(
            f"jax-sharded cannot split Lorenz-96 with N = {n} over {k} devices: each device needs at least "
            f"2 variables (its left neighbour's halo), so N >= {2 * k}; use fewer devices "
            "(XLA_FLAGS=--xla_force_host_platform_device_count) or the backend 'jax'"
        )
    q, rem = divmod(n, k)
    b = q + (rem > 0)
    counts = tuple([q + 1] * rem + [q] * (k - rem))
    place = np.concatenate([s * b + np.arange(c) for s, c in enumerate(counts)])
    return Layout(n=n, k=k, b=b, counts=counts, place=place)


# ---- the model step: RK4 on one block, the ring closed by halos ---------------------------

Halo = Callable[[Any], Any]


def local_ring(y: Any) -> Any:
    """The whole ring on one device: p = (x_{N-2}, x_{N-1}, x_0..x_{N-1}, x_0), p[i+2] = x_i."""
    import jax.numpy as jnp

    return jnp.concatenate([y[..., -2:], y, y[..., :1]], axis=-1)


def ppermute_ring(lay: Layout) -> Halo:
    """Inside ``shard_map``: this block extended by x_{i-2}, x_{i-1} of the left block and
    x_{i+1} of the right one (two ``lax.ppermute`` around the ring), p[j+2] = block[j].

    A short block (padded layout) sends its last *real* two values, read at its own offset,
    and takes the right halo into its first unused slot.
    """
    import jax.numpy as jnp
    from jax import lax

    k = lay.k
    to_right = [(j, (j + 1) % k) for j in range(k)]  # block s receives from s-1: its left halo
    to_left = [(j, (j - 1) % k) for j in range(k)]   # block s receives from s+1: its right halo
    counts = np.asarray(lay.counts, dtype=np.int32)

    def halo(y: Any) -> Any:
        if not lay.padded:
            left = lax.ppermute(y[-2:], AXIS, to_right)
            right = lax.ppermute(y[:1], AXIS, to_left)
            return jnp.concatenate([left, y, right])
        real = jnp.asarray(counts)[lax.axis_index(AXIS)]
        left = lax.ppermute(lax.dynamic_slice_in_dim(y, real - 2, 2), AXIS, to_right)
        right = lax.ppermute(y[:1], AXIS, to_left)
        mid = jnp.where(jnp.arange(lay.b) == real, right, y)
        return jnp.concatenate([left, mid, right])

    return halo


def rhs(y: Any, F: Any, halo: Halo) -> Any:
    """f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on this block (p[i+2] = x_i)."""
    p = halo(y)
    return (p[..., 3:] - p[..., :-3]) * p[..., 1:-2] - y + F


def rk4_step(x: Any, F: Any, dt: float, halo: Halo) -> Any:
    """Classical RK4, the lines of ``lorenz96_equations.step``: 4 tendencies, 4 halo exchanges."""
    k1 = rhs(x, F, halo)
    k2 = rhs(x + (0.5 * dt) * k1, F, halo)
    k3 = rhs(x + (0.5 * dt) * k2, F, halo)
    k4 = rhs(x + dt * k3, F, halo)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


#: halo widths of one whole RK4 step: 4 tendencies, each reaching 2 to the left and 1 to the right
WIDE_LEFT, WIDE_RIGHT = 8, 4
Stepper = Callable[[Any, Any, float], Any]


def stage_stepper(halo: Halo) -> Stepper:
    """RK4 with one halo exchange per tendency (4 per step, 2 + 1 values each)."""
    return lambda x, F, dt: rk4_step(x, F, dt, halo)


def wide_stepper(lay: Layout) -> Stepper:
    """RK4 with one halo exchange per *step*: 8 values from the left, 4 from the right.

    Communication-avoiding: the block extended to [-8, b+4) is advanced through the four
    stages on shrinking ranges (each tendency loses 2 entries on the left and 1 on the right:
    k1 on [-6, b+3), k2 on [-4, b+2), k3 on [-2, b+1), k4 on [0, b)), recomputing 12 entries
    of the neighbours' work instead of exchanging halos three more times.  Same arithmetic as
    :func:`rk4_step` entry by entry.  Needs at least 8 real variables per block.
    A short block (padded layout) gathers its extended range so that the right halo follows
    its last real variable.
    """
    import jax.numpy as jnp
    from jax import lax

    k, b = lay.k, lay.b
    to_right = [(j, (j + 1) % k) for j in range(k)]
    to_left = [(j, (j - 1) % k) for j in range(k)]
    counts = np.asarray(lay.counts, dtype=np.int32)

    def extend(y: Any) -> Any:
        if not lay.padded:
            left = lax.ppermute(y[-WIDE_LEFT:], AXIS, to_right)
            right = lax.ppermute(y[:WIDE_RIGHT], AXIS, to_left)
            return jnp.concatenate([left, y, right])
        real = jnp.asarray(counts)[lax.axis_index(AXIS)]
        left = lax.ppermute(lax.dynamic_slice_in_dim(y, real - WIDE_LEFT, WIDE_LEFT), AXIS, to_right)
        right = lax.ppermute(y[:WIDE_RIGHT], AXIS, to_left)
        e = jnp.concatenate([left, y, right])
        # slots after the last real variable read the right halo (the final slot: anything)
        j = jnp.arange(WIDE_LEFT + b + WIDE_RIGHT)
        src = jnp.where(j < WIDE_LEFT + real, j, jnp.minimum(j + (b - real), e.shape[0] - 1))
        return e[src]

    def f(z: Any, F: Any) -> Any:
        # the tendency at z's entries 2..m-2 (it needs z_{j-2}, z_{j-1}, z_{j+1})
        return (z[3:] - z[:-3]) * z[1:-2] - z[2:-1] + F

    def step(x: Any, F: Any, dt: float) -> Any:
        e = extend(x)                              # [-8, b+4)
        k1 = f(e, F)                               # [-6, b+3)
        k2 = f(e[2:-1] + (0.5 * dt) * k1, F)       # [-4, b+2)
        k3 = f(e[4:-2] + (0.5 * dt) * k2, F)       # [-2, b+1)
        k4 = f(e[6:-3] + dt * k3, F)               # [0, b)
        return x + (dt / 6.0) * (k1[6:-3] + 2.0 * k2[4:-2] + 2.0 * k3[2:-1] + k4)

    return step


# ---- the cost: per-device sums, psum'ed -----------------------------------------------------


def local_cost(problem: Lorenz96Problem, stepper: Stepper, real: Callable[[], Any] | None = None) -> Callable[..., Any]:
    """J_local(x0, F, Y, M, XB): this block's share of J (the whole J for the whole ring).

    J = 1/2 sum_i M_b,i (x0_i - xb_i)^2 / sigma_b^2 + 1/2 sum_k sum_i M_i (x_{s_k,i} - Y_{k,i})^2 / sigma_o^2
    with Y the observations scattered to their variables and M the 0/1 observed mask (the
    background mask M_b is 1 on real variables).  ``real()`` gives the real-slot mask of a
    padded block (unused slots are reset to 0 after each step); None when there is none.
    The time loop is a scan to ``problem.last_obs_step``.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    steps = np.asarray(problem.obs_steps, dtype=np.int32)
    nlast = problem.last_obs_step
    dt = problem.dt
    inv_o2 = 1.0 / problem.sigma_o ** 2
    inv_b2 = 1.0 / problem.sigma_b ** 2
    background = problem.background is not None

    def cost(x0: Any, F: Any, Y: Any, M: Any, XB: Any) -> Any:
        def step(x: Any) -> Any:
            x1 = stepper(x, F, dt)
            return x1 if real is None else jnp.where(real(), x1, 0.0)

        if CHECKPOINT_STEP:
            step = jax.checkpoint(step)
        if nlast == 0:  # only step 0 is observed
            traj = x0[None]
        else:
            def body(x: Any, _: None) -> tuple[Any, Any]:
                x1 = step(x)
                return x1, x1

            _, xs = lax.scan(body, x0, None, length=nlast)
            traj = jnp.concatenate([x0[None], xs])
        # the scan emits every state (reverse mode stores them anyway) and the misfit is summed
        # over the observed ones after it.  Measured on one CPU device, N = 40000, 40 steps:
        # 0.15 s per gradient, against 0.22-0.30 s gathering xs[steps - 1] without the
        # concatenate or summing the misfit in the scan's carry (XLA CPU, loaded 2-core VM)
        d = traj[steps] - Y
        J = (0.5 * inv_o2) * jnp.sum(M * d * d)
        if background:
            e = x0 - XB
            J = J + (0.5 * inv_b2) * jnp.sum(e * e if real is None else jnp.where(real(), e * e, 0.0))
        return J

    return cost


def observation_arrays(problem: Lorenz96Problem, lay: Layout | None) -> tuple[np.ndarray, ...]:
    """(Y (K, slots), M (slots,), XB (slots,)): observations, mask and background per slot."""
    n = problem.n
    idx = np.asarray(problem.obs_indices, dtype=np.int64)
    Y = np.zeros((len(problem.obs_steps), n))
    Y[:, idx] = problem.obs_values
    M = np.zeros(n)
    M[idx] = 1.0
    XB = np.zeros(n) if problem.background is None else np.asarray(problem.background, dtype=np.float64)
    if lay is not None:
        Y, M, XB = lay.pad(Y), lay.pad(M), lay.pad(XB)
    return Y, M, XB


# ---- prepare: the sharded gradient and cost -------------------------------------------------


class _Sharded:
    """The compiled sharded J (and gradient) for one problem on one mesh."""

    def __init__(self, problem: Lorenz96Problem, device: str, gradient: bool) -> None:
        err = ensure_distributed()
        if err:
            raise ValueError(err)
        import jax
        import jax.numpy as jnp
        from jax import lax
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        self.problem = problem
        self.params = problem.control == "state+params"
        with x64():
            mesh = make_mesh(device)
            lay = layout(problem.n, mesh.size)
            wide = HALO == "step" and min(lay.counts) >= WIDE_LEFT
            stepper = wide_stepper(lay) if wide else stage_stepper(ppermute_ring(lay))
            counts = np.asarray(lay.counts, dtype=np.int32)
            real = (lambda: jnp.arange(lay.b) < jnp.asarray(counts)[lax.axis_index(AXIS)]) if lay.padded else None
            local = local_cost(problem, stepper, real)

            def sharded_local(x0: Any, F: Any, Y: Any, M: Any, XB: Any) -> Any:
                return lax.psum(local(x0, F, Y, M, XB), AXIS)

            J = jax.shard_map(sharded_local, mesh=mesh, in_specs=(P(AXIS), P(), P(None, AXIS), P(AXIS), P(AXIS)),
                              out_specs=P())
            if not gradient:
                fn = J
            else:
                fn = jax.value_and_grad(J, argnums=(0, 1) if self.params else 0)
            Y, M, XB = observation_arrays(problem, lay)
            specs = (P(AXIS), P(), P(None, AXIS), P(AXIS), P(AXIS))
            shardings = tuple(NamedSharding(mesh, s) for s in specs)
            abstract = [jax.ShapeDtypeStruct(shape, np.float64, sharding=sh) for shape, sh in
                        zip([(lay.k * lay.b,), (), Y.shape, M.shape, XB.shape], shardings, strict=True)]
            t0 = time.perf_counter()
            lowered = jax.jit(fn, in_shardings=shardings).lower(*abstract)
            t1 = time.perf_counter()
            self.compiled = lowered.compile()
            t2 = time.perf_counter()
            self.consts = (global_array(mesh, specs[2], Y), global_array(mesh, specs[3], M), global_array(mesh, specs[4], XB))
        self.mesh, self.lay, self.specs = mesh, lay, specs
        self.times = {"trace_lower_s": t1 - t0, "xla_compile_s": t2 - t1}
        dev0 = mesh.devices.flat[0]
        self.info = {
            **device_report(dev0), **self.times, "devices": int(mesh.size), "mesh_shape": dict(mesh.shape),
            "processes": jax.process_count(), "block": lay.b, "padded_slots": lay.k * lay.b - lay.n,
            "halo": "per step (8 + 4 values)" if wide else "per tendency (2 + 1 values)",
            "mode": "jit(value_and_grad(shard_map(RK4 scan, ppermute halos, psum)))" if gradient
            else "jit(shard_map(RK4 scan, ppermute halos, psum))",
        }
        self.device = platform_name(dev0)

    def inputs(self, u: np.ndarray) -> tuple[Any, ...]:
        p = self.problem
        x0 = self.lay.pad(u[: p.n])
        F = np.asarray(u[p.n] if self.params else p.F, dtype=np.float64)
        return (global_array(self.mesh, self.specs[0], x0), global_array(self.mesh, self.specs[1], F), *self.consts)


def make_vg(problem: Lorenz96Problem, device: str) -> Prepared:
    s = _Sharded(problem, device, gradient=True)
    check, place, params = problem.check_control, s.lay.place, s.params

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u)
        with x64():
            J, g = s.compiled(*s.inputs(u))
            gx, gF = g if params else (g, None)
            gx = to_host(gx)[place]  # waits for the devices: the work is timed, not its dispatch
            out = np.concatenate([gx, [float(to_host(gF))]]) if params else gx
            return float(to_host(J)), out

    return Prepared(vg, problem, device=s.device, dtype="float64", compile_s=sum(s.times.values()), info=s.info)


def make_cost(problem: Lorenz96Problem, device: str) -> Callable[[np.ndarray], float]:
    s = _Sharded(problem, device, gradient=False)
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        u = check(u)
        with x64():
            return float(to_host(s.compiled(*s.inputs(u))))

    return J


# ---- Lorenz-63: nothing to shard -----------------------------------------------------------


def lorenz63_cost(problem: Lorenz63Problem) -> tuple[Callable[..., Any], tuple[np.ndarray, ...]]:
    """(J(u, obs), (obs,)): J = 1/2 sum_k |w_{s_k} - wo_k|^2, forward Euler eq. (20) (List 1)
    as a ``lax.scan`` to ``problem.last_obs_step``; for control ``state`` the parameters are
    the problem's constants."""
    import jax.numpy as jnp
    from jax import lax

    steps = np.asarray(problem.obs_steps, dtype=np.int32)
    nlast, dt, n = problem.last_obs_step, problem.dt, problem.n_control
    fixed = tuple(float(problem.params[k]) for k in ("sigma", "r", "beta"))

    def J(u: Any, obs: Any) -> Any:
        sigma, r, beta = (u[3], u[4], u[5]) if n == 6 else fixed

        def body(w: Any, _: None) -> tuple[Any, Any]:
            x, y, z = w[0], w[1], w[2]
            w1 = jnp.stack([x + dt * sigma * (-x + y), y + dt * (-x * z + r * x - y), z + dt * (x * y - beta * z)])
            return w1, w1

        w0 = u[:3]
        traj = w0[None] if nlast == 0 else jnp.concatenate([w0[None], lax.scan(body, w0, None, length=nlast)[1]])
        d = traj[steps] - obs
        return 0.5 * jnp.sum(d * d)

    return J, (np.asarray(problem.obs_values, dtype=np.float64),)


def lorenz63_prepared(problem: Lorenz63Problem, device: str, gradient: bool) -> tuple[Callable, Any, dict]:
    """The Lorenz-63 J (or value-and-gradient), AOT-compiled for this process's first device
    of the platform: with 3 variables there is nothing to shard (each process computes it)."""
    err = ensure_distributed()
    if err:
        raise ValueError(err)
    import jax
    from jax.sharding import SingleDeviceSharding

    with x64():
        dev = jax.local_devices(backend=device)[0]
        J, consts = lorenz63_cost(problem)
        fn = jax.value_and_grad(J) if gradient else J
        t0 = time.perf_counter()
        lowered = jax.jit(fn).lower(*(jax.ShapeDtypeStruct(a.shape, np.float64, sharding=SingleDeviceSharding(dev))
                                      for a in (problem.u0, *consts)))
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        placed = tuple(jax.device_put(a, dev) for a in consts)
    info = {**device_report(dev), "trace_lower_s": t1 - t0, "xla_compile_s": t2 - t1, "devices": 1,
            "mode": "jit(value_and_grad(J)) on one device (Lorenz-63: nothing to shard)"}
    return compiled, placed, info


def make_vg63(problem: Lorenz63Problem, device: str) -> Prepared:
    compiled, consts, info = lorenz63_prepared(problem, device, gradient=True)
    check = problem.check_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u)
        with x64():
            J, g = compiled(u, *consts)
            return float(J), np.asarray(g, dtype=np.float64)

    return Prepared(vg, problem, device=device, dtype="float64", compile_s=info["trace_lower_s"] + info["xla_compile_s"],
                    info=info)


def make_cost63(problem: Lorenz63Problem, device: str) -> Callable[[np.ndarray], float]:
    compiled, consts, _ = lorenz63_prepared(problem, device, gradient=False)
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        u = check(u)
        with x64():
            return float(compiled(u, *consts))

    return J


# ---- prepare_batch: the members sharded, each on the whole ring -----------------------------


def _member_sharded(problem: Problem, device: str, grad: bool) -> tuple[Callable[[np.ndarray], Any], Any]:
    """``jit(vmap(f), in_shardings=P('x', None))`` of the one-device cost J (``grad``: of
    ``value_and_grad(J)``) as run(U) -> outputs on the host, and the mesh.

    Rows of U go to the devices in blocks; each device runs the vmapped scan over its members
    on the whole ring (no collectives).  B is padded to a multiple of K with copies of the last
    row, whose results are dropped; each B compiles once (jit's cache).  Both models.
    """
    err = ensure_distributed()
    if err:
        raise ValueError(err)
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    with x64():
        mesh = make_mesh(device)
        if isinstance(problem, Lorenz63Problem):
            J, host_consts = lorenz63_cost(problem)
        else:
            n, params = problem.n, problem.control == "state+params"
            local = local_cost(problem, stage_stepper(local_ring))

            def J(u: Any, Y: Any, M: Any, XB: Any) -> Any:
                return local(u[:n], u[n] if params else problem.F, Y, M, XB)

            host_consts = observation_arrays(problem, None)
        nc = len(host_consts)
        rows, rep, members = NamedSharding(mesh, P(AXIS, None)), NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
        batched = jax.jit(jax.vmap(jax.value_and_grad(J) if grad else J, in_axes=(0,) + (None,) * nc),
                          in_shardings=(rows,) + (rep,) * nc, out_shardings=(members, rows) if grad else members)
        consts = tuple(global_array(mesh, P(), a) for a in host_consts)
    k = int(mesh.size)

    def run(U: np.ndarray) -> Any:
        U = check_controls(problem, U)
        B = U.shape[0]
        extra = -B % k
        if extra:
            U = np.concatenate([U, np.repeat(U[-1:], extra, axis=0)])
        with x64():
            out = batched(global_array(mesh, P(AXIS, None), U), *consts)
            return tuple(to_host(o)[:B] for o in out) if grad else to_host(out)[:B]

    return run, mesh


def make_vgb(problem: Problem, device: str) -> PreparedBatch:
    """vgb(U): the members sharded over the mesh (``_member_sharded`` of value_and_grad(J))."""
    import jax

    vgb, mesh = _member_sharded(problem, device, grad=True)
    dev0 = mesh.devices.flat[0]
    return PreparedBatch(
        vgb, problem, idiom="vmap (sharded members)", device=platform_name(dev0), dtype="float64", compile_s=None,
        info={**device_report(dev0), "devices": int(mesh.size), "mesh_shape": dict(mesh.shape),
              "processes": jax.process_count(), "mode": "jit(vmap(value_and_grad(J)), in_shardings=P('x', None))"},
    )


def make_costb(problem: Problem, device: str) -> Callable[[np.ndarray], np.ndarray]:
    """costs(U): the same member sharding of the cost J alone (the batched forward)."""
    return _member_sharded(problem, device, grad=False)[0]


class JaxShardedBackend(Backend):
    name = "jax-sharded"
    compiled = True
    kind = "AD, XLA (sharded)"
    description = ("jax.value_and_grad of shard_map'd RK4 (ppermute halos, psum) over every device; "
                   "ensembles sharded by member")
    models = ("lorenz63", "lorenz96")
    requires = ("jax", "jaxlib")
    batch_idiom = "vmap (sharded members)"

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        ensure_distributed()  # before JAX's backends start (it is refused after)
        return visible_devices()

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return make_vg63(problem, device)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return make_cost63(problem, device)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return make_vg(problem, device)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return make_cost(problem, device)

    def _prepare_batch(self, problem: Problem, *, device: str, dtype: str) -> PreparedBatch:
        return make_vgb(problem, device)

    def _prepare_cost_batch(self, problem: Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        return make_costb(problem, device)


BACKENDS = [JaxShardedBackend()]
