"""Backends ``torch`` and ``torch-compile``: PyTorch reverse-mode AD of the forward model.

``torch``: the model below run eagerly, recording a tape that ``torch.autograd.grad`` walks
backwards (the paper's Tbl. 2 PyTorch row).  ``torch-compile``: ``torch.func.grad_and_value``
of the same cost passed to ``torch.compile`` (Dynamo traces the Python time loop, unrolling
it, and the backward pass with it; Inductor compiles the one graph).  Because the loop is unrolled, compile time
grows with the window: on the 2-core development CPU the paper's 180-step window took
minutes to compile, far beyond the 2 s compile budget, so ``torch-compile`` is opt-in
(environment variable ``ADJOINTBENCH_TORCH_COMPILE=1``) and says so when unavailable.

Both run in float64 (or float32 on request) on ``cpu`` or ``cuda`` where torch sees a GPU.
"""

from __future__ import annotations

import os
import shutil
import time
import types
from typing import Any, Callable

import numpy as np

from ..problem import Lorenz63Problem
from .base import Backend, Prepared

#: opt-in switch for ``torch-compile`` (see the module docstring for why)
COMPILE_ENV = "ADJOINTBENCH_TORCH_COMPILE"
#: Inductor options per device type.  On CPU the unrolled graph's Python wrapper allocates
#: ~150 intermediate buffers per call; ``cpp_wrapper`` moves that into C++ (paper problem,
#: 2 EPYC threads, compiled function alone: 85.5 -> 73.4 us per call; cold compile ~80 s
#: either way).  ``memory_planning`` (one pooled allocation) made it 380 us.  CUDA keeps the
#: defaults it was measured with (results/intel-xeon-16t-nvidia-h200/).
INDUCTOR_OPTIONS: dict[str, dict[str, Any]] = {"cpu": {"cpp_wrapper": True}}


def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: float) -> tuple[Any, Any, Any]:
    """One forward-Euler step of eq. (20), List 1 (0-d tensors in, 0-d tensors out)."""
    return (
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    )


def make_cost(problem: Lorenz63Problem, dtype: Any, device: Any) -> Callable[[Any], Any]:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2, integrating only to the last observation."""
    import torch

    observed = set(problem.obs_steps.tolist())
    obs = torch.tensor(problem.obs_values, dtype=dtype, device=device)
    nlast = problem.last_obs_step
    dt = problem.dt
    n_control = problem.n_control
    fixed = tuple(problem.params[k] for k in ("sigma", "r", "beta"))

    def cost(u: torch.Tensor) -> torch.Tensor:
        x, y, z = u[0], u[1], u[2]
        sigma, r, beta = (u[3], u[4], u[5]) if n_control == 6 else fixed
        at_obs = []
        for n in range(nlast + 1):
            if n in observed:
                at_obs.append(torch.stack([x, y, z]))
            if n < nlast:
                x, y, z = euler_step(x, y, z, sigma, r, beta, dt)
        d = torch.stack(at_obs) - obs
        return 0.5 * torch.sum(d * d)

    return cost


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


def _vg(problem: Lorenz63Problem, value_and_grad: Callable, dtype: Any, device: Any) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    import torch

    check = problem.check_control
    cuda = device.type == "cuda"

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        J, g = value_and_grad(torch.tensor(check(u), dtype=dtype, device=device))
        if cuda:  # kernels are asynchronous: time the work, not its launch
            torch.cuda.synchronize(device)
        return float(J), g.to("cpu", torch.float64).numpy()

    return vg


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float64": torch.float64, "float32": torch.float32}[dtype]


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

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        import torch

        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    def _info(self, device: Any) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"torch_version": torch.__version__, "torch_device": str(device)}
        if device.type == "cuda":
            info["device_kind"] = torch.cuda.get_device_name(device)
        return info


class TorchBackend(_TorchBase):
    name = "torch"
    kind = "AD, tape"
    description = "PyTorch autograd, eager (a tape of 0-d tensor operations)"

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        import torch

        dev = torch.device(device)
        tdt = _torch_dtype(dtype)
        vg = _vg(problem, tape_value_and_grad(make_cost(problem, tdt, dev)), tdt, dev)
        return Prepared(vg, problem, device=dev.type, dtype=dtype, info={"mode": "eager", **self._info(dev)})


class TorchCompileBackend(_TorchBase):
    name = "torch-compile"
    kind = "AD, compiled"
    description = "torch.func.grad_and_value of the torch model under torch.compile (Inductor), opt-in"

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok:
            return ok, reason
        if os.environ.get(COMPILE_ENV, "") != "1":
            return False, (
                "opt-in (set ADJOINTBENCH_TORCH_COMPILE=1): torch.compile unrolls the time loop and "
                "Inductor takes a minute or more per problem (cold: ~80 s on 2 idle cores, >200 s loaded, for the paper's 180 steps)"
            )
        if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return False, "torch.compile's Inductor needs a C++ compiler for CPU code; none found on PATH"
        return True, ""

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        import torch

        dev = torch.device(device)
        tdt = _torch_dtype(dtype)
        value_and_grad = _fresh(functional_value_and_grad(make_cost(problem, tdt, dev)))
        options = INDUCTOR_OPTIONS.get(dev.type, {})
        vg = _vg(problem, torch.compile(value_and_grad, fullgraph=True, dynamic=False, options=options), tdt, dev)
        # compilation is lazy: the first forward and backward compile their graphs
        t0 = time.perf_counter()
        try:
            vg(problem.u0)
        except Exception as e:  # noqa: BLE001 - report why torch.compile does not work here
            raise RuntimeError(f"torch.compile failed on {device}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        compile_s = time.perf_counter() - t0
        return Prepared(
            vg, problem, device=dev.type, dtype=dtype, compile_s=compile_s,
            info={"mode": "torch.compile(torch.func.grad_and_value, fullgraph=True, dynamic=False)",
                  "inductor_options": dict(options), **self._info(dev)},
        )


BACKENDS = [TorchBackend(), TorchCompileBackend()]
