"""The discontinuous model of Zhang et al. (2000), paper §4.2, shared by Tbl. 4 and Fig. 6.

Model, eqs. (26)-(31): dx/dt = f1(x) = 2x - 2 for x < 1, f2(x) = x - (1 + dx) for x >= 1
(dx = 3 gives the paper's f2 = x - 4), forward Euler with dt = 0.1 for 4 steps (eq. 28), and
J(x0) = x(t_R)^2 (eq. 29).  Its gradient (eq. 30) is 2 x4 prod_i (1 + dt f'(x_i)); the paper
prints it without the factor 2, which does not change where it vanishes.

J = 0 needs x4 = 0.  For dx <= 3.5 that happens only with all four steps on the f1 branch,
where x_{n+1} - 1 = 1.2 (x_n - 1): x0* = 1 - 1.2^-4 = 0.51775 (the paper's "global minimum at
0.5").  Away from it J is a sawtooth whose teeth (local minima with non-zero gradient) sit just
right of each x0 that sends some x_i onto the threshold 1.

The gradient comes from the hand adjoint (eq. 30, backend name ``numpy``), torch autograd
(``torch``: Python ``if`` on tensor values, eager) or JAX (``jax``: ``jnp.where`` under ``jit``;
``jax-nojit``: the same, eager); all are defined here because the model is not Lorenz (1963).
The optimiser is torch's L-BFGS as the paper used it (``optimize.lbfgs_torch``).
"""

from __future__ import annotations

import numpy as np

from .. import optimize
from ..workload import VG

DT = 0.1
NSTEPS = 4
#: the only x0 with x4 = 0 for dx <= 3.5: all four Euler steps on f1 (eq. 26)
X_STAR = 1.0 - 1.2 ** -NSTEPS
#: a run "converged to the global minimum" when its final x0 is this close to X_STAR
CONVERGED_TOL = 1e-6
MAX_RESTARTS = 10
GRADIENTS = ("numpy", "torch", "jax", "jax-nojit", "torch-float32")
#: each gradient of the discontinuous model is written with a backend's tool, in a precision that
#: backend supports: the backend's own ``available()`` and ``dtypes`` decide whether it runs here
TOOL = {"numpy": ("numpy", "float64"), "torch": ("torch", "float64"), "jax": ("jax", "float64"),
        "jax-nojit": ("jax-nojit", "float64"), "torch-float32": ("torch", "float32")}
#: torch-float32: model and optimizer in single precision, to show which cells depend on rounding
DEFAULT_BACKENDS = ["numpy", "torch", "jax", "torch-float32"]


# ---- the model and its hand adjoint -------------------------------------------------------
def tendency(x: float, dx: float) -> float:
    """Eqs. (26)/(31): the switch at x = 1."""
    return 2.0 * x - 2.0 if x < 1.0 else x - (1.0 + dx)


def forward(x0: float, dx: float) -> list[float]:
    """States x_0..x_4 of eq. (27)."""
    xs = [float(x0)]
    for _ in range(NSTEPS):
        xs.append(xs[-1] + DT * tendency(xs[-1], dx))
    return xs


def cost(x0: float, dx: float) -> float:
    return forward(x0, dx)[-1] ** 2


def hand_gradient(x0: float, dx: float) -> float:
    """Eq. (30) with its factor 2: dJ/dx0 = 2 x4 prod_i (1 + dt f'(x_i)), f' = 2 or 1."""
    xs = forward(x0, dx)
    prod = 1.0
    for x in xs[:-1]:
        prod *= 1.0 + DT * (2.0 if x < 1.0 else 1.0)
    return 2.0 * xs[-1] * prod


def cost_curve(x0: np.ndarray, dx: float) -> np.ndarray:
    """J on an array of first guesses (vectorised, for plotting the sawtooth)."""
    x = np.asarray(x0, dtype=np.float64).copy()
    for _ in range(NSTEPS):
        x = x + DT * np.where(x < 1.0, 2.0 * x - 2.0, x - (1.0 + dx))
    return x * x


def tooth_edges(dx: float) -> list[float]:
    """First guesses x0 > 1 whose k-th state (k = 1..3) lands exactly on the switch x_k = 1.

    Just right of each, J jumps down (the state there takes the f2 branch one step longer), so
    each is the bottom of a tooth of the sawtooth: a local minimum where the gradient is not 0.
    """
    edges = []
    for k in range(1, NSTEPS):
        x = 1.0
        for _ in range(k):
            x = (x + DT * (1.0 + dx)) / (1.0 + DT)  # inverse of an Euler step on f2
        edges.append(x)
    return edges


def hand_vg(dx: float) -> VG:
    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        x0 = float(np.asarray(u).reshape(-1)[0])
        return cost(x0, dx), np.array([hand_gradient(x0, dx)])

    return vg


# ---- AD versions: the same model written for torch and JAX --------------------------------
def torch_vg(dx: float, dtype: str = "float64") -> VG:
    """torch autograd through Python control flow (the switch is an ``if`` on the value);
    ``float32`` is torch's (and torch for R's) default dtype."""
    import torch

    from ..backends.torch_ad import torch_dtype

    tdtype = torch_dtype(dtype)

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        x0 = torch.tensor(float(np.asarray(u).reshape(-1)[0]), dtype=tdtype, requires_grad=True)
        x = x0
        for _ in range(NSTEPS):
            x = x + DT * (2.0 * x - 2.0 if x.item() < 1.0 else x - (1.0 + dx))
        J = x * x
        (g,) = torch.autograd.grad(J, x0)
        return float(J.detach()), np.array([float(g)], dtype=dtype)

    return vg


def _jax_value_and_grad(dx: float, jit: bool):
    """value_and_grad of eq. (29); trace and call it inside ``jax.enable_x64(True)`` (jax_vg)."""
    import jax
    import jax.numpy as jnp

    def J(x0):
        x = x0
        for _ in range(NSTEPS):
            x = x + DT * jnp.where(x < 1.0, 2.0 * x - 2.0, x - (1.0 + dx))
        return x * x

    f = jax.value_and_grad(J)
    return jax.jit(f) if jit else f


def jax_vg(dx: float, jit: bool = True) -> VG:
    """JAX: the switch as ``jnp.where`` (both branches evaluated, the chosen one differentiated).

    float64 through the thread-local ``jax.enable_x64(True)`` context around each call (tracing
    happens in the first one), as the jax backends do (``backends/_jax_model.py``): the
    process-wide ``jax_enable_x64`` flag, and with it the user's own JAX code, is left alone.
    """
    import jax
    import jax.numpy as jnp

    f = _jax_value_and_grad(dx, jit)

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        with jax.enable_x64(True):
            J, g = f(jnp.float64(float(np.asarray(u).reshape(-1)[0])))
            return float(J), np.array([float(g)])

    return vg


def make_vg(gradient: str, dx: float) -> VG:
    if gradient == "numpy":
        return hand_vg(dx)
    if gradient == "torch":
        return torch_vg(dx)
    if gradient == "torch-float32":
        return torch_vg(dx, "float32")
    if gradient == "jax":
        return jax_vg(dx, jit=True)
    if gradient == "jax-nojit":
        return jax_vg(dx, jit=False)
    raise ValueError(f"no discontinuous-model gradient {gradient!r}; expected one of {', '.join(GRADIENTS)}")


def unavailable(gradient: str) -> str | None:
    """Why ``gradient`` cannot be used here (None when it can): its backend's own verdict."""
    from ..backends import backend

    if gradient not in TOOL:
        return f"the discontinuous model has gradients {', '.join(GRADIENTS)} only"
    name, dtype = TOOL[gradient]
    b = backend(name)
    ok, why = b.available()
    if not ok:
        return why
    if dtype not in b.dtypes:
        return f"backend {name!r} supports dtype {', '.join(b.dtypes)}, not {dtype}"
    return None


def gradients_for(requested: list[str] | None) -> tuple[list[str], dict[str, str]]:
    from ..backends import backend, names

    ok, why = backend("torch").available()
    if not ok:
        raise ValueError(f"Tbl. 4 and Fig. 6 use torch.optim.LBFGS (the paper's optimiser), and torch is unavailable: {why}")

    if requested:
        known = set(names()) | set(GRADIENTS)
        for n in requested:
            if n not in known:
                raise ValueError(f"unknown backend {n!r}; the discontinuous model has {', '.join(GRADIENTS)}")
    use, skipped = [], {}
    for n in requested or DEFAULT_BACKENDS:
        reason = unavailable(n)
        if reason:
            skipped[n] = reason
        elif n not in use:
            use.append(n)
    return use, skipped


# ---- the optimisation ---------------------------------------------------------------------
def minimise(vg: VG, x0: float, *, line_search: bool, restart: bool, dtype: str = "float64") -> optimize.OptimizeResult:
    """torch L-BFGS as in the paper; ``restart``: up to 10 restarts from steepest descent."""
    return optimize.lbfgs_torch(vg, [x0], line_search=line_search, restarts=MAX_RESTARTS if restart else 0,
                                dtype=dtype)


def dtype_of(gradient: str) -> str:
    """The precision of the model and the optimiser for ``gradient`` (``TOOL``)."""
    return TOOL[gradient][1] if gradient in TOOL else "float64"


def converged(res: optimize.OptimizeResult) -> bool:
    return abs(float(res.x[0]) - X_STAR) <= CONVERGED_TOL
