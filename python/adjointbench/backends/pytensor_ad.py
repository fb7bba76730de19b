"""Backend ``pytensor``: a symbolic PyTensor graph, the time loop a ``scan``, compiled to C.

The cost is built once as a symbolic graph: the time loop is ``pytensor.scan`` over steps,
its state the batch of members, (B,) per variable for Lorenz-63 (forward Euler, eq. 20) and
(B, N) for Lorenz-96 (RK4); ``pytensor.grad`` differentiates the graph symbolically, the
scan into a second, reversed scan whose body recomputes each step's intermediates from the
stored state (memory: the trajectory alone, as the hand adjoint).  ``pytensor.function``
then rewrites the whole graph (``fast_run``: elementwise fusion, in-place ops, scan
rewrites) and links it with the C backend, asked for explicitly: ``Mode(linker="cvm")``
(the C virtual machine running C thunks; pytensor 2.38's default linker "auto" picks it only
when a C++ compiler is configured).  Every node is then a compiled C op except the Scan
nodes themselves, whose loop is PyTensor's Cython ``scan_perform`` calling the body, itself
a CVM of C ops; ``Prepared.info["ops"]`` records this, checked by tests/test_pytensor.py.

One graph per (model, control, gradient or cost), compiled once per process and reused by
every problem of that model and control: the shapes (B, N, the window) and the problem's
numbers are inputs, not constants.  So that no problem needs a graph of its own:

* The window is the scan's symbolic ``n_steps``, to the last observation.  A window of 0
  steps (observations at step 0 only) runs one unobserved step instead: the gradient of a
  0-step scan fails in pytensor 2.38 ("Sequence 0 has shape (0, ...) but the Scan's
  required number of steps is 1"); the extra step is masked out, so its contribution to J
  and to the gradient is an exact zero (as long as the step itself is finite).
* Observations enter as dense (T, N) arrays over the stored trajectory: the observed
  values and a 0/1 mask of (step, index) pairs (T = window + 1); J sums the masked squared
  misfits, exact zeros elsewhere.  Selecting x[steps][:, idx] instead needs
  ``AdvancedIncSubtensor1`` in the gradient, which has C code for vectors only and whose
  Python ``perform`` in 2.38 refuses a single observed step or index (a runtime-broadcast
  check that also compares the indexed axis).  The masked misfit is one fused pass and a
  sum over the trajectory: ~10% of the forward-only profile at N = 4000, 40 steps.
* The background term is always in the graph, times a flag 0 or 1 (exact zeros without a
  background): half the Lorenz-96 graphs to compile.
* ``vg(u)`` is the batch graph at B = 1, so a batch row and a single call are the same code.

``compile_s`` is the time this ``prepare`` spent compiling: the gradient graph's rewriting
and C linking for the first problem of its model and control in the process, 0.0 for the
next ones (``info["graph_compile_s"]`` keeps the first figure).  Measured with ~/.pytensor
warm (its C modules built by an earlier run), loaded 2-thread EPYC VM, wall (CPU) seconds:
gradient graphs 4.3-9.7 (2.5-4.8), of which ~85% is graph rewriting, cost graphs 0.5-1.2
(0.2-0.6).  A cold ~/.pytensor adds the C build of every new fused op: 15-95 s per graph.
Per call (CPU time, best of 10-30): Lorenz-63 paper problem ~0.9-1.6 ms per gradient
(200 Euler steps, ~5 us each: the scan's Cython loop and the C VM of a ~40-node body on
(1,) operands), Lorenz-96 N = 4000, 40 steps: ~20 ms per gradient, ~6 ms forward-only.
"""

from __future__ import annotations

import shutil
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

#: the linker asked for: the C virtual machine with C thunks (pytensor.compile.mode.CVM)
LINKER = "cvm"
OPTIMIZER = "fast_run"
F64 = "float64"


def c_mode() -> Any:
    """The compilation mode: C linker, fast_run rewrites (also passed to every scan body)."""
    from pytensor.compile.mode import Mode

    return Mode(linker=LINKER, optimizer=OPTIMIZER)


# ---- Lorenz-63: model step and cost ---------------------------------------------------------

def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: Any) -> list[Any]:
    """One forward-Euler step of eq. (20), List 1, on (B,) symbolic vectors."""
    return [
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    ]


def graph63(params: bool, mode: Any) -> tuple[list[Any], Any, Any]:
    """(inputs, U, J[B]) of J(U) = 1/2 sum_n m_n |w_n - wo_n|^2 for controls U of shape (B, n_u).

    Inputs after U: dt, the number of steps, the observations wo as a (T, 3) array with zero
    rows where m_n = 0, the 0/1 step mask m (T,), and, for control ``state``, the fixed
    sigma, r, beta (scalars shared by every member).
    """
    import pytensor
    import pytensor.tensor as pt

    U = pt.matrix("U", dtype=F64)
    dt = pt.scalar("dt", dtype=F64)
    nsteps = pt.scalar("nsteps", dtype="int64")
    wo = pt.matrix("wo", dtype=F64)
    m = pt.vector("m", dtype=F64)
    inputs = [U, dt, nsteps, wo, m]
    if params:
        coeffs = [U[:, 3], U[:, 4], U[:, 5]]
    else:
        coeffs = [pt.scalar(name, dtype=F64) for name in ("sigma", "r", "beta")]
        inputs += coeffs
    w0 = [U[:, 0], U[:, 1], U[:, 2]]
    rest = pytensor.scan(
        lambda x, y, z, sigma, r, beta, dt: euler_step(x, y, z, sigma, r, beta, dt),
        outputs_info=w0, non_sequences=[*coeffs, dt], n_steps=nsteps, mode=mode, return_updates=False,
    )
    J = 0.0
    for k in range(3):  # variable k at step 0, then at steps 1..T-1 (the scan's states, (T-1, B))
        d0 = (w0[k] - wo[0, k]) * m[0]
        d = (rest[k] - wo[1:, k][:, None]) * m[1:, None]
        J = J + d0 * d0 + pt.sum(d * d, axis=0)
    return inputs, U, 0.5 * J


def data63(problem: Lorenz63Problem) -> tuple[Any, ...]:
    """The problem's numbers as graph63's inputs after U (see the module docstring on T)."""
    nsteps = max(problem.last_obs_step, 1)
    wo = np.zeros((nsteps + 1, 3))
    m = np.zeros(nsteps + 1)
    wo[problem.obs_steps] = problem.obs_values
    m[problem.obs_steps] = 1.0
    data: tuple[Any, ...] = (np.float64(problem.dt), np.int64(nsteps), wo, m)
    if problem.control == "state":
        data += tuple(np.float64(problem.params[k]) for k in ("sigma", "r", "beta"))
    return data


# ---- Lorenz-96: model step and cost ---------------------------------------------------------

def rhs96(x: Any, F: Any) -> Any:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on the ring, x of shape (B, N).

    The neighbours are slices of one padded copy p = (x_{N-2}, x_{N-1}, x_0..x_{N-1}, x_0),
    p[i + 2] = x_i, as ``lorenz96_equations.rhs`` (one Join instead of ``pt.roll``'s three,
    each itself a Join of two slices); the gradient of a slice is an IncSubtensor, in C.
    """
    import pytensor.tensor as pt

    p = pt.concatenate([x[:, -2:], x, x[:, :1]], axis=1)
    return (p[:, 3:] - p[:, :-3]) * p[:, 1:-2] - x + F


def rk4_step96(x: Any, F: Any, dt: Any) -> Any:
    """One classical RK4 step, in the order of ``models.lorenz96_equations.step``."""
    k1 = rhs96(x, F)
    k2 = rhs96(x + (0.5 * dt) * k1, F)
    k3 = rhs96(x + (0.5 * dt) * k2, F)
    k4 = rhs96(x + dt * k3, F)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def graph96(params: bool, mode: Any) -> tuple[list[Any], Any, Any]:
    """(inputs, U, J[B]) of the Lorenz-96 cost (DESIGN.md) for controls U of shape (B, n_u):

    J = flag/2 sum_i ((x_0,i - xb_i)/sigma_b)^2 + 1/2 sum_{n,i} M_ni ((x_n,i - Y_ni)/sigma_o)^2,

    Y and the 0/1 mask M dense (T, N) arrays over the trajectory (Y zero where M is), flag 0
    or 1 (background or none).  Inputs after U: dt, the number of steps, Y, M, sigma_o, xb,
    sigma_b, flag, and F (a scalar) for control ``state``; for ``state+params`` F is U's last
    column, each member's own.
    """
    import pytensor
    import pytensor.tensor as pt

    U = pt.matrix("U", dtype=F64)
    dt = pt.scalar("dt", dtype=F64)
    nsteps = pt.scalar("nsteps", dtype="int64")
    Y = pt.matrix("Y", dtype=F64)
    M = pt.matrix("M", dtype=F64)
    sigma_o = pt.scalar("sigma_o", dtype=F64)
    xb = pt.vector("xb", dtype=F64)
    sigma_b = pt.scalar("sigma_b", dtype=F64)
    flag = pt.scalar("flag", dtype=F64)
    inputs = [U, dt, nsteps, Y, M, sigma_o, xb, sigma_b, flag]
    if params:
        x0, F = U[:, :-1], U[:, -1][:, None]  # (B, N), (B, 1): broadcasts over the ring
    else:
        x0 = U
        F = pt.scalar("F", dtype=F64)
        inputs.append(F)
    rest = pytensor.scan(
        rk4_step96, outputs_info=[x0], non_sequences=[F, dt], n_steps=nsteps, mode=mode, return_updates=False,
    )
    # misfits at step 0 (x0) and at steps 1..T-1 (the scan's states, (T-1, B, N)) apart:
    # joining them into one trajectory copied it whole (15% of the forward at N = 4000)
    d0 = (x0 - Y[0]) / sigma_o * M[0]
    d = (rest - Y[1:, None, :]) / sigma_o * M[1:, None, :]
    e = (x0 - xb) / sigma_b
    J = 0.5 * (pt.sum(d0 * d0, axis=1) + pt.sum(d * d, axis=(0, 2))) + (0.5 * flag) * pt.sum(e * e, axis=1)
    return inputs, U, J


def data96(problem: Lorenz96Problem) -> tuple[Any, ...]:
    """The problem's numbers as graph96's inputs after U (see the module docstring on T)."""
    nsteps = max(problem.last_obs_step, 1)
    Y = np.zeros((nsteps + 1, problem.n))
    M = np.zeros((nsteps + 1, problem.n))
    at = np.ix_(problem.obs_steps, problem.obs_indices)
    Y[at] = problem.obs_values
    M[at] = 1.0
    background = problem.background is not None
    xb = np.asarray(problem.background, dtype=np.float64) if background else np.zeros(problem.n)
    data: tuple[Any, ...] = (
        np.float64(problem.dt), np.int64(nsteps), Y, M, np.float64(problem.sigma_o),
        xb, np.float64(problem.sigma_b), np.float64(1.0 if background else 0.0),
    )
    if problem.control == "state":
        data += (np.float64(problem.F),)
    return data


# ---- gradient and compilation -------------------------------------------------------------

#: a model's graph builder (inputs, U, J) and its problem's numbers as the inputs after U
GraphBuilder = Callable[[bool, Any], tuple[list[Any], Any, Any]]
GraphData = Callable[[Any], tuple[Any, ...]]  # the problem of the model it is keyed by
GRAPHS: dict[str, tuple[GraphBuilder, GraphData]] = {"lorenz63": (graph63, data63), "lorenz96": (graph96, data96)}


class Compiled:
    """One compiled pytensor function and what compiling it took.

    A compiled function owns its input and output storage, so calls are serialised (a lock,
    ~0.1 us): problems sharing the graph may be used from several threads.
    """

    def __init__(self, fn: Any, compile_s: float) -> None:
        self.fn = fn
        self.compile_s = compile_s
        self.lock = threading.Lock()
        self.ops = c_report(fn)

    def __call__(self, *args: Any) -> list[np.ndarray]:
        with self.lock:
            return self.fn(*args)


_CACHE: dict[tuple[str, str, bool], Compiled] = {}
_CACHE_LOCK = threading.Lock()


def compiled(model: str, control: str, gradient: bool) -> tuple[Compiled, bool]:
    """(the compiled function of (model, control, gradient or cost), whether it was compiled now).

    Outputs: (J[B], G[B, n_u]) with G = d(sum_b J_b)/dU, whose row b is dJ_b/dU_b (members
    share no operation), or J[B] alone for the cost.
    """
    key = (model, control, gradient)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key], False
        import pytensor

        if not pytensor.config.cxx:  # the C linker would fall back to Python thunks without a word
            raise ValueError("backend 'pytensor' needs a C++ compiler: pytensor.config.cxx is empty")
        mode = c_mode()
        graph, _ = GRAPHS[model]
        inputs, U, J = graph(control == "state+params", mode)
        outputs = [J, pytensor.grad(J.sum(), U)] if gradient else [J]
        t0 = time.perf_counter()
        # no FMA contraction in the generated C (g++ contracts by default where the CPU has FMA):
        # over long chaotic windows the contracted rounding drifts from the model's arithmetic by
        # more than the gate allows (2e-10 at 206 Euler steps, where every uncontracted backend
        # stays near 1e-13); the flag is part of pytensor's module cache key
        flags = " ".join(f for f in (pytensor.config.gcc__cxxflags, "-ffp-contract=off") if f)
        with warnings.catch_warnings(), pytensor.config.change_flags(gcc__cxxflags=flags):
            # the graphs hold no dot product: a pip-installed pytensor's BLAS warning is noise here
            warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
            fn = pytensor.function(inputs, outputs, mode=mode)
        _CACHE[key] = Compiled(fn, time.perf_counter() - t0)
        return _CACHE[key], True


def c_report(fn: Any) -> dict[str, Any]:
    """Which nodes of a compiled function (and of its scan bodies) run C thunks.

    A C thunk carries ``cthunk``; the Scan nodes' thunks are the Cython ``scan_perform``
    loop, listed apart; anything else in Python is listed under ``python``.
    """
    from pytensor.scan.op import Scan

    c, scan, python = 0, 0, []
    vms = [fn.vm]
    while vms:
        vm = vms.pop()
        for node, thunk in zip(vm.nodes, vm.thunks, strict=True):
            if isinstance(node.op, Scan):
                scan += 1
                vms.append(node.op.fn.vm)
            elif hasattr(thunk, "cthunk"):
                c += 1
            else:
                python.append(str(node.op))
    return {"vm": type(fn.vm).__name__, "c": c, "scan": scan, "python": python}


def make_vgb(problem: Any, fn: Compiled) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """vgb(U): one call of the compiled gradient graph with the problem's numbers."""
    data = GRAPHS[problem.model][1](problem)

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)  # shape, B >= 1, finite: before any pytensor work
        J, G = fn(U, *data)
        return np.array(J, dtype=np.float64), np.array(G, dtype=np.float64)

    return vgb


def make_vg(problem: Any, fn: Compiled) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """vg(u): the batch graph at B = 1."""
    data = GRAPHS[problem.model][1](problem)
    check = problem.check_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        J, G = fn(check(u)[None, :], *data)
        return float(J[0]), np.array(G[0], dtype=np.float64)

    return vg


def make_J(problem: Any, fn: Compiled) -> Callable[[np.ndarray], float]:
    """J(u): the compiled cost graph (the gradient graph's forward half, no gradient) at B = 1."""
    data = GRAPHS[problem.model][1](problem)
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        (value,) = fn(check(u)[None, :], *data)
        return float(value[0])

    return J


def make_Jb(problem: Any, fn: Compiled) -> Callable[[np.ndarray], np.ndarray]:
    """costs(U): the compiled cost graph on the whole batch (the batch gradient's forward half)."""
    data = GRAPHS[problem.model][1](problem)

    def costs(U: np.ndarray) -> np.ndarray:
        (value,) = fn(check_controls(problem, U), *data)
        return np.array(value, dtype=np.float64)

    return costs


class PytensorBackend(Backend):
    name = "pytensor"
    compiled = True
    kind = "AD, symbolic graph (C)"
    description = "PyTensor: symbolic graph with the time loop as scan, pytensor.grad, compiled with the C linker (cvm)"
    models = ("lorenz63", "lorenz96")
    requires = ("pytensor",)
    batch_idiom = "batch axis"

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok:
            return ok, reason
        # pytensor's config.cxx defaults to g++ on PATH; without it the C linker silently
        # falls back to Python thunks (checked without importing pytensor, which takes seconds)
        if not shutil.which("g++"):
            return False, "g++ not found (pytensor's C backend compiles with it): apt-get install -y g++"
        return True, ""

    def _compiled(self, problem: Any, gradient: bool) -> tuple[Compiled, dict[str, Any]]:
        import pytensor

        fn, fresh = compiled(problem.model, problem.control, gradient)
        info = {
            "pytensor_version": pytensor.__version__, "linker": LINKER, "optimizer": OPTIMIZER,
            "floatX": pytensor.config.floatX, "cxx": pytensor.config.cxx, "ops": fn.ops,
            "graph_compile_s": fn.compile_s, "graph_reused": not fresh,
        }
        return fn, info

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        fn, info = self._compiled(problem, gradient=True)
        return Prepared(make_vg(problem, fn), problem, device=device, dtype=dtype,
                        compile_s=fn.compile_s if not info["graph_reused"] else 0.0, info=info)

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return make_J(problem, self._compiled(problem, gradient=False)[0])

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return make_J(problem, self._compiled(problem, gradient=False)[0])

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        return make_Jb(problem, self._compiled(problem, gradient=False)[0])

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """The gradient graph itself: its state is already a batch (B, N) (or (B,) per variable)."""
        fn, info = self._compiled(problem, gradient=True)
        return PreparedBatch(make_vgb(problem, fn), problem, idiom=self.batch_idiom, device=device, dtype=dtype,
                             compile_s=fn.compile_s if not info["graph_reused"] else 0.0, info=info)


BACKENDS = [PytensorBackend()]
