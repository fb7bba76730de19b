"""Backend ``casadi``: reverse-mode AD of an unrolled CasADi SX expression graph.

The whole assimilation window is written as one CasADi SX expression of the control u (scalar
nodes, every time step unrolled); ``casadi.gradient`` differentiates it by one reverse sweep
(it is ``jtimes(J, u, 1, tr=True)`` projected on u), and ``prepare`` compiles J and dJ/du into
one ``casadi.Function``.  An SX Function is a flat list of scalar instructions run by CasADi's
virtual machine: the gradient's instructions reuse the forward sweep's values, so one call
gives J and the gradient.  Calls go through ``Function.buffer()``, which binds NumPy memory to
the Function's inputs and outputs: 3 us per call on a 6-control Function against 57 us for
``f(u)`` (which converts to and from ``DM``).

Models: Lorenz-63 (forward Euler, List 1, scalar SX nodes) and Lorenz-96 (RK4 on an (N,) SX
column, the ring's neighbours by concatenated slices).  The Lorenz-96 step is written once as
an SX Function of (x, F) and called on SX arguments in the time loop: CasADi then copies its
instructions into the caller's graph in C++ (the same unrolled graph, the same instruction
count, built 2.5x faster than by applying the Python-level operations again at every step).

**The graph is the limit.**  Its size is a constant times N x steps: per variable and RK4
step about 62 SX instructions for J and its gradient (~ 29 for J alone; Lorenz-63: ~ 13 per
variable and Euler step).  Measured (2-thread EPYC VM shared with other jobs, load 3-8,
float64): N = 4000, 40 steps -> 10.0 M instructions, ``prepare`` 26-33 s (graph 4 s, reverse
sweep ~ 10 s, the Function's topological sort ~ 10 s), ``prepare_cost`` 14 s, 1.2 GB
resident; all grow linearly, so N = 40 000 would take ~ 5 minutes and ~ 12 GB.  ``prepare``
(and ``prepare_batch``, ``prepare_cost``) therefore refuse problems with more than
``MAX_WORK`` = 250 000 variable-steps (n x last observation step of one member; 3 x steps for
Lorenz-63) with a ValueError saying why, before building anything; ``max_work(model)``
exposes the bound (``ADJOINTBENCH_CASADI_MAX_WORK`` overrides it).  A mapped batch does not
copy the graph: B does not enter the bound.

Timings, same machine (minimum of 5 timeit repeats; the VM was heavily shared, expect noise
of 2x): Lorenz-63 paper problem, one value and gradient 55-150 us (5.8 k instructions; numba
5 us); Lorenz-96 N = 4000, 40 steps: value and gradient ~ 143 ms, J alone ~ 53 ms (ratio
2.7; the C hand adjoint of ``c_reference.measure96``: 1.26 ms and 0.36 ms).  The VM runs
about 8-25 ns per instruction.

Tried and not used:
- ``Function.expand()`` turns an MX graph into SX; this graph is SX already.
- C code generation (``Function.generate`` + system gcc -shared -fPIC, loaded by
  ``casadi.external``): Lorenz-63 paper problem (7.3 k instructions) gcc -O1 1.7 s, 1.9 us per
  gradient (VM 55 us in the same run), -O0 1.0 s and 30 us; but Lorenz-96 N = 40, 40 steps
  (100 k instructions in one C function) took gcc -O1 470 s (-O0: 12.6 s, 554 us against the
  VM's 1.5 ms).  gcc's time grows much faster than the graph, so it is not robust over the
  benchmark's sizes, and a backend that compiles only small graphs would time two different
  things under one name.
- An MX graph of K calls of the one-step SX Function (the window not unrolled into SX):
  N = 4000, 40 steps, prepare ~ 10 s (loaded), 445 MX instructions, 300 MB resident, no
  bound needed, but ~ 2x slower per gradient (~ 280 ms: the step's reverse Function per call);
  it is not "the unrolled SX graph" this backend measures (a candidate for a second backend).

Forward-only cost (``prepare_cost``): a Function of J alone, from the same graph builder
(no reverse sweep built); its J equals the gradient call's J to the bit (same instructions).

Batches (idiom "map"): ``Function.map(B, "thread", T)`` of the value-and-gradient Function,
T = min(B, CPU count) threads; a (B, n_u) C-contiguous array is exactly the column-major
(n_u, B) matrix that the mapped Function takes, so U and the outputs are bound zero-copy.
One mapped Function (cheap: ~ 0.1 ms, no graph copied) per batch size, cached.  On the shared
2-thread VM "thread" and "serial" took the same time (Lorenz-63 paper problem, B = 10^4:
1.4-1.5 s wall either way, at ~ 25 % of one core); the rows are the single calls' to the bit.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

#: variable-steps (n x last observation step of one member) beyond which prepare refuses
MAX_WORK = 250_000
MAX_WORK_ENV = "ADJOINTBENCH_CASADI_MAX_WORK"
#: SX instructions per variable-step of the value-and-gradient Function (measured, above)
INSTRUCTIONS_PER_WORK = {"lorenz63": 13, "lorenz96": 62}
#: mapped Functions kept per prepared batch (one per batch size B seen)
MAP_CACHE = 8


# ---- Lorenz-63 -----------------------------------------------------------------------------

def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: float) -> tuple[Any, Any, Any]:
    """One forward-Euler step of eq. (20), List 1, on SX scalars."""
    return (
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    )


def cost63(problem: Lorenz63Problem, u: Any) -> Any:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2 as an SX expression, integrated to the last observation."""
    x, y, z = u[0], u[1], u[2]
    if problem.n_control == 6:
        sigma, r, beta = u[3], u[4], u[5]
    else:
        sigma, r, beta = (problem.params[k] for k in ("sigma", "r", "beta"))
    obs = {int(s): row for s, row in zip(problem.obs_steps, problem.obs_values, strict=True)}
    J = 0
    for n in range(problem.last_obs_step + 1):
        if n in obs:
            dx, dy, dz = x - obs[n][0], y - obs[n][1], z - obs[n][2]
            J = J + 0.5 * (dx * dx + dy * dy + dz * dz)
        if n < problem.last_obs_step:
            x, y, z = euler_step(x, y, z, sigma, r, beta, problem.dt)
    return J


# ---- Lorenz-96 -----------------------------------------------------------------------------

def rhs96(x: Any, F: Any) -> Any:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on the ring (DESIGN.md "Lorenz-96").

    ``x`` is an (n, 1) SX column; a cyclic shift is the concatenation of two slices
    (``shift(x, s)[i] = x[i + s mod n]``), which moves node references, not values.
    """
    import casadi as ca

    n = x.shape[0]

    def shift(s: int) -> Any:
        s %= n
        return ca.vertcat(x[s:], x[:s])

    return (shift(1) - shift(-2)) * shift(-1) - x + F


def rk4_step96(x: Any, F: Any, dt: float) -> Any:
    """One classical RK4 step, in the order of ``models.lorenz96_equations.step``."""
    k1 = rhs96(x, F)
    k2 = rhs96(x + (0.5 * dt) * k1, F)
    k3 = rhs96(x + (0.5 * dt) * k2, F)
    k4 = rhs96(x + dt * k3, F)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def step_function96(n: int, dt: float) -> Any:
    """x_{s+1} = step(x_s, F) as an SX Function, inlined wherever it is called on SX."""
    import casadi as ca

    x, F = ca.SX.sym("x", n), ca.SX.sym("F")
    return ca.Function("rk4_step", [x, F], [rk4_step96(x, F, dt)])


def cost96(problem: Lorenz96Problem, u: Any) -> Any:
    """J(u) = 1/2 |x_0 - xb|^2/sigma_b^2 + 1/2 sum_k |x_{s_k}[idx] - y_k|^2/sigma_o^2 as SX.

    Integrates to the last observation only; with ``state`` control F is a constant of the graph.
    """
    import casadi as ca

    n = problem.n
    x0 = u[:n]
    F = u[n] if problem.control == "state+params" else problem.F
    step = step_function96(n, problem.dt)
    idx = problem.obs_indices.tolist()
    full = len(idx) == n
    obs = {int(s): row for s, row in zip(problem.obs_steps, problem.obs_values, strict=True)}
    x = x0
    J = 0
    for s in range(problem.last_obs_step + 1):
        if s in obs:
            d = ((x if full else x[idx]) - ca.DM(obs[s])) / problem.sigma_o
            J = J + 0.5 * ca.sumsqr(d)
        if s < problem.last_obs_step:
            x = step(x, F)
    if problem.background is not None:
        e = (x0 - ca.DM(problem.background)) / problem.sigma_b
        J = J + 0.5 * ca.sumsqr(e)
    return J


# ---- the graph and its size ----------------------------------------------------------------

def work(problem: Any) -> int:
    """Variable-steps of one member: what the unrolled graph's size is proportional to."""
    return int(getattr(problem, "n", 3)) * int(problem.last_obs_step)


def max_work() -> int:
    """``MAX_WORK``, or ``ADJOINTBENCH_CASADI_MAX_WORK`` when set (a positive integer)."""
    raw = os.environ.get(MAX_WORK_ENV, "").strip()
    if not raw:
        return MAX_WORK
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_WORK_ENV} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{MAX_WORK_ENV} must be a positive integer, got {raw!r}")
    return value


def check_size(problem: Any) -> int:
    """The problem's work, or ValueError when its unrolled graph would exceed the bound."""
    w, bound = work(problem), max_work()
    if w > bound:
        size = f"n = {problem.n} x {problem.last_obs_step} steps" if problem.model == "lorenz96" \
            else f"3 x {problem.last_obs_step} steps"
        est = w * INSTRUCTIONS_PER_WORK[problem.model]
        raise ValueError(
            f"backend 'casadi' unrolls the window into one SX expression graph, whose size grows with "
            f"n x steps: this problem has {size} = {w} variable-steps (about {est:.2g} SX instructions) "
            f"beyond the bound of {bound} (about 30 s to build and 1.2 GB at 160 000; building grows "
            f"linearly); set {MAX_WORK_ENV} to raise the bound"
        )
    return w


def graph(problem: Any) -> tuple[Any, Any]:
    """(u, J): the control as an SX symbol and J as an SX expression of it."""
    import casadi as ca

    u = ca.SX.sym("u", problem.n_control)
    J = cost96(problem, u) if problem.model == "lorenz96" else cost63(problem, u)
    return u, J


def value_and_grad_function(problem: Any) -> Any:
    """u -> (J, dJ/du) as one SX Function; the gradient by one reverse sweep over the graph."""
    import casadi as ca

    u, J = graph(problem)
    # densify: an entry that J does not depend on (F, observed at step 0 only) would otherwise
    # be a structural zero, absent from the output buffer's nonzeros
    return ca.Function("vg", [u], [ca.densify(J), ca.densify(ca.gradient(J, u))], ["u"], ["J", "g"])


def cost_function(problem: Any) -> Any:
    """u -> J as an SX Function (the same graph, no reverse sweep)."""
    import casadi as ca

    u, J = graph(problem)
    return ca.Function("J", [u], [ca.densify(J)], ["u"], ["J"])


# ---- calling the Functions -----------------------------------------------------------------

class _Bound:
    """A Function with its ``buffer()``: inputs and outputs bound to NumPy memory per call.

    One buffer per Function, so calls are serialised by a lock (concurrent calls from several
    Python threads would otherwise bind each other's arrays).  Sizes are checked in Python
    before binding; CasADi also refuses a too-small buffer itself (an exception, no crash).
    """

    def __init__(self, f: Any) -> None:
        if not all(f.sparsity_in(i).is_dense() for i in range(f.n_in())) or \
                not all(f.sparsity_out(i).is_dense() for i in range(f.n_out())):
            raise ValueError(f"casadi Function {f.name()!r} has a sparse input or output; buffers need dense ones")
        self.f = f
        self.buf, self.run = f.buffer()
        self.lock = threading.Lock()

    def __call__(self, u: np.ndarray, *outs: np.ndarray) -> None:
        with self.lock:
            # ndarray.data is memoryview(array); NumPy's stubs declare the buffer protocol only for Python >= 3.12
            self.buf.set_arg(0, u.data)
            for i, out in enumerate(outs):
                self.buf.set_res(i, out.data)
            self.run()


def make_vg(problem: Any, f: Any) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    call = _Bound(f)
    check = problem.check_control
    n = problem.n_control

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u)
        J, g = np.empty(1), np.empty(n)
        call(u, J, g)
        return float(J[0]), g

    return vg


def make_J(problem: Any, f: Any) -> Callable[[np.ndarray], float]:
    call = _Bound(f)
    check = problem.check_control

    def J(u: np.ndarray) -> float:
        u = check(u)
        out = np.empty(1)
        call(u, out)
        return float(out[0])

    return J


def _mapper(f: Any, threads: int) -> Callable[[int], _Bound]:
    """B -> ``f.map(B, "thread", min(B, threads))`` bound to buffers, one per B (a few cached).

    The mapped Function takes u as an (n_u, B) matrix, column b the member b, in column-major
    order: the bytes of a C-contiguous (B, n_u) array; likewise G.  So nothing is transposed.
    """
    maps: OrderedDict[int, _Bound] = OrderedDict()
    lock = threading.Lock()

    def mapped(B: int) -> _Bound:
        with lock:
            if B in maps:
                maps.move_to_end(B)
                return maps[B]
            bound = _Bound(f if B == 1 else f.map(B, "thread", max(1, min(B, threads))))
            maps[B] = bound
            while len(maps) > MAP_CACHE:
                maps.popitem(last=False)
            return bound

    return mapped


def make_vgb(problem: Any, f: Any, threads: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """vgb(U) by the value-and-gradient Function mapped over the members (``_mapper``)."""
    mapped = _mapper(f, threads)

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)  # shape, B >= 1, finite: before any CasADi call
        B = U.shape[0]
        J, G = np.empty(B), np.empty(U.shape)
        mapped(B)(U, J, G)
        return J, G

    return vgb


def make_Jb(problem: Any, f: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """costs(U) by the cost Function mapped over the members, as ``make_vgb`` maps the gradient's."""
    mapped = _mapper(f, threads)

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U)
        J = np.empty(U.shape[0])
        mapped(U.shape[0])(U, J)
        return J

    return costs


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class CasadiBackend(Backend):
    name = "casadi"
    kind = "AD, expression graph (SX)"
    description = "CasADi: the unrolled window as one SX expression graph, reverse mode, one compiled casadi.Function"
    models = ("lorenz63", "lorenz96")
    requires = ("casadi",)
    batch_idiom = "map"

    def max_work(self, model: str) -> int | None:
        """The largest n x (last observation step) of one member that ``prepare`` accepts.

        The same bound for both models (Lorenz-63: n = 3).  A batch maps one member's graph
        over B members without copying it, so B does not enter the bound.
        """
        return max_work() if model in self.models else None

    def _info(self, f: Any, problem: Any) -> dict[str, Any]:
        import casadi as ca

        return {
            "casadi_version": ca.__version__,  # type: ignore[attr-defined]  # set at import; casadi's stubs omit it
            "graph": "SX, window unrolled", "evaluation": "SX virtual machine",
            "sx_instructions": int(f.n_instructions()), "work": work(problem), "max_work": max_work(),
        }

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        check_size(problem)
        t0 = time.perf_counter()
        f = value_and_grad_function(problem)
        vg = make_vg(problem, f)
        compile_s = time.perf_counter() - t0
        return Prepared(vg, problem, device=device, dtype=dtype, compile_s=compile_s, info=self._info(f, problem))

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost_any(self, problem: Any) -> Callable[[np.ndarray], float]:
        check_size(problem)
        return make_J(problem, cost_function(problem))

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem)

    def _prepare_cost_lorenz96(
        self, problem: Lorenz96Problem, *, device: str, dtype: str,
    ) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem)

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        check_size(problem)
        return make_Jb(problem, cost_function(problem), _threads())

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """``Function.map`` of the value-and-gradient Function over the members (idiom "map")."""
        check_size(problem)
        t0 = time.perf_counter()
        f = value_and_grad_function(problem)
        threads = _threads()
        vgb = make_vgb(problem, f, threads)
        compile_s = time.perf_counter() - t0
        info = {**self._info(f, problem), "map": f"thread, min(B, {threads}) threads"}
        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype,
                             compile_s=compile_s, info=info)


BACKENDS = [CasadiBackend()]
