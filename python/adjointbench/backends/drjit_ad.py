"""Backend ``drjit``: Dr.Jit's traced reverse-mode AD, JIT-compiled by LLVM (CUDA on a GPU).

Dr.Jit records array operations lazily and compiles what it must evaluate into fused kernels
(LLVM for the CPU, ``drjit.llvm.ad``; PTX for CUDA, ``drjit.cuda.ad``).  The cost is traced
on ``Float64`` arrays (``Float`` is float32) with gradients enabled on the controls
(``dr.enable_grad``); ``dr.backward`` walks the AD graph and traces the adjoint.

Members are lanes: a batch of B members is arrays B (Lorenz-63) or B x N (Lorenz-96,
member-major: lane b N + i) wide, so B members are one trace (idiom "batch axis"); a single
``vg`` is the batch B = 1.  J is one lane per member, and ``dr.backward`` seeds every lane
with 1: the members share no operation, so each gets its own gradient.

How the time loop is traced (the trace must not grow with nsteps where avoidable):

- Lorenz-63: one symbolic loop (``dr.while_loop``; ``max_iterations`` lets Dr.Jit store the
  loop state per iteration, which is what reverse mode through a symbolic loop needs).  The
  loop body is traced once whatever the window, observation terms added under ``dr.select``
  with the step's mask and values gathered from arrays.  Measured (paper problem with
  observations every 20 steps, control state+params, 2-thread EPYC VM, cold kernel cache):
  the Python-unrolled loop is one kernel of every step, whose first call took 6.3 s at 200
  steps (LLVM compile) and did not finish in 200 s at 1000; the symbolic loop's first call
  took 0.10 s at 200 steps and 0.13 s at 1000, 0.07 and 0.17 ms per call afterwards.
- Lorenz-96: a symbolic loop cannot hold it: each RK4 stage needs the ring's neighbours
  (``dr.gather`` with cyclic indices), i.e. a barrier between lanes, and a gather from an
  unevaluated array evaluates it first.  So the steps are unrolled in Python, each stage is
  its own small kernel, the same kernel at every step (compiled once, then found in the
  cache), and the Python trace grows with nsteps.  That trace, of the forward and of the
  AD graph's backward, is what ``dr.freeze`` removes: the first call records the kernel
  launches, later calls with compatible inputs replay them.  Measured (standard problem,
  warm kernel cache, best of 7, 2-thread EPYC VM under load ~4): N = 40 at 10 / 40 / 160
  steps, first call (trace + record) 13 / 39 / 177 ms, then 0.20 / 0.67 / 12.5 ms per
  gradient frozen against 1.05 / 13.7 / 81 ms unfrozen; N = 4000, 40 steps: 44 ms frozen,
  60 ms unfrozen (the kernels themselves dominate there: 12.5 kernels per step).

Both models are frozen (``dr.freeze``), forward + backward as one recorded function; each
prepared problem has its own.  The batch size is passed to it as a Python int, so each B gets
its own recording (a recording made for one width is not trusted with the block sums of
another).  Constants enter as opaque arrays (``dr.opaque``: dt, observations, indices), not
literals, so kernels are shared between problems of the same shape instead of recompiled
per dt.  ``compile_s`` is prepare's first call: trace, LLVM compile (or a cache hit in
~/.drjit) and recording.

Forward-only cost (``prepare_cost``): the same trace without ``dr.enable_grad`` (no AD
graph), frozen the same way.

Import order: TensorFlow imported before Dr.Jit makes Dr.Jit segfault in the same process;
this module never imports TensorFlow (the tensorflow backend imports drjit first).
"""

from __future__ import annotations

import importlib
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..models.lorenz96 import MemoryBudgetError, default_memory_budget
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

#: per-B constants (and frozen recordings) kept per prepared problem
CACHED_BATCH_SIZES = 4


@cache
def array_types(device: str) -> types.SimpleNamespace:
    """The AD array types of the backend for ``device``: LLVM on ``cpu``, CUDA on ``gpu``."""
    import drjit as dr

    # only the device's own module is imported (drjit.cuda.ad needs CUDA)
    m = importlib.import_module("drjit.cuda.ad" if device == "gpu" else "drjit.llvm.ad")
    return types.SimpleNamespace(dr=dr, Float64=m.Float64, UInt32=m.UInt32, Bool=m.Bool,
                                 backend=dr.JitBackend.CUDA if device == "gpu" else dr.JitBackend.LLVM)


# ---- Lorenz-63: forward Euler (eq. 20, List 1) in a symbolic loop --------------------------

def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: Any) -> tuple[Any, Any, Any]:
    """One forward-Euler step of eq. (20), List 1 (arrays of any one width)."""
    return (
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    )


def consts63(T: Any, problem: Lorenz63Problem) -> dict[str, Any]:
    """Opaque problem data for ``cost63``: per step n < nlast whether it is observed (``mask``)
    and which observation it is (``k``); the observed values by component (``y0..y2``)."""
    dr = T.dr
    nlast = problem.last_obs_step
    mask = np.zeros(max(nlast, 1), dtype=bool)
    k = np.zeros(max(nlast, 1), dtype=np.uint32)
    inner = problem.obs_steps[problem.obs_steps < nlast]
    mask[inner] = True
    k[inner] = np.arange(inner.size)
    obs = problem.obs_values
    return {
        "dt": dr.opaque(T.Float64, problem.dt), "nlast": dr.opaque(T.UInt32, nlast),
        "mask": T.Bool(mask), "k": T.UInt32(k),
        "y": [T.Float64(np.ascontiguousarray(obs[:, j])) for j in range(3)],
        "ylast": [dr.opaque(T.Float64, float(v)) for v in obs[-1]],
    }


def cost63(T: Any, w: list[Any], par: list[Any], c: dict[str, Any], nlast: int) -> Any:
    """J = 1/2 sum_k |w_{s_k} - wo_k|^2 for members as lanes: a loop over steps 0..nlast-1
    (observe if observed, then step), then the last observation, which is step nlast itself.

    ``nlast`` (a Python int) only sizes the stored loop state for reverse mode; the loop's
    bound is the opaque ``c["nlast"]``, so the loop's kernel serves every window length.
    """
    dr, F64 = T.dr, T.Float64
    sigma, r, beta = par
    dt, mask, kidx, Y = c["dt"], c["mask"], c["k"], c["y"]

    def cond(n: Any, x: Any, y: Any, z: Any, J: Any) -> Any:
        return n < c["nlast"]

    def body(n: Any, x: Any, y: Any, z: Any, J: Any) -> tuple[Any, ...]:
        k = dr.gather(T.UInt32, kidx, n)
        dx, dy, dz = (v - dr.gather(F64, Yj, k) for v, Yj in zip((x, y, z), Y, strict=True))
        J = J + dr.select(dr.gather(T.Bool, mask, n), 0.5 * (dx * dx + dy * dy + dz * dz), 0.0)
        x, y, z = euler_step(x, y, z, sigma, r, beta, dt)
        return n + 1, x, y, z, J

    x, y, z = w
    J0 = dr.zeros(F64, dr.width(x))
    _, x, y, z, J = dr.while_loop((dr.opaque(T.UInt32, 0), x, y, z, J0), cond, body, max_iterations=max(nlast, 1))
    dx, dy, dz = (v - yl for v, yl in zip((x, y, z), c["ylast"], strict=True))
    return J + 0.5 * (dx * dx + dy * dy + dz * dz)


# ---- Lorenz-96: RK4 with the ring's neighbours by dr.gather ---------------------------------

def consts96(T: Any, problem: Lorenz96Problem, B: int) -> dict[str, Any]:
    """Opaque problem data for ``cost96`` for B members as lanes b N + i.

    ``ip1``, ``im1``, ``im2``: the lanes of x_{i+1}, x_{i-1}, x_{i-2} (mod N, within the
    member); ``obs``: the lanes of the observed variables (B x M); observations and the
    background repeated per member.
    """
    dr = T.dr
    n = problem.n
    i = np.arange(n)
    base = (np.arange(B) * n)[:, None]
    lanes = lambda j: T.UInt32((base + j[None, :]).ravel().astype(np.uint32))  # noqa: E731
    c: dict[str, Any] = {
        "dt": dr.opaque(T.Float64, problem.dt), "half_dt": dr.opaque(T.Float64, 0.5 * problem.dt),
        "dt6": dr.opaque(T.Float64, problem.dt / 6.0), "w_obs": dr.opaque(T.Float64, 0.5 / problem.sigma_o**2),
        "ip1": lanes((i + 1) % n), "im1": lanes((i - 1) % n), "im2": lanes((i - 2) % n),
        "member": T.UInt32(np.repeat(np.arange(B, dtype=np.uint32), n)), "obs": lanes(problem.obs_indices),
        "y": [T.Float64(np.tile(row, B)) for row in problem.obs_values],
    }
    if problem.background is not None:
        c["xb"] = T.Float64(np.tile(problem.background, B))
        c["w_bg"] = dr.opaque(T.Float64, 0.5 / problem.sigma_b**2)
    return c


def rhs96(T: Any, x: Any, F: Any, c: dict[str, Any]) -> Any:
    """f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F (DESIGN.md "Lorenz-96"): three gathers.

    A gather reads memory, so Dr.Jit evaluates ``x`` first: each stage is a kernel; its
    adjoint is a scatter-add of the gathered lanes' gradients, which dominates the backward
    (N = 4000, 40 steps: 42 ms per gradient against 2 ms for J).  The default
    ``ReduceMode.Auto`` (``Expand`` on LLVM: per-core copies, non-atomic adds) is kept:
    ``mode=Direct`` or ``NoConflicts`` on these gathers (each index vector is a permutation)
    was faster (30-35 ms) but gave gradients off by 23% (relative, vs complex step) in
    Dr.Jit 1.5, frozen or not, and ``Permute`` (a plain scatter) overwrites instead of adding.
    """
    dr, F64 = T.dr, T.Float64
    return (dr.gather(F64, x, c["ip1"]) - dr.gather(F64, x, c["im2"])) * dr.gather(F64, x, c["im1"]) - x + F


def rk4_step96(T: Any, x: Any, F: Any, c: dict[str, Any]) -> Any:
    """One classical RK4 step, in the order of ``models.lorenz96_equations.step``."""
    k1 = rhs96(T, x, F, c)
    k2 = rhs96(T, x + c["half_dt"] * k1, F, c)
    k3 = rhs96(T, x + c["half_dt"] * k2, F, c)
    k4 = rhs96(T, x + c["dt"] * k3, F, c)
    return x + c["dt6"] * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def cost96(T: Any, x0: Any, F: Any, c: dict[str, Any], problem: Lorenz96Problem) -> Any:
    """J_b = 1/2 |x_0 - xb|^2/sigma_b^2 + 1/2 sum_k |x_{s_k}[idx] - y_k|^2/sigma_o^2 per member,
    the sums over a member's lanes by ``dr.block_sum``; steps unrolled in Python (see the
    module docstring for why), to the last observation only."""
    dr = T.dr
    n, m = problem.n, problem.obs_indices.size
    Fl = dr.gather(T.Float64, F, c["member"])  # each lane its member's forcing
    observed = {int(s): k for k, s in enumerate(problem.obs_steps)}
    J = dr.zeros(T.Float64, dr.width(F))
    x = x0
    for s in range(problem.last_obs_step + 1):
        if s in observed:
            d = dr.gather(T.Float64, x, c["obs"]) - c["y"][observed[s]]
            J = J + c["w_obs"] * dr.block_sum(d * d, m)
        if s < problem.last_obs_step:
            x = rk4_step96(T, x, Fl, c)
    if "xb" in c:
        e = x0 - c["xb"]
        J = J + c["w_bg"] * dr.block_sum(e * e, n)
    return J


# ---- gradient: the traced cost, dr.backward, frozen ----------------------------------------

def traced(T: Any, problem: Any, grad: bool) -> Callable[..., Any]:
    """``body(B, state, par, c) -> (J, grads)``: the cost of B members as lanes, and with
    ``grad`` its reverse-mode gradient with respect to the controlled arrays.

    ``state`` is a list of arrays (x, y, z, or the single x_0 for Lorenz-96), ``par`` the
    parameters (sigma, r, beta or F), ``ncontrolled`` of which are controls.  Inputs are
    copied before ``dr.enable_grad`` so the frozen function's inputs stay plain arrays.
    """
    dr = T.dr
    l96 = problem.model == "lorenz96"
    nlast = problem.last_obs_step
    params = problem.control == "state+params"

    def body(B: int, state: list[Any], par: list[Any], c: dict[str, Any]) -> tuple[Any, list[Any]]:
        state = [T.Float64(v) for v in state]
        par = [T.Float64(v) for v in par]
        wrt = state + (par if params else [])
        if grad:
            dr.enable_grad(*wrt)
        J = cost96(T, state[0], par[0], c, problem) if l96 else cost63(T, state, par, c, nlast)
        if not grad:
            return J, []
        dr.backward(J)  # seeds every member's J with 1
        return J, [dr.grad(v) for v in wrt]

    return body


class Runner:
    """A prepared problem's frozen function and its per-B constants, one call at a time.

    ``dr.freeze`` keeps one recording per B (``limit``), evicted with the constants.
    """

    def __init__(self, T: Any, problem: Any, grad: bool) -> None:
        self.T, self.problem, self.grad = T, problem, grad
        self.l96 = problem.model == "lorenz96"
        # auto_opaque=False: every input is opaque from the first call.  With the default, a
        # width-1 input (B = 1, or F) is a literal in the first recording, and the first call
        # with another value records again (inside a timed call) to make it opaque.
        self.fn = T.dr.freeze(traced(T, problem, grad), limit=CACHED_BATCH_SIZES,
                              warn_after=CACHED_BATCH_SIZES + 1, auto_opaque=False)
        self._consts: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._shared = None if self.l96 else consts63(T, problem)
        self._lock = threading.Lock()

    def _c(self, B: int) -> dict[str, Any]:
        if not self.l96:
            assert self._shared is not None  # built in __init__ for Lorenz-63
            return self._shared
        c = self._consts.pop(B, None)
        if c is None:
            while len(self._consts) >= CACHED_BATCH_SIZES:
                self._consts.popitem(last=False)
            c = consts96(self.T, self.problem, B)
        self._consts[B] = c
        return c

    def _inputs(self, U: np.ndarray) -> tuple[list[Any], list[Any]]:
        """Controls (B, n_u) -> (state arrays, parameter arrays), members as lanes.

        Each a copy in Dr.Jit's own memory (``dr.opaque``): ``Float64(ndarray)`` apparently maps the
        NumPy buffer, and ``dr.freeze`` records anew whenever such a mapping's alignment
        differs from the recording's (about every other call with fresh NumPy arrays).
        """
        p, dr = self.problem, self.T.dr
        F64 = lambda v: dr.opaque(self.T.Float64(v))  # noqa: E731
        B = U.shape[0]
        if self.l96:
            F = U[:, p.n] if p.control == "state+params" else np.full(B, p.F)
            return [F64(np.ascontiguousarray(U[:, :p.n]).ravel())], [F64(np.ascontiguousarray(F))]
        fixed = [p.params[k] for k in ("sigma", "r", "beta")]
        cols = [np.ascontiguousarray(U[:, j]) for j in range(p.n_control)]
        cols += [np.full(B, v) for v in fixed[len(cols) - 3:]]
        return [F64(v) for v in cols[:3]], [F64(v) for v in cols[3:]]

    def __call__(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(J[B], G[B, n_u] or None) for validated controls U (B, n_u)."""
        B = U.shape[0]
        with self._lock:
            state, par = self._inputs(U)
            J, grads = self.fn(B, state, par, self._c(B))
            J = J.numpy().astype(np.float64, copy=True)  # .numpy() evaluates and synchronises
            if not self.grad:
                return J, None
            cols = [g.numpy() for g in grads]
        if self.l96:
            G = cols[0].reshape(B, self.problem.n)
            G = np.concatenate([G, cols[1][:, None]], axis=1) if len(cols) > 1 else G.copy()
        else:
            G = np.stack(cols, axis=1)
        return J, np.ascontiguousarray(G, dtype=np.float64)


# ---- prepare ----------------------------------------------------------------------------------

def _check_budget(problem: Any, B: int) -> None:
    """Lorenz-96 keeps up to about ten arrays of B N per step alive (the four evaluated stage
    inputs in the AD graph, their gradients during the backward pass), the stored trajectory
    x 10 per member: refuse before tracing beyond the problem's memory budget."""
    if problem.model != "lorenz96":
        return
    budget = default_memory_budget() if problem.memory_budget is None else problem.memory_budget
    need = 10 * B * problem.trajectory_bytes
    if need > budget:
        raise MemoryBudgetError(
            f"drjit: {B} member(s) would need about {need} bytes of AD graph, over the memory budget of {budget} bytes"
        )


class DrJitBackend(Backend):
    name = "drjit"
    compiled = True
    kind = "AD, JIT tracing (LLVM)"
    description = "Dr.Jit Float64 AD arrays (LLVM; CUDA on a GPU), members as lanes, forward + backward under dr.freeze"
    models = ("lorenz63", "lorenz96")
    requires = ("drjit",)
    batch_idiom = "batch axis"

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        import drjit as dr

        return (["cpu"] if dr.has_backend(dr.JitBackend.LLVM) else []) + (["gpu"] if dr.has_backend(dr.JitBackend.CUDA) else [])

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok:
            return ok, reason
        import drjit as dr

        if not (dr.has_backend(dr.JitBackend.LLVM) or dr.has_backend(dr.JitBackend.CUDA)):
            return False, "drjit found neither its LLVM backend (libLLVM, set DRJIT_LIBLLVM_PATH) nor CUDA"
        return True, ""

    def _check_options(self, device: str | None, dtype: str) -> str:
        if device == "gpu" and self.available()[0] and "gpu" not in self.devices():
            import drjit as dr

            version = dr.__version__  # type: ignore[attr-defined]  # set at import; drjit's stubs omit it
            raise ValueError(f"backend 'drjit' cannot run on device 'gpu' here: drjit {version} sees no CUDA device")
        return super()._check_options(device, dtype)

    def _runner(self, problem: Any, device: str, grad: bool) -> tuple[Runner, dict[str, Any], float]:
        T = array_types(device)
        _check_budget(problem, 1)
        runner = Runner(T, problem, grad)
        t0 = time.perf_counter()
        runner(np.asarray(problem.u0, dtype=np.float64)[None, :])  # trace, compile, record B = 1
        info = {"drjit_version": T.dr.__version__, "drjit_backend": "cuda" if device == "gpu" else "llvm",
                "mode": "symbolic loop, frozen" if problem.model == "lorenz63" else "unrolled steps, frozen",
                "threads": T.dr.thread_count() if device == "cpu" else None}
        return runner, info, time.perf_counter() - t0

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        runner, info, compile_s = self._runner(problem, device, grad=True)
        check = problem.check_control

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            J, G = runner(check(u)[None, :])
            assert G is not None  # a grad=True runner always returns G
            return float(J[0]), G[0]

        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=compile_s, info=info)

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        """Forward-only J: the same trace without dr.enable_grad, frozen the same way."""
        runner, _, _ = self._runner(problem, device, grad=False)
        check = problem.check_control

        def J(u: np.ndarray) -> float:
            return float(runner(check(u)[None, :])[0][0])

        return J

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """Members as lanes, forward only: the cost's trace without dr.enable_grad, frozen per B."""
        runner, _, _ = self._runner(problem, device, grad=False)

        def costs(U: np.ndarray) -> np.ndarray:
            U = check_controls(problem, U)
            _check_budget(problem, U.shape[0])
            return np.array(runner(U)[0], dtype=np.float64)

        return costs

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """Members as lanes: one trace (and one frozen recording per B) for B members.

        The first call with each B traces and records it (a few B are kept).
        """
        runner, info, compile_s = self._runner(problem, device, grad=True)

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U = check_controls(problem, U)  # shape, B >= 1, finite: before any Dr.Jit work
            _check_budget(problem, U.shape[0])
            J, G = runner(U)
            assert G is not None  # a grad=True runner always returns G
            return J, G

        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype,
                             compile_s=compile_s, info=info)


BACKENDS = [DrJitBackend()]
