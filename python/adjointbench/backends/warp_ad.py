"""Backend ``warp``: NVIDIA Warp kernels for the time step and the cost, differentiated by ``wp.Tape``.

The model is written as Warp kernels (Python compiled to C++/CUDA by Warp's code generator,
which also generates each kernel's adjoint): Lorenz-63 one thread per member running one
forward-Euler step (eq. 20, List 1); Lorenz-96 one thread per (member, variable) running one
RK4 stage with its cyclic neighbours (i+1, i-1, i-2 mod N).  RK4 needs a global barrier
between stages (k2 at i needs k1 at i+1, i-1, i-2), and a kernel launch is Warp's barrier,
so a step is four launches: k1, k2, k3 (each stored) and a last one that computes k4 and
combines x_{n+1} = x_n + dt/6 (k1 + 2 k2 + 2 k3 + k4) without storing k4.  The cost is two
kernels that ``atomic_add`` each observed (or background) term into J[member].

Gradient: every launch of the window is recorded on a ``wp.Tape``; ``tape.backward`` seeded
with dJ_b/dJ_b = 1 runs the adjoint kernels in reverse order.  Warp's tape keeps no values of
its own: an adjoint kernel re-reads its forward inputs, so nothing a recorded launch read may
be overwritten before the backward pass.  Hence the whole trajectory (last observation + 1
states) and the three stored stages of every step live in arrays indexed by the step (the
step index is a kernel argument); this is four times the hand adjoint's stored trajectory,
plus as much again for the gradients (checked against the problem's memory budget before
anything is allocated).

Batches: every kernel has a leading member axis (threads per member x variable), so B
members are one set of launches (idiom "batch axis"); a single ``vg`` is the batch B = 1
(the same arithmetic, row by row).  The members share no operation, so seeding every J_b
with 1 gives each member's own gradient in its row.

Forward-only cost (``prepare_cost``): the same launches on arrays without gradient buffers,
outside any tape.

Replay: the whole call (zeroing, forward launches, ``tape.backward``) is captured once per
workspace with ``wp.ScopedCapture`` and replayed per call (``capture``: a CUDA graph on the
GPU, Warp's API capture on the CPU), because a Python-driven launch costs ~17 us of argument
packing, which at Lorenz-63's one tiny launch per step is the whole cost.

Devices: ``cpu`` (Warp's CPU path: each launch is a serial loop over its threads, compiled by
Warp's bundled Clang) and ``gpu`` (CUDA, where Warp sees a device).  float64 throughout
(``wp.float64`` arrays; kernel literals typed as ``wp.float64(...)``, since an untyped
``0.5`` is float32).  On CUDA the cost's ``atomic_add`` order varies from run to run, so J
agrees between calls to rounding, not to the bit.

Compile: Warp compiles the module's six kernels (and their adjoints) on first use
into ~/.cache/warp; ``prepare`` forces that with ``wp.load_module`` and reports the time as
``compile_s``, together with the capture of the single call's graph (``info["capture_s"]``);
a cache hit afterwards takes milliseconds.
"""

# no ``from __future__ import annotations``: Warp evaluates kernel annotations, which must be
# objects (arr2, ...) rather than strings naming closure variables the body never uses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..models.lorenz96 import MemoryBudgetError, default_memory_budget
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

#: our device names -> Warp's
WARP_DEVICE = {"cpu": "cpu", "gpu": "cuda:0"}
#: workspaces (and CUDA graphs) kept per prepared problem, keyed by batch size
CACHED_BATCH_SIZES = 4


@lru_cache(maxsize=1)
def _warp() -> Any:
    """``warp``, initialised once (``wp.init`` takes ~2 s on the first call).

    Warp writes its info messages ("Warp 1.19.0 initialized", "Module ... load took ...") to
    stdout, which would corrupt ``grad --json``: only warnings and errors (stderr) are kept.
    """
    import warp as wp

    wp.config.log_level = 30  # warp's LOG_WARNING
    wp.init()
    return wp


@lru_cache(maxsize=1)
def kernels() -> Any:
    """The module's kernels, defined on first use so that importing adjointbench needs no Warp.

    Shapes: ``w`` the trajectory (steps, B, V) with V = 3 (Lorenz-63) or N (Lorenz-96);
    ``k`` the stored RK4 stages (steps, 3, B, N); ``par`` the parameters per member (B, P):
    (sigma, r, beta) or (F,); ``u`` the controls (B, n_control); ``J`` (B,).
    """
    wp = _warp()
    f64 = wp.float64
    arr1, arr2, arr3, arr4 = (wp.array(dtype=f64), wp.array2d(dtype=f64), wp.array3d(dtype=f64), wp.array4d(dtype=f64))
    idx1 = wp.array(dtype=wp.int32)

    # ---- controls -> initial state and parameters ------------------------------------------

    @wp.kernel
    def load(u: arr2, nstate: int, fixed: arr1, w: arr3, par: arr2):
        """w_0 = u[:nstate]; par = the controlled parameters u[nstate:] or the fixed ones.

        One thread per (member, entry of the state + parameter vector); its adjoint is
        du += dw_0 and du += dpar, the copy's transpose.
        """
        b, j = wp.tid()
        if j < nstate:
            w[0, b, j] = u[b, j]
        else:
            p = j - nstate
            if j < u.shape[1]:
                par[b, p] = u[b, j]
            else:
                par[b, p] = fixed[p]

    # ---- Lorenz-63: one forward-Euler step (eq. 20, List 1) --------------------------------

    @wp.kernel
    def euler63(w: arr3, s: int, par: arr2, dt: f64):
        b = wp.tid()
        x = w[s, b, 0]
        y = w[s, b, 1]
        z = w[s, b, 2]
        sigma = par[b, 0]
        r = par[b, 1]
        beta = par[b, 2]
        w[s + 1, b, 0] = x + dt * sigma * (-x + y)
        w[s + 1, b, 1] = y + dt * (-x * z + r * x - y)
        w[s + 1, b, 2] = z + dt * (x * y - beta * z)

    # ---- Lorenz-96: RK4 stages, f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F ---------------

    @wp.func
    def stage_arg(w: arr3, k: arr4, s: int, prev: int, c: f64, b: int, j: int) -> f64:
        """The stage's argument at variable j: x_s + c k_prev (k1: prev < 0, x_s itself)."""
        v = w[s, b, j]
        if prev >= 0:
            v = v + c * k[s, prev, b, j]
        return v

    @wp.func
    def tendency(w: arr3, k: arr4, s: int, prev: int, c: f64, F: f64, b: int, i: int) -> f64:
        """f_i at the stage's argument; neighbours mod N (the ring)."""
        n = w.shape[2]
        xp1 = stage_arg(w, k, s, prev, c, b, (i + 1) % n)
        xm1 = stage_arg(w, k, s, prev, c, b, (i + n - 1) % n)
        xm2 = stage_arg(w, k, s, prev, c, b, (i + n - 2) % n)
        return (xp1 - xm2) * xm1 - stage_arg(w, k, s, prev, c, b, i) + F

    @wp.kernel
    def rk4_stage(w: arr3, k: arr4, s: int, stage: int, c: f64, par: arr2):
        """k_{stage+1} = f(x_s + c k_stage) (stage 0: k1 = f(x_s), c unused) for step s."""
        b, i = wp.tid()
        k[s, stage, b, i] = tendency(w, k, s, stage - 1, c, par[b, 0], b, i)

    @wp.kernel
    def rk4_last(w: arr3, k: arr4, s: int, dt: f64, par: arr2):
        """k4 = f(x_s + dt k3) and x_{s+1} = x_s + dt/6 (k1 + 2 k2 + 2 k3 + k4)."""
        b, i = wp.tid()
        k4 = tendency(w, k, s, 2, dt, par[b, 0], b, i)
        two = wp.float64(2.0)
        w[s + 1, b, i] = w[s, b, i] + (dt / wp.float64(6.0)) * (
            k[s, 0, b, i] + two * k[s, 1, b, i] + two * k[s, 2, b, i] + k4
        )

    # ---- cost ------------------------------------------------------------------------------

    @wp.kernel
    def obs_cost(w: arr3, steps: idx1, idx: idx1, y: arr2, weight: f64, J: arr1):
        """J_b += 1/2 weight (w_{s_k}[idx_m] - y_km)^2, one thread per (member, k, m)."""
        b, kk, m = wp.tid()
        d = w[steps[kk], b, idx[m]] - y[kk, m]
        wp.atomic_add(J, b, wp.float64(0.5) * weight * d * d)

    @wp.kernel
    def background_cost(w: arr3, xb: arr1, weight: f64, J: arr1):
        """J_b += 1/2 weight (x_{0,i} - xb_i)^2, one thread per (member, i)."""
        b, i = wp.tid()
        e = w[0, b, i] - xb[i]
        wp.atomic_add(J, b, wp.float64(0.5) * weight * e * e)

    return _Kernels(load, euler63, rk4_stage, rk4_last, obs_cost, background_cost)


class _Kernels:
    __slots__ = ("load", "euler63", "rk4_stage", "rk4_last", "obs_cost", "background_cost")

    def __init__(self, *ks: Any) -> None:
        for name, k in zip(self.__slots__, ks, strict=True):
            setattr(self, name, k)


# ---- one window: the forward launches ------------------------------------------------------

class Spec:
    """What the kernels need of a problem, in Warp arrays (one per prepared problem).

    ``V`` variables per state, ``P`` parameters (controlled or fixed), ``nlast`` the last
    observation step (the window integrates to it only), observation weights 1/sigma^2.
    """

    def __init__(self, problem: Any, device: str) -> None:
        wp = _warp()
        self.problem = problem
        self.device = device
        self.l96 = problem.model == "lorenz96"
        self.nlast = int(problem.last_obs_step)
        if self.l96:
            self.V, self.P = problem.n, 1
            fixed = np.array([problem.F])
            idx = problem.obs_indices
            self.w_obs = 1.0 / problem.sigma_o**2
            self.xb = None if problem.background is None else wp.array(problem.background, dtype=wp.float64, device=device)
            self.w_bg = 1.0 / problem.sigma_b**2
        else:
            self.V, self.P = 3, 3
            fixed = np.array([problem.params[k] for k in ("sigma", "r", "beta")])
            idx = np.arange(3)
            self.w_obs, self.xb, self.w_bg = 1.0, None, 1.0
        self.fixed = wp.array(fixed, dtype=wp.float64, device=device)
        self.steps = wp.array(np.asarray(problem.obs_steps, dtype=np.int32), dtype=wp.int32, device=device)
        self.idx = wp.array(np.asarray(idx, dtype=np.int32), dtype=wp.int32, device=device)
        self.y = wp.array(np.ascontiguousarray(problem.obs_values, dtype=np.float64), dtype=wp.float64, device=device)
        self.K, self.M = int(self.steps.shape[0]), int(self.idx.shape[0])
        self.dt = float(problem.dt)

    def work_bytes(self, B: int, grad: bool) -> int:
        """Bytes of one workspace: trajectory, stages (Lorenz-96), each doubled by its gradient."""
        states = (self.nlast + 1) * B * self.V
        stages = 3 * max(self.nlast, 1) * B * self.V if self.l96 else 0
        return 8 * (states + stages) * (2 if grad else 1)

    def check_budget(self, B: int, grad: bool) -> None:
        p = self.problem
        budget = default_memory_budget() if getattr(p, "memory_budget", None) is None else p.memory_budget
        need = self.work_bytes(B, grad)
        if need > budget:
            raise MemoryBudgetError(
                f"warp: {B} member(s) would need {need} bytes of trajectory and stages"
                f"{' and their gradients' if grad else ''}, over the memory budget of {budget} bytes"
            )


class Work:
    """The arrays of one window for B members (reused call after call)."""

    def __init__(self, spec: Spec, B: int, grad: bool) -> None:
        wp = _warp()
        spec.check_budget(B, grad)
        kw = dict(dtype=wp.float64, device=spec.device, requires_grad=grad)
        self.B = B
        self.u = wp.zeros((B, spec.problem.n_control), **kw)
        self.w = wp.zeros((spec.nlast + 1, B, spec.V), **kw)
        self.k = wp.zeros((max(spec.nlast, 1), 3, B, spec.V), **kw) if spec.l96 else None
        self.par = wp.zeros((B, spec.P), **kw)
        self.J = wp.zeros(B, **kw)
        self.seed = wp.ones(B, dtype=wp.float64, device=spec.device) if grad else None
        self.graph: Any = None

    def zero_grads(self) -> None:
        for a in (self.u, self.w, self.k, self.par, self.J):
            if a is not None:
                a.grad.zero_()


def forward(spec: Spec, work: Work) -> None:
    """All launches of one window: load, nlast steps, the cost into ``work.J`` (zeroed first).

    Lorenz-96's stage coefficients are those of RK4: k2 at x + dt/2 k1, k3 at x + dt/2 k2,
    k4 (in ``rk4_last``) at x + dt k3.
    """
    wp = _warp()
    K = kernels()
    dev, B, dt = spec.device, work.B, wp.float64(spec.dt)
    work.J.zero_()
    wp.launch(K.load, dim=(B, spec.V + spec.P), inputs=[work.u, spec.V, spec.fixed], outputs=[work.w, work.par], device=dev)
    if spec.l96:
        half = wp.float64(0.5 * spec.dt)
        for s in range(spec.nlast):
            wp.launch(K.rk4_stage, dim=(B, spec.V), inputs=[work.w, work.k, s, 0, half, work.par], device=dev)
            wp.launch(K.rk4_stage, dim=(B, spec.V), inputs=[work.w, work.k, s, 1, half, work.par], device=dev)
            wp.launch(K.rk4_stage, dim=(B, spec.V), inputs=[work.w, work.k, s, 2, half, work.par], device=dev)
            wp.launch(K.rk4_last, dim=(B, spec.V), inputs=[work.w, work.k, s, dt, work.par], device=dev)
    else:
        for s in range(spec.nlast):
            wp.launch(K.euler63, dim=B, inputs=[work.w, s, work.par, dt], device=dev)
    wp.launch(K.obs_cost, dim=(B, spec.K, spec.M),
              inputs=[work.w, spec.steps, spec.idx, spec.y, wp.float64(spec.w_obs)], outputs=[work.J], device=dev)
    if spec.xb is not None:
        wp.launch(K.background_cost, dim=(B, spec.V), inputs=[work.w, spec.xb, wp.float64(spec.w_bg)],
                  outputs=[work.J], device=dev)


# ---- gradient: the window on a tape, walked backwards ---------------------------------------

def value_and_grad(spec: Spec, work: Work) -> None:
    """Record the window on a fresh tape and run its adjoint: work.u.grad = dJ_b/du_b per row.

    Gradients accumulate (adjoint kernels add into ``.grad``), so every buffer is zeroed
    first; seeding all J_b with 1 is the gradient of sum_b J_b, row b of which is dJ_b/du_b.
    """
    wp = _warp()
    work.zero_grads()
    tape = wp.Tape()
    with tape:
        forward(spec, work)
    tape.backward(grads={work.J: work.seed})


def capture(run: Callable[[], None], device: str) -> Any:
    """``run``'s Warp operations captured into a graph (not executed: replay it to run).

    On CUDA a CUDA graph; on CPU Warp's API capture (APIC), a recorded operation stream that
    ``wp.capture_launch`` replays in C++.  Either way the replay skips Python: no argument
    packing per launch, no tape bookkeeping, which is most of the cost of a taped call here
    (paper problem, 2-thread EPYC VM, best of 20: 15.5 ms per gradient with a tape recorded and
    walked per call, 0.05 ms replayed; Lorenz-96 N = 4000, 40 steps: 96 -> 55 ms).  The
    replay reads the same buffers, so each call only copies its control into ``u`` first;
    its J and gradient are bit for bit those of the Python-driven tape.
    """
    wp = _warp()
    with wp.ScopedCapture(device=device) as cap:
        run()
    return cap.graph


class Runner:
    """Workspaces, each with its captured graph, per batch size (an LRU of a few); one call
    at a time per prepared problem (the buffers are shared between calls, so concurrent calls
    from several threads would overwrite each other's trajectory)."""

    def __init__(self, spec: Spec, grad: bool) -> None:
        self.spec, self.grad = spec, grad
        self._works: OrderedDict[int, Work] = OrderedDict()
        self._lock = threading.Lock()

    def _work(self, B: int) -> Work:
        work = self._works.pop(B, None)
        if work is None:
            while len(self._works) >= CACHED_BATCH_SIZES:
                self._works.popitem(last=False)
            work = Work(self.spec, B, self.grad)
            spec = self.spec
            run = (lambda: value_and_grad(spec, work)) if self.grad else (lambda: forward(spec, work))
            work.graph = capture(run, spec.device)
        self._works[B] = work
        return work

    def __call__(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(J[B], G[B, n_u] or None) for validated controls U (B, n_u)."""
        wp = _warp()
        with self._lock:
            work = self._work(U.shape[0])
            work.u.assign(U)
            wp.capture_launch(work.graph)
            J = work.J.numpy().copy()  # .numpy() synchronises with the device
            G = work.u.grad.numpy().copy() if self.grad else None
        return J, G


# ---- prepare ---------------------------------------------------------------------------------

def compile_kernels(device: str) -> float:
    """Compile (or load from ~/.cache/warp) the kernels for ``device``; seconds taken."""
    wp = _warp()
    kernels()
    t0 = time.perf_counter()
    wp.load_module(module=__name__, device=device)
    return time.perf_counter() - t0


class WarpBackend(Backend):
    name = "warp"
    compiled = True
    kind = "AD, kernel tape"
    description = "NVIDIA Warp kernels (RK4 stage / Euler step per thread, cost by atomics), wp.Tape reverse mode"
    models = ("lorenz63", "lorenz96")
    requires = ("warp",)
    batch_idiom = "batch axis"

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        return ["cpu"] + (["gpu"] if _warp().get_cuda_device_count() > 0 else [])

    def _check_options(self, device: str | None, dtype: str) -> str:
        if device == "gpu" and self.available()[0] and "gpu" not in self.devices():
            wp = _warp()
            raise ValueError(f"backend 'warp' cannot run on device 'gpu' here: warp {wp.__version__} sees no CUDA device")
        return super()._check_options(device, dtype)

    def _setup(self, problem: Any, device: str, grad: bool) -> tuple[Runner, dict[str, Any], float]:
        wp = _warp()
        dev = WARP_DEVICE[device]
        compile_s = compile_kernels(dev)
        spec = Spec(problem, dev)
        spec.check_budget(1, grad)  # the single call's workspace, before any is allocated
        info: dict[str, Any] = {"warp_version": wp.__version__, "warp_device": dev,
                                "mode": "the taped window captured once (wp.ScopedCapture), replayed per call"}
        if dev.startswith("cuda"):
            info["device_kind"] = wp.get_device(dev).name
        return Runner(spec, grad), info, compile_s

    @staticmethod
    def _warm(runner: Runner) -> float:
        """Capture the single call's graph now, in prepare, not in the first timed call."""
        t0 = time.perf_counter()
        runner._work(1)
        return time.perf_counter() - t0

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        runner, info, compile_s = self._setup(problem, device, grad=True)
        info["capture_s"] = self._warm(runner)
        check = problem.check_control

        def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
            J, G = runner(check(u)[None, :])
            assert G is not None  # a grad=True runner always returns G
            return float(J[0]), G[0]

        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=compile_s + info["capture_s"], info=info)

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        """Forward-only J: the same launches on arrays without gradients, no tape."""
        runner, _, _ = self._setup(problem, device, grad=False)
        self._warm(runner)
        check = problem.check_control

        def J(u: np.ndarray) -> float:
            return float(runner(check(u)[None, :])[0][0])

        return J

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """The forward launches alone over the member axis (no gradients, no tape)."""
        runner, _, _ = self._setup(problem, device, grad=False)

        def costs(U: np.ndarray) -> np.ndarray:
            U = check_controls(problem, U)
            runner.spec.check_budget(U.shape[0], False)
            return np.array(runner(U)[0], dtype=np.float64)

        return costs

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """The member axis of every kernel: one set of launches (and one tape) for B members.

        A workspace and its captured graph are made on the first call with each B (a few B
        are kept), so a timed loop should call each B once first.
        """
        runner, info, compile_s = self._setup(problem, device, grad=True)

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U = check_controls(problem, U)  # shape, B >= 1, finite: before any Warp work
            runner.spec.check_budget(U.shape[0], True)
            J, G = runner(U)
            assert G is not None  # a grad=True runner always returns G
            return J, G

        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype,
                             compile_s=compile_s, info=info)


BACKENDS = [WarpBackend()]
