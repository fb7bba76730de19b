"""Backends ``tensorflow`` and ``tensorflow-xla``: TensorFlow reverse-mode AD of the models.

``tensorflow``: the cost written in TensorFlow eager ops (a Python loop over time steps, each
RK4 step a few dozen eager kernels on (N,) tensors, the ring's neighbours by ``tf.roll``),
differentiated by ``tf.GradientTape``, which records every op of the forward run and walks
the record backwards.  Forward-only J (``prepare_cost``): the same function, run without a
tape.

``tensorflow-xla``: ``tf.function(jit_compile=True)`` of the tape's value and gradient, with
the time loop as one ``tf.while_loop`` (``while_v2``: its gradient is a second while loop
that pops the forward's intermediates, stacked per iteration in TensorLists, in reverse).
The graph's size does not depend on the window (unlike a Python loop traced into the graph,
which would unroll every step and its adjoint), so the compile time does not grow with
nsteps.  Each Lorenz-96 step is a ``tf.recompute_grad`` (the loop stacks the state x_n alone;
the gradient recomputes the RK4 stages, as ``jax``'s ``jax.checkpoint`` step; measured in
``checkpointed_step96``).  A while loop cannot stop at the observation steps, so every
iteration computes the misfit of its state and weighs it by w_s in {0, 1} (1 at the observation steps): one
observation-operator evaluation per step instead of one per observation (at the standard
problem's 2000 of N = 4000 observed variables, a strided slice and ~5 elementwise ops per
step beside RK4's ~40 on N values).  Compiled in ``prepare`` by a first call (``compile_s``:
tracing, the tape's gradient graph, XLA compilation and one run).  Forward-only J: the same
loop without the tape, compiled the same way.

Batches (both backends, both models): each cost is written over a leading batch axis
(``u[..., k]``, reductions over trailing axes only), so one tape records all B members and
is seeded with sum_b J_b; the members share no operation across that axis, so
d(sum_b J_b)/dU_b = dJ_b/dU_b (idiom "batch axis").  XLA compiles a program per concrete
shape: the batched function is traced once with a symbolic B and compiled on the first call
of each B (times in ``info["batch_compile_s"]``).

Measured (process CPU time, min of 15 calls, float64, 2-thread EPYC VM shared with other
jobs, TensorFlow 2.21): Lorenz-63 paper problem (180 steps), eager 0.56-0.67 s per gradient
and 0.10 s per J (the tape's backward runs ~13000 eager ops, most of them the Python
gradient functions' shape bookkeeping); XLA 0.5 ms and 0.4 ms (the while loop's per-iteration
overhead dominates).  Lorenz-96 standard problem N = 4000, 40 steps: eager 0.33-0.40 s and
0.08-0.09 s; XLA 7-8 ms and 1.3-1.8 ms (numpy's hand adjoint 11 ms and 2.3 ms, same runs).
XLA compiles in 1.4-2.1 s (CPU 0.6 s Lorenz-63, 1.6 s Lorenz-96, 1.7 s per new batch size).

Devices: ``cpu``, and ``gpu`` where TensorFlow sees one.  Precision: float64 only.

Importing TensorFlow: Dr.Jit imported after TensorFlow in one process segfaults, so Dr.Jit (and
``drjit.llvm.ad``) is imported first when it is installed; TensorFlow's C++ logging is set
to errors only (``TF_CPP_MIN_LOG_LEVEL=2``) for the import, unless the user set the level,
and the variable is restored afterwards (TensorFlow reads it once).  In TensorFlow 2.21 a
few INFO lines (the oneDNN notice) are written before absl logging is initialised, past
that setting; they are filtered from the import's stderr (everything else is passed on).
Threads: TensorFlow's defaults (one intra-op pool over all cores), not limited.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import Lorenz96Problem
from ..problem import Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

#: TensorFlow's C++ log level while it is imported (2: warnings and info off, errors kept)
LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "2"
#: our device names -> TensorFlow device strings
TF_DEVICE = {"cpu": "/CPU:0", "gpu": "/GPU:0"}

_import_lock = threading.Lock()
#: absl's pre-initialisation banner and its INFO/WARNING lines ("I0000 00:00:17... port.cc:153] ...")
_PREINIT_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:\d\d)")


# ---- importing TensorFlow ---------------------------------------------------------------------

def _import_drjit_first() -> None:
    """Dr.Jit after TensorFlow in one process segfaults (tried): import it first if present."""
    if "drjit" in sys.modules or importlib.util.find_spec("drjit") is None:
        return
    try:
        import drjit  # noqa: F401
        import drjit.llvm.ad  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken drjit only disables the drjit backend
        pass


def _import_quietly() -> Any:
    """``import tensorflow`` with its C++ log level at errors, absl's early INFO lines dropped.

    stderr (file descriptor 2, where the C++ side writes) goes to a temporary file for the
    import; what is not pre-initialisation noise is written back to stderr afterwards.
    """
    saved_env = os.environ.get(LOG_ENV)
    if saved_env is not None:  # the user chose a level: leave logging to them
        import tensorflow as tf

        return tf
    os.environ[LOG_ENV] = QUIET_LEVEL
    sys.stderr.flush()
    saved_fd = os.dup(2)
    try:
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 2)
            try:
                import tensorflow as tf
            finally:
                sys.stderr.flush()
                os.dup2(saved_fd, 2)
                capture.seek(0)
                kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                        if not _PREINIT_NOISE.match(line)]
                if kept:
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()
    finally:
        os.close(saved_fd)
        os.environ.pop(LOG_ENV, None)  # read once by TensorFlow: restore the user's environment
    return tf


def import_tensorflow() -> Any:
    """The ``tensorflow`` module, imported after Dr.Jit and quietly (module docstring)."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    with _import_lock:
        if "tensorflow" not in sys.modules:
            _import_drjit_first()
            return _import_quietly()
    import tensorflow as tf

    return tf


# ---- Lorenz-63 ------------------------------------------------------------------------------

def euler_step(x: Any, y: Any, z: Any, sigma: Any, r: Any, beta: Any, dt: float) -> tuple[Any, Any, Any]:
    """One forward-Euler step of eq. (20), List 1 (tensors of any one shape in and out)."""
    return (
        x + dt * sigma * (-x + y),
        y + dt * (-x * z + r * x - y),
        z + dt * (x * y - beta * z),
    )


def _params63(problem: Lorenz63Problem, u: Any) -> tuple[Any, Any, Any]:
    """(sigma, r, beta): the control's last three entries, or the problem's fixed floats."""
    if problem.n_control == 6:
        return u[..., 3], u[..., 4], u[..., 5]
    p = problem.params
    return p["sigma"], p["r"], p["beta"]


def make_cost63(problem: Lorenz63Problem) -> Callable[[Any], Any]:
    """J(u) = 1/2 sum_k |w_{s_k} - wo_k|^2 by a Python loop of eager ops, to the last observation.

    ``u`` has shape (n_control,) -> J 0-d, or (B, n_control) -> J of shape (B,).
    """
    tf = import_tensorflow()
    observed = set(problem.obs_steps.tolist())
    obs = tf.constant(problem.obs_values, dtype=tf.float64)
    nlast, dt = problem.last_obs_step, problem.dt

    def cost(u: Any) -> Any:
        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        sigma, r, beta = _params63(problem, u)
        at_obs = []
        for s in range(nlast + 1):
            if s in observed:
                at_obs.append(tf.stack([x, y, z], axis=-1))
            if s < nlast:
                x, y, z = euler_step(x, y, z, sigma, r, beta, dt)
        d = tf.stack(at_obs, axis=-2) - obs  # (..., K, 3)
        return 0.5 * tf.reduce_sum(d * d, axis=(-2, -1))

    return cost


def observation_weights(problem: Any) -> tuple[np.ndarray, np.ndarray]:
    """(w, Y): w_s = 1 at the observation steps s <= last, else 0; Y_s the observation at s
    (zeros elsewhere).  Shapes (last + 1,) and (last + 1, m): the while loop's lookup tables."""
    nlast = problem.last_obs_step
    w = np.zeros(nlast + 1)
    Y = np.zeros((nlast + 1, problem.obs_values.shape[1]))
    w[problem.obs_steps] = 1.0
    Y[problem.obs_steps] = problem.obs_values
    return w, Y


def make_loop_cost63(problem: Lorenz63Problem) -> Callable[[Any], Any]:
    """The same J with the time loop as one ``tf.while_loop`` (for ``tf.function``/XLA).

    Iteration s adds w_s/2 |w_s - wo_s|^2 and steps; the last observation (always at
    ``last_obs_step``, where the loop stops) is added after the loop, and a window observed
    at step 0 alone has no loop.
    """
    tf = import_tensorflow()
    w_np, Y_np = observation_weights(problem)
    w, Y = tf.constant(w_np), tf.constant(Y_np)
    nlast, dt = problem.last_obs_step, problem.dt

    def misfit(s: Any, x: Any, y: Any, z: Any) -> Any:
        o = tf.gather(Y, s)
        return 0.5 * ((x - o[0]) ** 2 + (y - o[1]) ** 2 + (z - o[2]) ** 2)

    def cost(u: Any) -> Any:
        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        sigma, r, beta = _params63(problem, u)
        if nlast == 0:  # no loop: XLA rejects the gradient's zero-length stacks (tried)
            return misfit(0, x, y, z)

        def body(s: Any, x: Any, y: Any, z: Any, J: Any) -> tuple[Any, ...]:
            J = J + tf.gather(w, s) * misfit(s, x, y, z)
            return (s + 1, *euler_step(x, y, z, sigma, r, beta, dt), J)

        _, x, y, z, J = tf.while_loop(
            lambda s, *_: s < nlast, body, (tf.constant(0), x, y, z, tf.zeros_like(x)), maximum_iterations=nlast,
        )
        return J + misfit(nlast, x, y, z)

    return cost


# ---- Lorenz-96 ------------------------------------------------------------------------------

def rhs96(x: Any, F: Any) -> Any:
    """f_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F on the ring (DESIGN.md "Lorenz-96").

    ``tf.roll(x, s)[i] = x[i - s]``: shifts -1, 2, 1 give x_{i+1}, x_{i-2}, x_{i-1}; each roll
    is a copy, and its gradient the opposite roll.
    """
    tf = import_tensorflow()
    return (tf.roll(x, -1, axis=-1) - tf.roll(x, 2, axis=-1)) * tf.roll(x, 1, axis=-1) - x + F


def rk4_step96(x: Any, F: Any, dt: float) -> Any:
    """One classical RK4 step, in the order of ``models.lorenz96_equations.step``."""
    k1 = rhs96(x, F)
    k2 = rhs96(x + (0.5 * dt) * k1, F)
    k3 = rhs96(x + (0.5 * dt) * k2, F)
    k4 = rhs96(x + dt * k3, F)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def observation_operator(indices: np.ndarray, n: int) -> Callable[[Any], Any]:
    """x -> x[..., indices]: all of x, a strided slice when the indices are evenly spaced (the
    standard problem's 0, 2, 4, ...), else ``tf.gather`` (whose gradient is a scatter-add)."""
    tf = import_tensorflow()
    if indices.size == n:
        return lambda x: x
    steps = np.diff(indices)
    if indices.size == 1 or np.all(steps == steps[0]):
        start, stride = int(indices[0]), int(steps[0]) if indices.size > 1 else 1
        stop = start + stride * (indices.size - 1) + 1
        return lambda x: x[..., start:stop:stride]
    idx = tf.constant(indices, dtype=tf.int32)
    return lambda x: tf.gather(x, idx, axis=-1)


class _Data96:
    """The problem's constants as float64 tensors, and its (x_0, F) split of a control."""

    def __init__(self, problem: Lorenz96Problem) -> None:
        tf = import_tensorflow()
        self.n = problem.n
        self.params = problem.control == "state+params"
        self.F = problem.F
        self.dt = problem.dt
        self.nlast = problem.last_obs_step
        self.sigma_o, self.sigma_b = problem.sigma_o, problem.sigma_b
        self.observe = observation_operator(problem.obs_indices, problem.n)
        self.xb = None if problem.background is None else tf.constant(problem.background, dtype=tf.float64)

    def split(self, u: Any) -> tuple[Any, Any]:
        # F as (..., 1): each member's own forcing broadcasts over its ring
        return u[..., : self.n], (u[..., self.n:] if self.params else self.F)

    def background(self, x0: Any) -> Any:
        """1/2 |x_0 - xb|^2 / sigma_b^2 (0 without a background)."""
        tf = import_tensorflow()
        if self.xb is None:
            return 0.0
        e = (x0 - self.xb) / self.sigma_b
        return 0.5 * tf.reduce_sum(e * e, axis=-1)


def make_cost96(problem: Lorenz96Problem) -> Callable[[Any], Any]:
    """J(u) = 1/2 |x_0 - xb|^2/sigma_b^2 + 1/2 sum_k |x_{s_k}[idx] - y_k|^2/sigma_o^2, eagerly.

    A Python loop over steps to the last observation; ``u`` is (x_0) or (x_0, F), shape
    (n_control,) -> J 0-d, or (B, n_control) -> J of shape (B,).
    """
    tf = import_tensorflow()
    data = _Data96(problem)
    observed = set(problem.obs_steps.tolist())
    obs = tf.constant(problem.obs_values, dtype=tf.float64)

    def cost(u: Any) -> Any:
        x0, F = data.split(u)
        x = x0
        at_obs = []
        for s in range(data.nlast + 1):
            if s in observed:
                at_obs.append(data.observe(x))
            if s < data.nlast:
                x = rk4_step96(x, F, data.dt)
        d = (tf.stack(at_obs, axis=-2) - obs) / data.sigma_o  # (..., K, len(idx))
        return 0.5 * tf.reduce_sum(d * d, axis=(-2, -1)) + data.background(x0)

    return cost


def checkpointed_step96(F: Any, dt: float) -> Callable[[Any], Any]:
    """x -> RK4 step under ``tf.recompute_grad``: the tape keeps the step's input x alone and
    the gradient recomputes the four stages, as the hand adjoint (and the ``jax`` backend's
    ``jax.checkpoint``) does, instead of stacking every stage's intermediates per iteration.

    N = 4000, 40 steps, float64, thread CPU time, min of 10, three interleaved rounds on the
    loaded 2-thread EPYC VM: 9.8-12.7 ms -> 7.2-7.7 ms per gradient, the same J and gradient.
    A forcing that is a control enters as an argument (``recompute_grad`` differentiates
    its arguments, not the tensors a function closes over); a fixed F stays a Python float.
    """
    tf = import_tensorflow()
    if isinstance(F, float):
        return tf.recompute_grad(lambda x: rk4_step96(x, F, dt))
    step = tf.recompute_grad(lambda x, F: rk4_step96(x, F, dt))
    return lambda x: step(x, F)


def make_loop_cost96(problem: Lorenz96Problem) -> Callable[[Any], Any]:
    """The same J with the time loop as one ``tf.while_loop`` weighted by w_s (module docstring),
    each step checkpointed (``checkpointed_step96``)."""
    tf = import_tensorflow()
    data = _Data96(problem)
    w_np, Y_np = observation_weights(problem)
    w, Y = tf.constant(w_np), tf.constant(Y_np)
    nlast = data.nlast

    def misfit(s: Any, x: Any) -> Any:
        d = (data.observe(x) - tf.gather(Y, s)) / data.sigma_o
        return 0.5 * tf.reduce_sum(d * d, axis=-1)

    def cost(u: Any) -> Any:
        x0, F = data.split(u)
        if nlast == 0:  # no loop: XLA rejects the gradient's zero-length stacks (tried)
            return misfit(0, x0) + data.background(x0)
        step = checkpointed_step96(F, data.dt)

        def body(s: Any, x: Any, J: Any) -> tuple[Any, Any, Any]:
            return s + 1, step(x), J + tf.gather(w, s) * misfit(s, x)

        _, x, J = tf.while_loop(
            lambda s, *_: s < nlast, body, (tf.constant(0), x0, tf.zeros_like(x0[..., 0])), maximum_iterations=nlast,
        )
        return J + misfit(nlast, x) + data.background(x0)

    return cost


def cost_for(problem: Any, loop: bool = False) -> Callable[[Any], Any]:
    """The eager cost (Python loop), or with ``loop`` the ``tf.while_loop`` cost for XLA."""
    if problem.model == "lorenz96":
        return make_loop_cost96(problem) if loop else make_cost96(problem)
    return make_loop_cost63(problem) if loop else make_cost63(problem)


# ---- differentiation ------------------------------------------------------------------------

def tape_value_and_grad(cost: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """(J, dJ/du) for one control, or (J[B], G[B, n_u]) for a batch: one tape, seeded with
    sum_b J_b (each member's J for a single control)."""
    tf = import_tensorflow()

    def value_and_grad(u: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(u)
            J = cost(u)
            total = tf.reduce_sum(J)  # inside the tape: the seed must be recorded too
        return J, tape.gradient(total, u)

    return value_and_grad


_serial = itertools.count()


def _fresh(fn: Callable) -> Callable:
    """A copy of ``fn`` with a code object of its own.

    ``tf.function``'s retracing detector is keyed by the code object: every ``prepare`` traces
    a new closure of the same code, which after five problems it reports as "excessive
    retracing" (a warning meant for one function retraced, not for many prepared problems).
    """
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{next(_serial)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def compiled(fn: Callable[[Any], Any], n_control: int, batch: bool) -> Any:
    """``tf.function(jit_compile=True)`` of ``fn`` for float64 controls of shape (n_u,) or (None, n_u)."""
    tf = import_tensorflow()
    shape = (None, n_control) if batch else (n_control,)
    return tf.function(_fresh(fn), jit_compile=True, input_signature=[tf.TensorSpec(shape, tf.float64)],
                       autograph=False)


# ---- prepared callables -----------------------------------------------------------------------

def _vg(problem: Any, value_and_grad: Callable, device: str) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    tf = import_tensorflow()
    check = problem.check_control
    where = TF_DEVICE[device]

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = check(u)  # shape, real, finite: before any TensorFlow work
        with tf.device(where):
            J, g = value_and_grad(tf.constant(u, dtype=tf.float64))
        return float(J), np.asarray(g.numpy(), dtype=np.float64)  # .numpy() waits for the device

    return vg


def _J(problem: Any, cost: Callable, device: str) -> Callable[[np.ndarray], float]:
    """J(u) -> float by ``cost`` (eager or compiled), with no tape recording: the same
    conversions as ``_vg``, so the cheap-gradient ratio compares like with like."""
    tf = import_tensorflow()
    check = problem.check_control
    where = TF_DEVICE[device]

    def J(u: np.ndarray) -> float:
        u = check(u)
        with tf.device(where):
            return float(cost(tf.constant(u, dtype=tf.float64)))

    return J


def _Jb(problem: Any, cost: Callable, device: str) -> Callable[[np.ndarray], np.ndarray]:
    """costs(U) -> J[B] by the batched ``cost`` (eager or compiled), no tape: ``_vgb``'s conversions."""
    tf = import_tensorflow()
    where = TF_DEVICE[device]

    def costs(U: np.ndarray) -> np.ndarray:
        U = check_controls(problem, U)
        with tf.device(where):
            return np.asarray(cost(tf.constant(U, dtype=tf.float64)).numpy(), dtype=np.float64)

    return costs


class _FirstCallTimes:
    """Wraps a compiled batch function; records the first call of each B (XLA compiles then)."""

    def __init__(self, fn: Callable) -> None:
        self._fn = fn
        self.times: dict[int, float] = {}
        self._lock = threading.Lock()

    def __call__(self, U: Any) -> Any:
        B = int(U.shape[0])
        if B in self.times:
            return self._fn(U)
        with self._lock:
            t0 = time.perf_counter()
            out = self._fn(U)
            self.times.setdefault(B, time.perf_counter() - t0)
        return out


def _vgb(problem: Any, value_and_grad: Callable, device: str) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    tf = import_tensorflow()
    where = TF_DEVICE[device]

    def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = check_controls(problem, U)  # shape, B >= 1, finite: before any TensorFlow work
        with tf.device(where):
            J, G = value_and_grad(tf.constant(U, dtype=tf.float64))
        return np.asarray(J.numpy(), dtype=np.float64), np.asarray(G.numpy(), dtype=np.float64)

    return vgb


def _warm(call: Callable[[], Any], device: str) -> float:
    """Seconds for the first call (tracing and XLA compilation happen there)."""
    t0 = time.perf_counter()
    try:
        call()
    except Exception as e:  # noqa: BLE001 - say that compilation failed, and why
        raise RuntimeError(f"tf.function(jit_compile=True) failed on {device}: "
                           f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
    return time.perf_counter() - t0


class _TensorFlowBase(Backend):
    requires = ("tensorflow",)
    models = ("lorenz63", "lorenz96")
    batch_idiom = "batch axis"

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return ["cpu"]
        tf = import_tensorflow()
        return ["cpu"] + (["gpu"] if tf.config.list_physical_devices("GPU") else [])

    def _check_options(self, device: str | None, dtype: str) -> str:
        if device == "gpu" and self.available()[0] and "gpu" not in self.devices():
            tf = import_tensorflow()
            raise ValueError(f"backend {self.name!r} cannot run on device 'gpu' here: tensorflow {tf.__version__} "
                             f"sees no GPU (built with CUDA: {tf.test.is_built_with_cuda()})")
        return super()._check_options(device, dtype)

    def _info(self, device: str, mode: str) -> dict[str, Any]:
        tf = import_tensorflow()
        return {"mode": mode, "tensorflow_version": tf.__version__, "tf_device": TF_DEVICE[device]}

    # every model goes through the same code, chosen by ``cost_for``
    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device)

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device)

    def _prepare_any(self, problem: Any, device: str) -> Prepared:
        raise NotImplementedError

    def _prepare_cost_any(self, problem: Any, device: str) -> Callable[[np.ndarray], float]:
        raise NotImplementedError


class TensorFlowBackend(_TensorFlowBase):
    name = "tensorflow"
    kind = "AD, tape (eager)"
    #: ~0.5 s per gradient of the paper problem (180 steps; ~16000 eager ops, most of them the
    #: tape's Python gradient functions): the contract tests use short windows
    slow = True
    description = "tf.GradientTape over eager TensorFlow ops (a Python loop of time steps; tf.roll for Lorenz-96)"

    def _prepare_any(self, problem: Any, device: str) -> Prepared:
        with import_tensorflow().device(TF_DEVICE[device]):
            vg = _vg(problem, tape_value_and_grad(cost_for(problem)), device)
        return Prepared(vg, problem, device=device, dtype="float64", info=self._info(device, "eager, GradientTape"))

    def _prepare_cost_any(self, problem: Any, device: str) -> Callable[[np.ndarray], float]:
        """Forward-only J: the gradient's cost function, run eagerly without a tape."""
        with import_tensorflow().device(TF_DEVICE[device]):
            return _J(problem, cost_for(problem), device)

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        with import_tensorflow().device(TF_DEVICE[device]):
            return _Jb(problem, cost_for(problem), device)

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """One tape over the leading batch axis, seeded with sum_b J_b (module docstring).

        The eager alternative, ``tf.vectorized_map`` of a per-member tape, converts the
        function to a graph (pfor) and is the compiled route's business; a loop over members
        would pay the ~thousands of eager dispatches per member that the batch axis pays once.
        """
        with import_tensorflow().device(TF_DEVICE[device]):
            vgb = _vgb(problem, tape_value_and_grad(cost_for(problem)), device)
        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype="float64",
                             info=self._info(device, "eager, GradientTape, batch axis"))


class TensorFlowXLABackend(_TensorFlowBase):
    name = "tensorflow-xla"
    compiled = True
    kind = "AD, XLA (graph)"
    description = "tf.function(jit_compile=True) of the GradientTape value and gradient, time loop as tf.while_loop"

    MODE = "tf.function(jit_compile=True), GradientTape, tf.while_loop"

    def _prepare_any(self, problem: Any, device: str) -> Prepared:
        with import_tensorflow().device(TF_DEVICE[device]):
            fn = compiled(tape_value_and_grad(cost_for(problem, loop=True)), problem.n_control, batch=False)
        vg = _vg(problem, fn, device)
        compile_s = _warm(lambda: vg(problem.u0), device)
        return Prepared(vg, problem, device=device, dtype="float64", compile_s=compile_s,
                        info=self._info(device, self.MODE))

    def _prepare_cost_any(self, problem: Any, device: str) -> Callable[[np.ndarray], float]:
        """Forward-only J: the while-loop cost alone under ``tf.function(jit_compile=True)``,
        compiled here by a first call."""
        with import_tensorflow().device(TF_DEVICE[device]):
            fn = compiled(cost_for(problem, loop=True), problem.n_control, batch=False)
        J = _J(problem, fn, device)
        _warm(lambda: J(problem.u0), device)
        return J

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """The batched while-loop cost alone under XLA, compiled per B on its first call."""
        with import_tensorflow().device(TF_DEVICE[device]):
            fn = compiled(cost_for(problem, loop=True), problem.n_control, batch=True)
        return _Jb(problem, fn, device)

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """The batch axis under XLA: traced once with a symbolic B, compiled per B on its
        first call (the B = 1 program here, in prepare: ``compile_s``)."""
        with import_tensorflow().device(TF_DEVICE[device]):
            fn = _FirstCallTimes(compiled(tape_value_and_grad(cost_for(problem, loop=True)), problem.n_control, batch=True))
        vgb = _vgb(problem, fn, device)
        compile_s = _warm(lambda: vgb(problem.u0[None, :]), device)
        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype="float64",
                             compile_s=compile_s,
                             info={**self._info(device, self.MODE + ", batch axis"), "batch_compile_s": fn.times})


BACKENDS = [TensorFlowBackend(), TensorFlowXLABackend()]
