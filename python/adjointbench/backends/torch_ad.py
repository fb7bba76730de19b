"""Backends ``torch`` and ``torch-compile``: PyTorch reverse-mode AD of the forward models.

``torch``: the model below run eagerly, recording a tape that ``torch.autograd.grad`` walks
backwards (the paper's Tbl. 2 PyTorch row).  ``torch-compile``: ``torch.func.grad_and_value``
of the same cost passed to ``torch.compile`` (Dynamo traces the Python time loop, unrolling
it, and the backward pass with it; Inductor compiles the one graph).  Because the loop is unrolled, compile time
grows with the window: on the 2-core development CPU the paper's 180-step window took
minutes to compile, far beyond the 2 s compile budget, so ``torch-compile`` is opt-in
(environment variable ``ADJOINTBENCH_TORCH_COMPILE=1``) and says so when unavailable.

Models: Lorenz-63 (forward Euler, 0-d tensors per variable) and Lorenz-96 (RK4 on (N,)
tensors, the ring's neighbours by ``torch.roll``).  Both costs are written over a leading
batch axis (``u[..., k]``, reductions over the trailing axes only), so ``prepare_batch``
records one tape for B members and seeds it with sum_b J_b: the members are independent, so
d(sum_b J_b)/dU_b = dJ_b/dU_b (idiom "batch axis"; measured against ``torch.func.vmap`` of
``grad_and_value`` in ``_prepare_batch``'s docstring).

Forward-only cost (``prepare_cost``, the cheap-gradient ratio's denominator): the same cost
function under ``torch.no_grad()`` (no tape), eagerly for ``torch``; for ``torch-compile``,
``torch.compile`` of the cost alone.  Measured at N = 40000, 40 steps, float64, 1 thread
(CPU time, minima of 8-15 interleaved rounds, loaded 2-thread EPYC VM): eager J 18.7 ms,
value and gradient 66 ms (taped forward ~30 ms, backward ~35 ms; the C hand adjoint of
``c_reference.measure96`` in the same runs: 13.1 ms, its J 3.6 ms); compiled J 22.8 ms,
value and gradient 54.7 ms (ratio 2.4).  The eager tape is bound by its ~3500 elementwise kernels
on (N,) operands per call, each writing a fresh tensor (rolls as copies, -grad for every
subtraction, grad * alpha for every scaled add), about 19 us each against 10-13 us for the
same kernel on cache-resident operands.

Devices: ``cpu`` and ``gpu`` (CUDA, where torch sees one); ``cuda`` is accepted as an alias
of ``gpu``.  Precision float64, or float32 on request.
"""

from __future__ import annotations

import os
import shutil
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

#: opt-in switch for ``torch-compile`` (see the module docstring for why)
COMPILE_ENV = "ADJOINTBENCH_TORCH_COMPILE"
#: Inductor options per device type.  On CPU the unrolled graph's Python wrapper allocates
#: ~150 intermediate buffers per call; ``cpp_wrapper`` moves that into C++ (paper problem,
#: 2 EPYC threads, compiled function alone: 85.5 -> 73.4 us per call; cold compile ~80 s
#: either way).  ``memory_planning`` (one pooled allocation) made it 380 us.  CUDA keeps the
#: defaults it was measured with (results/intel-xeon-16t-nvidia-h200/).
INDUCTOR_OPTIONS: dict[str, dict[str, Any]] = {"cpu": {"cpp_wrapper": True}}
#: our device names (the vocabulary of every backend) -> torch device types; ``cuda`` is an
#: alias kept for command lines and scripts written before the names were unified
TORCH_DEVICE = {"cpu": "cpu", "gpu": "cuda"}
DEVICE_ALIASES = {"cuda": "gpu"}


# ---- Lorenz-63 -----------------------------------------------------------------------------

def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: float) -> tuple[Any, Any, Any]:
    """One forward-Euler step of eq. (20), List 1 (tensors of any one shape in and out)."""
    return (
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    )


def make_cost(problem: Lorenz63Problem, dtype: Any, device: Any) -> Callable[[Any], Any]:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2, integrating only to the last observation.

    ``u`` has shape (n_control,) -> J 0-d, or (B, n_control) -> J of shape (B,).
    """
    import torch

    observed = set(problem.obs_steps.tolist())
    obs = torch.tensor(problem.obs_values, dtype=dtype, device=device)
    nlast = problem.last_obs_step
    dt = problem.dt
    n_control = problem.n_control
    fixed = tuple(problem.params[k] for k in ("sigma", "r", "beta"))

    def cost(u: torch.Tensor) -> torch.Tensor:
        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        sigma, r, beta = (u[..., 3], u[..., 4], u[..., 5]) if n_control == 6 else fixed
        at_obs = []
        for n in range(nlast + 1):
            if n in observed:
                at_obs.append(torch.stack([x, y, z], dim=-1))
            if n < nlast:
                x, y, z = euler_step(x, y, z, sigma, r, beta, dt)
        d = torch.stack(at_obs, dim=-2) - obs  # (..., K, 3)
        return 0.5 * torch.sum(d * d, dim=(-2, -1))

    return cost


# ---- Lorenz-96 -----------------------------------------------------------------------------

def rhs96(x: Any, F: Any) -> Any:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on the ring (DESIGN.md "Lorenz-96").

    ``torch.roll(x, s)[i] = x[i - s]``: shifts -1, 2, 1 give x_{i+1}, x_{i-2}, x_{i-1}; each
    roll is a copy (three per tendency), whose backward is the opposite roll.
    """
    import torch

    return (torch.roll(x, -1, -1) - torch.roll(x, 2, -1)) * torch.roll(x, 1, -1) - x + F


def rk4_step96(x: Any, F: Any, dt: float) -> Any:
    """One classical RK4 step, in the order of ``models.lorenz96_equations.step``.

    ``torch.add(a, b, alpha=c)`` is a + c b in one operation: the scalar products
    ``(0.5 dt) k1`` etc. were six extra tensors per step (and six allocations on the tape's
    forward).  N = 40000, 40 steps, float64, 1 thread, thread CPU time, min of 12 interleaved
    rounds: forward 19.7 -> 17.7 ms, value and gradient 71 -> 63 ms.  The gradient is the same
    to rounding (the backward multiplies by alpha as it multiplied by the scalar).
    """
    import torch

    k1 = rhs96(x, F)
    k2 = rhs96(torch.add(x, k1, alpha=0.5 * dt), F)
    k3 = rhs96(torch.add(x, k2, alpha=0.5 * dt), F)
    k4 = rhs96(torch.add(x, k3, alpha=dt), F)
    s = torch.add(torch.add(torch.add(k1, k2, alpha=2.0), k3, alpha=2.0), k4)  # k1 + 2 k2 + 2 k3 + k4
    return torch.add(x, s, alpha=dt / 6.0)


def observation_operator(indices: np.ndarray, n: int, device: Any) -> Callable[[Any], Any]:
    """x -> x[..., indices]: all of x, a strided slice (a view) when the indices are evenly
    spaced (e.g. the standard problem's 0, 2, 4, ...), else ``index_select`` (a gather, whose
    backward is zeros + ``index_add_``).  The slice saves little (10 observations of 20000
    of N = 40000 variables, forward and backward: 2.14 -> 2.00 ms)."""
    import torch

    if indices.size == n:
        return lambda x: x
    steps = np.diff(indices)
    if indices.size == 1 or (steps[0] > 0 and np.all(steps == steps[0])):
        start, stride = int(indices[0]), int(steps[0]) if indices.size > 1 else 1
        stop = start + stride * (indices.size - 1) + 1
        return lambda x: x[..., start:stop:stride]
    idx = torch.tensor(indices, dtype=torch.int64, device=device)
    return lambda x: torch.index_select(x, -1, idx)


def make_cost96(problem: Lorenz96Problem, dtype: Any, device: Any) -> Callable[[Any], Any]:
    """J(u) = 1/2 |x_0 - xb|^2/sigma_b^2 + 1/2 sum_k |x_{s_k}[idx] - y_k|^2/sigma_o^2.

    Integrates to the last observation only.  ``u`` is (x_0) or (x_0, F), shape (n_control,)
    -> J 0-d, or (B, n_control) -> J of shape (B,) with each member's own F.
    """
    import torch

    n = problem.n
    params = problem.control == "state+params"
    observed = set(problem.obs_steps.tolist())
    nlast = problem.last_obs_step
    dt = problem.dt
    F_fixed = problem.F
    sigma_o, sigma_b = problem.sigma_o, problem.sigma_b
    observe = observation_operator(problem.obs_indices, n, device)
    obs = torch.tensor(problem.obs_values, dtype=dtype, device=device)
    xb = None if problem.background is None else torch.tensor(problem.background, dtype=dtype, device=device)

    def cost(u: torch.Tensor) -> torch.Tensor:
        x0 = u[..., :n]
        F = u[..., n:] if params else F_fixed  # (..., 1): broadcasts over the ring
        x = x0
        at_obs = []
        for s in range(nlast + 1):
            if s in observed:
                at_obs.append(observe(x))
            if s < nlast:
                x = rk4_step96(x, F, dt)
        d = (torch.stack(at_obs, dim=-2) - obs) / sigma_o  # (..., K, len(idx))
        J = 0.5 * torch.sum(d * d, dim=(-2, -1))
        if xb is not None:
            e = (x0 - xb) / sigma_b
            J = J + 0.5 * torch.sum(e * e, dim=-1)
        return J

    return cost


def cost_for(problem: Any, dtype: Any, device: Any) -> Callable[[Any], Any]:
    return make_cost96(problem, dtype, device) if problem.model == "lorenz96" else make_cost(problem, dtype, device)


# ---- differentiation routes ----------------------------------------------------------------

def tape_value_and_grad(cost: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """(J, dJ/du) by recording the forward run on autograd's tape and walking it backwards."""
    import torch

    def value_and_grad(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            J = cost(u)
            (g,) = torch.autograd.grad(J, u)
        return J.detach(), g

    return value_and_grad


def tape_batch_value_and_grad(cost: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """(J[B], G[B, n_u]) from one tape over the batch axis, seeded with sum_b J_b.

    Members share no operation across the batch axis (every reduction is over trailing
    axes), so row b of d(sum J)/dU is dJ_b/dU_b.
    """
    import torch

    def value_and_grad(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            U = U.detach().requires_grad_(True)
            J = cost(U)
            (G,) = torch.autograd.grad(J.sum(), U)
        return J.detach(), G

    return value_and_grad


def vmap_batch_value_and_grad(cost: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """(J[B], G[B, n_u]) by ``torch.func.vmap(torch.func.grad_and_value(cost))`` (the
    alternative to the batch axis that ``_prepare_batch`` was measured against)."""
    import torch

    batched = torch.func.vmap(torch.func.grad_and_value(cost))

    def value_and_grad(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        G, J = batched(U)
        return J, G

    return value_and_grad


def functional_value_and_grad(cost: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """(J, dJ/du) by ``torch.func.grad_and_value``: one function Dynamo can trace whole.

    Compiled, forward and backward become a single inference graph, without the
    AOTAutograd runtime wrapper that ``torch.compile(cost)`` + ``backward()`` pays per call.
    """
    import torch

    def value_and_grad(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, J = torch.func.grad_and_value(cost)(u)
        return J, g

    return value_and_grad


def functional_batch_value_and_grad(cost: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """The batch axis in functional form (for ``torch.compile``): grad of sum_b J_b, J[B] as aux."""
    import torch

    def total(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        J = cost(U)
        return J.sum(), J

    def value_and_grad(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        G, (_, J) = torch.func.grad_and_value(total, has_aux=True)(U)
        return J, G

    return value_and_grad


def _vg(problem: Any, value_and_grad: Callable, dtype: Any, device: Any) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    import torch

    check = problem.check_control
    cuda = device.type == "cuda"

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        J, g = value_and_grad(torch.tensor(check(u), dtype=dtype, device=device))
        if cuda:  # kernels are asynchronous: time the work, not its launch
            torch.cuda.synchronize(device)
        return float(J), g.to("cpu", torch.float64).numpy()

    return vg


def _J(problem: Any, cost: Callable[[Any], Any], dtype: Any, device: Any) -> Callable[[np.ndarray], float]:
    """J(u) -> float: ``cost`` (eager or compiled) under ``torch.no_grad()``, no tape recorded.

    The same tensor conversion as ``_vg``, and the same synchronisation on CUDA, so that the
    cheap-gradient ratio compares like with like.
    """
    import torch

    check = problem.check_control
    cuda = device.type == "cuda"

    def J(u: np.ndarray) -> float:
        with torch.no_grad():
            value = cost(torch.tensor(check(u), dtype=dtype, device=device))
        if cuda:
            torch.cuda.synchronize(device)
        return float(value)

    return J


def _batch_tensor(U: np.ndarray, dtype: Any, device: Any) -> Any:
    """U as a fresh (B, n_u) tensor with row-major strides.

    ``torch.tensor`` keeps NumPy's strides, and a (1, n) view such as ``u[None, :]`` has
    stride 0 on its batch axis: Dynamo guards on strides, so that alone would recompile.
    """
    import torch

    return torch.empty(U.shape, dtype=dtype, device=device).copy_(torch.from_numpy(U))


def _vgb(
    problem: Any, value_and_grad: Callable, dtype: Any, device: Any, min_batch: int = 1,
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """vgb(U) around a batched (J[B], G[B, n_u]) function.

    ``min_batch`` = 2 (the compiled route, whose graph has a symbolic B >= 2): a single row is
    computed as two copies of itself and one kept (the members are independent).
    """
    import torch

    cuda = device.type == "cuda"

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)  # shape, B >= 1, finite: before any torch work
        B = U.shape[0]
        if B < min_batch:
            U = np.repeat(U, min_batch, axis=0)
        J, G = value_and_grad(_batch_tensor(U, dtype, device))
        if cuda:
            torch.cuda.synchronize(device)
        return J[:B].to("cpu", torch.float64).numpy(), G[:B].to("cpu", torch.float64).numpy()

    return vgb


def _costb(problem: Any, cost: Callable[[Any], Any], dtype: Any, device: Any) -> Callable[[np.ndarray], np.ndarray]:
    """costs(U) -> J[B]: the batched cost of ``_vgb`` under ``torch.no_grad()`` (no tape)."""
    import torch

    cuda = device.type == "cuda"

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U)
        with torch.no_grad():
            J = cost(_batch_tensor(U, dtype, device))
        if cuda:
            torch.cuda.synchronize(device)
        return J.to("cpu", torch.float64).numpy()

    return costs


def torch_dtype(dtype: str) -> Any:
    """The torch dtype of a precision name ("float64", "float32"): the one map, for every torch user."""
    import torch

    types = {"float64": torch.float64, "float32": torch.float32}
    if dtype not in types:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(types)}")
    return types[dtype]


def _fresh(fn: Callable) -> Callable:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps compiled graphs per code object, with a small recompile limit (8); every
    ``prepare`` makes a closure of the same code, so without this the ninth problem would
    silently run eagerly.
    """
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class _TorchBase(Backend):
    requires = ("torch",)
    dtypes = ("float64", "float32")
    models = ("lorenz63", "lorenz96")
    batch_idiom = "batch axis"

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        import torch

        return ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])

    def _check_options(self, device: str | None, dtype: str) -> str:
        asked = device
        device = DEVICE_ALIASES.get(device, device) if isinstance(device, str) else device
        if device == "gpu" and self.available()[0] and "gpu" not in self.devices():
            import torch

            raise ValueError(
                f"backend {self.name!r} cannot run on device {asked!r} here: torch {torch.__version__} sees no CUDA "
                f"device (torch.cuda.is_available() is False; built for CUDA: {torch.version.cuda or 'no'})"
            )
        return super()._check_options(device, dtype)

    def _info(self, device: Any) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"torch_version": torch.__version__, "torch_device": str(device)}
        if device.type == "cuda":
            info["device_kind"] = torch.cuda.get_device_name(device)
        return info

    @staticmethod
    def _torch(device: str, dtype: str) -> tuple[Any, Any]:
        import torch

        return torch.device(TORCH_DEVICE[device]), torch_dtype(dtype)


class TorchBackend(_TorchBase):
    name = "torch"
    kind = "AD, tape"
    description = "PyTorch autograd, eager (a tape of tensor operations: 0-d for Lorenz-63, (N,) for Lorenz-96)"

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        dev, tdt = self._torch(device, dtype)
        vg = _vg(problem, tape_value_and_grad(cost_for(problem, tdt, dev)), tdt, dev)
        return Prepared(vg, problem, device=device, dtype=dtype, info={"mode": "eager", **self._info(dev)})

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        """Forward-only J: the gradient's cost function, run without a tape."""
        dev, tdt = self._torch(device, dtype)
        return _J(problem, cost_for(problem, tdt, dev), tdt, dev)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        dev, tdt = self._torch(device, dtype)
        return _costb(problem, cost_for(problem, tdt, dev), tdt, dev)

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """One tape over a leading batch axis (``tape_batch_value_and_grad``).

        Chosen over ``torch.func.vmap(grad_and_value)`` (``vmap_batch_value_and_grad``, the
        same J and G to the bit): Lorenz-96 standard problem, B = 64, N = 40, 40 RK4 steps,
        float64, 2-thread EPYC VM shared with other jobs, best of 30 batches in each of four
        runs: batch axis 20-43 ms, vmap 36-94 ms (medians 24-71 vs 40-143 ms); Lorenz-63 paper
        problem, B = 64: 19-53 ms vs 44-108 ms.  vmap re-dispatches every operation through
        its batching rules, twice (forward and the transformed backward); the batch axis runs
        the same kernels on (B, N) operands directly.
        """
        dev, tdt = self._torch(device, dtype)
        vgb = _vgb(problem, tape_batch_value_and_grad(cost_for(problem, tdt, dev)), tdt, dev)
        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype,
                             info={"mode": "eager, batch axis", **self._info(dev)})


class TorchCompileBackend(_TorchBase):
    name = "torch-compile"
    compiled = True
    kind = "AD, compiled"
    description = "torch.func.grad_and_value of the torch model under torch.compile (Inductor), opt-in"

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok:
            return ok, reason
        if os.environ.get(COMPILE_ENV, "") != "1":
            return False, (
                "opt-in (set ADJOINTBENCH_TORCH_COMPILE=1): torch.compile unrolls the time loop and "
                "Inductor takes a minute or more per problem (cold: ~80 s on 2 idle cores, >200 s loaded, "
                "for the paper's 180 steps)"
            )
        if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return False, "torch.compile's Inductor needs a C++ compiler for CPU code; none found on PATH"
        return True, ""

    def _compiled(self, fn: Callable, dev: Any, dynamic: bool | None) -> Callable:
        import torch

        options = INDUCTOR_OPTIONS.get(dev.type, {})
        return torch.compile(_fresh(fn), fullgraph=True, dynamic=dynamic, options=options)

    @staticmethod
    def _batch_dynamic(fn: Callable) -> Callable:
        """``fn`` with the batch axis of its argument marked symbolic.

        Dynamo specialises sizes 0 and 1, so the symbolic graph serves B >= 2 only (hence
        ``min_batch=2`` in ``_vgb``).  ``mark_dynamic(..., min=2)`` failed in torch 2.13
        ("not simple sympy type NoneType"); the plain mark works.
        """
        import torch

        def call(U: Any) -> Any:
            torch._dynamo.mark_dynamic(U, 0)
            return fn(U)

        return call

    @staticmethod
    def _warm(call: Callable[[], Any], device: str) -> float:
        # compilation is lazy: the first call compiles forward and backward into one graph
        t0 = time.perf_counter()
        try:
            call()
        except Exception as e:  # noqa: BLE001 - report why torch.compile does not work here
            raise RuntimeError(f"torch.compile failed on {device}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        return time.perf_counter() - t0

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        dev, tdt = self._torch(device, dtype)
        compiled = self._compiled(functional_value_and_grad(cost_for(problem, tdt, dev)), dev, dynamic=False)
        vg = _vg(problem, compiled, tdt, dev)
        compile_s = self._warm(lambda: vg(problem.u0), device)
        return Prepared(
            vg, problem, device=device, dtype=dtype, compile_s=compile_s,
            info={"mode": "torch.compile(torch.func.grad_and_value, fullgraph=True, dynamic=False)",
                  "inductor_options": dict(INDUCTOR_OPTIONS.get(dev.type, {})), **self._info(dev)},
        )

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        """Forward-only J: ``torch.compile`` of the cost alone (an inference graph: called
        under ``no_grad`` on a tensor without ``requires_grad``), compiled here, in prepare.

        Dynamo unrolls the same time loop as for the gradient, so compile time grows with the
        window as there, but less of it: there is no backward (N = 40000, 40 steps, 2 loaded
        EPYC threads: 36 s against 104 s for the gradient's graph).
        """
        dev, tdt = self._torch(device, dtype)
        J = _J(problem, self._compiled(cost_for(problem, tdt, dev), dev, dynamic=False), tdt, dev)
        self._warm(lambda: J(problem.u0), device)
        return J

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """The batch axis compiled once for every B: the batch axis is marked symbolic
        (B >= 2, N and the window stay static), B = 1 runs as two copies of its row.

        Without the mark, the first graph would be specialised to the warm-up's B and the
        first other B would recompile (Dynamo's automatic dynamic shapes) inside a timed call.
        """
        dev, tdt = self._torch(device, dtype)
        compiled = self._compiled(functional_batch_value_and_grad(cost_for(problem, tdt, dev)), dev, dynamic=None)
        vgb = _vgb(problem, self._batch_dynamic(compiled), tdt, dev, min_batch=2)
        compile_s = self._warm(lambda: vgb(problem.u0[None, :]), device)
        return PreparedBatch(
            vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=compile_s,
            info={"mode": "torch.compile(torch.func.grad_and_value of sum_b J_b, fullgraph=True, batch axis symbolic, B >= 2)",
                  "inductor_options": dict(INDUCTOR_OPTIONS.get(dev.type, {})), **self._info(dev)},
        )


BACKENDS = [TorchBackend(), TorchCompileBackend()]
