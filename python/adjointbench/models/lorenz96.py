"""The Lorenz (1996) 4D-Var problem: set-up, validation, JSON format (docs/DESIGN.md "Lorenz-96").

N >= 4 variables on a ring, dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, classical RK4;
strong-constraint cost

    J(u) = 1/2 sum_i (x_{0,i} - xb_i)^2 / sigma_b^2 + 1/2 sum_k sum_j (x_{s_k, idx_j} - y_{k,j})^2 / sigma_o^2

with control u = x_0 (``state``) or (x_0, F) (``state+params``, F last).  The equations in
Python are ``lorenz96_equations``; this module only holds and checks the data.

Validation is vectorised (one NumPy pass per array), so a problem with N = 10^6 is checked in
well under a second; the trajectory every adjoint stores, (last observed step + 1) x N
float64 values, is bounded by a memory budget before anything of that size is allocated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..problem import CONTROLS, _choice, _finite_float, _int, _reject_bools, control_vector, read_problem_text

MODEL = "lorenz96"
SCHEMES = ("rk4",)
MIN_N = 4
#: the DESIGN.md default set-up
STANDARD_F = 8.0
STANDARD_DT = 0.05
STANDARD_SPINUP = 500
STANDARD_OBS_EVERY = 4
#: default bound on the stored trajectory; ADJOINTBENCH_MEMORY_BUDGET (bytes) or the
#: ``memory_budget`` field overrides it
DEFAULT_MEMORY_BUDGET = 8 * 2**30
BUDGET_ENV = "ADJOINTBENCH_MEMORY_BUDGET"


class MemoryBudgetError(ValueError):
    """A problem or batch refused before allocating because it would not fit the memory budget
    (the stored trajectory here; a batch's work slots, an AD graph, a tape in the backends that
    bound theirs).  A ValueError like every bad input; the scaling study skips such a case with
    its message, where any other ValueError fails it."""


def default_memory_budget() -> int:
    raw = os.environ.get(BUDGET_ENV)
    if raw is None or raw == "":
        return DEFAULT_MEMORY_BUDGET
    try:
        value = int(float(raw))
    except ValueError:
        raise ValueError(f"{BUDGET_ENV} must be a number of bytes, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{BUDGET_ENV} must be > 0, got {raw!r}")
    return value


def _real_array(value: Any, ndim: int, what: str) -> np.ndarray:
    """A read-only float64 array of ``ndim`` dimensions with finite entries, or ValueError."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        _reject_bools(value, what)
        try:
            arr = np.array(value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be an array of real numbers") from None
    if arr.dtype.kind not in "iuf" or arr.ndim != ndim:
        shape = "a list" if ndim == 1 else "a list of lists (one row per observation step)"
        if arr.dtype.kind in "iuf" and arr.ndim != ndim:
            raise ValueError(f"{what} must be {shape} of real numbers, got an array of shape {arr.shape}")
        raise ValueError(f"{what} must be {shape} of real numbers")
    arr = np.array(arr, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr.ravel()))
    if bad.size:
        entries = "entry" if bad.size == 1 else "entries"
        raise ValueError(f"{what} must be finite ({bad.size} non-finite {entries}, first at flat index {bad[0]})")
    arr.setflags(write=False)
    return arr


def _index_array(value: Any, what: str) -> np.ndarray:
    """A read-only int64 vector of integers (floats with integral values allowed)."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{what} must be a list of integers")
        _reject_bools(value, what)
        try:
            arr = np.array(value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a list of integers") from None
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iuf"):
        raise ValueError(f"{what} must be a list of integers")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{what} must hold integers")
    out = arr.astype(np.int64)
    out.setflags(write=False)
    return out


def _strictly_increasing(arr: np.ndarray, lo: int, hi: int, what: str, bound: str) -> None:
    if arr.size == 0:
        raise ValueError(f"{what} must not be empty")
    outside = np.flatnonzero((arr < lo) | (arr > hi))
    if outside.size:
        raise ValueError(f"{what} entry {int(arr[outside[0]])} is outside {lo}..{bound}")
    diff = np.diff(arr)
    rep = np.flatnonzero(diff == 0)
    if rep.size:
        raise ValueError(f"{what} entry {int(arr[rep[0]])} is repeated")
    dec = np.flatnonzero(diff < 0)
    if dec.size:
        i = dec[0]
        raise ValueError(f"{what} must be strictly increasing ({int(arr[i])} comes before {int(arr[i + 1])})")


def trajectory_bytes(n: int, nstates: int) -> int:
    """Bytes of a stored float64 trajectory of ``nstates`` states of ``n`` variables."""
    return 8 * int(n) * int(nstates)


def _check_n(value: Any) -> int:
    n = _int(value, "n")
    if n < MIN_N:
        raise ValueError(f"n must be >= {MIN_N} (the stencil reaches x_(i-2) and x_(i+1)), got {n}")
    return n


def check_budget(n: int, nstates: int, memory_budget: int | None) -> None:
    """ValueError, with the bytes needed, when the stored trajectory would exceed the budget."""
    budget = default_memory_budget() if memory_budget is None else _int(memory_budget, "memory_budget")
    need = trajectory_bytes(n, nstates)
    if need > budget:
        raise MemoryBudgetError(
            f"the stored trajectory ({nstates} states x {n} variables) would need {need} bytes, "
            f"over the memory budget of {budget} bytes (set memory_budget or {BUDGET_ENV})"
        )


@dataclass(frozen=True, eq=False)
class Lorenz96Problem:
    """A strong-constraint 4D-Var problem for Lorenz-96 with RK4 (docs/DESIGN.md).

    ``x0`` and ``F`` are the first guess of the control (for control ``state`` F is fixed).
    ``obs_steps`` (strictly increasing in 0..nsteps) and ``obs_indices`` (strictly increasing
    in 0..n-1, the same at every step) locate ``obs_values`` (one row per step, one column per
    index); ``background`` (length n) with ``sigma_b`` adds the background term, None omits it.
    ``seed`` records how a standard problem was drawn (provenance only).
    """

    n: int
    dt: float
    nsteps: int
    x0: np.ndarray
    F: float
    obs_steps: np.ndarray
    obs_indices: np.ndarray
    obs_values: np.ndarray
    sigma_o: float = 1.0
    background: np.ndarray | None = None
    sigma_b: float = 1.0
    control: str = "state"
    scheme: str = "rk4"
    seed: int | None = None
    memory_budget: int | None = None
    model: str = field(default=MODEL, init=False)
    _u0: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _choice(self.control, CONTROLS, "control")
        _choice(self.scheme, SCHEMES, "scheme")
        n = _check_n(self.n)
        set_(self, "n", n)
        dt = _finite_float(self.dt, "dt")
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt!r}")
        set_(self, "dt", dt)
        nsteps = _int(self.nsteps, "nsteps")
        if nsteps < 1:
            raise ValueError(f"nsteps must be >= 1, got {nsteps}")
        set_(self, "nsteps", nsteps)
        set_(self, "F", _finite_float(self.F, "params.F"))
        for name in ("sigma_o", "sigma_b"):
            v = _finite_float(getattr(self, name), "obs.sigma" if name == "sigma_o" else "background.sigma")
            if v <= 0:
                raise ValueError(f"{'obs.sigma' if name == 'sigma_o' else 'background.sigma'} must be > 0, got {v!r}")
            set_(self, name, v)

        steps = _index_array(self.obs_steps, "obs.steps")
        _strictly_increasing(steps, 0, nsteps, "obs.steps", f"nsteps={nsteps}")
        set_(self, "obs_steps", steps)
        check_budget(n, int(steps[-1]) + 1, self.memory_budget)
        idx = _index_array(self.obs_indices, "obs.indices")
        _strictly_increasing(idx, 0, n - 1, "obs.indices", f"n-1={n - 1}")
        set_(self, "obs_indices", idx)

        x0 = _real_array(self.x0, 1, "x0")
        if x0.shape != (n,):
            raise ValueError(f"x0 must have {n} entries (n), got {x0.shape[0]}")
        set_(self, "x0", x0)
        values = _real_array(self.obs_values, 2, "obs.values")
        if values.shape != (steps.size, idx.size):
            raise ValueError(
                f"obs.values must have {steps.size} rows (one per step) of {idx.size} numbers (one per index), "
                f"got shape {values.shape}"
            )
        set_(self, "obs_values", values)
        if self.background is not None:
            xb = _real_array(self.background, 1, "background.values")
            if xb.shape != (n,):
                raise ValueError(f"background.values must have {n} entries (n), got {xb.shape[0]}")
            set_(self, "background", xb)
        if self.seed is not None:
            set_(self, "seed", _int(self.seed, "seed"))

        u0 = np.concatenate([x0, [self.F]]) if self.control == "state+params" else x0.copy()
        u0.setflags(write=False)
        set_(self, "_u0", u0)

    # ---- derived quantities -------------------------------------------------------------
    @property
    def n_control(self) -> int:
        return self.n + 1 if self.control == "state+params" else self.n

    @property
    def u0(self) -> np.ndarray:
        """First-guess control vector: x_0, or (x_0, F)."""
        return self._u0.copy()

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the control entries' groups, as in ``grad --json``: x0, then F."""
        return ("x0", "F") if self.control == "state+params" else ("x0",)

    @property
    def last_obs_step(self) -> int:
        """J depends on x_0..x_{last_obs_step} only; later steps need not be integrated."""
        return int(self.obs_steps[-1])

    @property
    def has_background(self) -> bool:
        return self.background is not None

    @property
    def trajectory_bytes(self) -> int:
        """Bytes of the trajectory x_0..x_{last_obs_step} an adjoint stores."""
        return trajectory_bytes(self.n, self.last_obs_step + 1)

    def label(self) -> str:
        return f"lorenz96 n={self.n} nsteps={self.nsteps} control={self.control}"

    def check_control(self, u: Any) -> np.ndarray:
        """Return ``u`` as a float64 vector of the right length, or raise ValueError."""
        return control_vector(u, self.n_control, self.control)

    def split(self, u: Any) -> tuple[Any, Any]:
        """(x_0, F) for control vector u (real or complex; x_0 not copied)."""
        if len(u) == self.n + 1:
            return u[: self.n], u[self.n]
        return u, self.F

    def grad_dict(self, g: np.ndarray) -> dict[str, Any]:
        """The ``grad`` object of ``grad --json``: {"x0": [n numbers]} plus "F"."""
        g = np.asarray(g, dtype=np.float64)
        out: dict[str, Any] = {"x0": g[: self.n].tolist()}
        if self.control == "state+params":
            out["F"] = float(g[self.n])
        return out

    def cost(self, u: Any) -> Any:
        """J(u) by the Python equations (complex u allowed: the complex-step reference)."""
        from .lorenz96_equations import cost

        return cost(self, u)

    def with_(self, **changes: Any) -> Lorenz96Problem:
        """A copy with some fields changed (validated again)."""
        fields: dict[str, Any] = dict(
            n=self.n, dt=self.dt, nsteps=self.nsteps, x0=self.x0, F=self.F, obs_steps=self.obs_steps,
            obs_indices=self.obs_indices, obs_values=self.obs_values, sigma_o=self.sigma_o,
            background=self.background, sigma_b=self.sigma_b, control=self.control, scheme=self.scheme,
            seed=self.seed, memory_budget=self.memory_budget,
        )
        fields.update(changes)
        return Lorenz96Problem(**fields)

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def standard(
        cls, n: int = 40, nsteps: int = 40, seed: int = 0, *, obs_every: int = STANDARD_OBS_EVERY,
        obs_stride: int = 2, background: bool = True, control: str = "state", F: float = STANDARD_F,
        dt: float = STANDARD_DT, sigma_o: float = 1.0, sigma_b: float = 1.0, spinup: int = STANDARD_SPINUP,
        memory_budget: int | None = None,
    ) -> Lorenz96Problem:
        """The DESIGN.md default: truth after a spin-up, noisy observations, background.

        Random draws from ``numpy.random.default_rng(seed)``, in this order: xi (n) for the
        spin-up start x_i = F + 0.01 xi_i; eps (steps x indices) for y = truth + sigma_o eps;
        eta (n) for xb = truth_0 + sigma_b eta.  Observations of every ``obs_stride``-th
        variable (0, 2, 4, ...) at steps obs_every, 2 obs_every, ... <= nsteps; first guess
        x_0 = xb (with or without the background term) and F as given.
        """
        from . import lorenz96_equations as eq

        n = _check_n(n)
        nsteps = _int(nsteps, "nsteps")
        obs_every = _int(obs_every, "obs_every")
        obs_stride = _int(obs_stride, "obs_stride")
        spinup = _int(spinup, "spinup")
        if obs_every < 1 or obs_every > nsteps:
            raise ValueError(f"obs_every must be in 1..nsteps={nsteps}, got {obs_every}")
        if obs_stride < 1:
            raise ValueError(f"obs_stride must be >= 1, got {obs_stride}")
        if spinup < 0:
            raise ValueError(f"spinup must be >= 0, got {spinup}")
        steps = np.arange(obs_every, nsteps + 1, obs_every)
        check_budget(n, int(steps[-1]) + 1, memory_budget)  # before anything of size n is allocated
        idx = np.arange(0, n, obs_stride)
        # validate the shape of the problem (n, budget, sigmas...) before integrating anything
        probe: dict[str, Any] = dict(
            n=n, dt=dt, nsteps=nsteps, F=F, obs_steps=steps, obs_indices=idx, sigma_o=sigma_o,
            sigma_b=sigma_b, control=control, seed=seed, memory_budget=memory_budget,
        )
        cls(x0=np.zeros(n), obs_values=np.zeros((steps.size, idx.size)), **probe)
        rng = np.random.default_rng(seed)
        x = F + 0.01 * rng.standard_normal(n)
        x = eq.integrate(x, F, dt, spinup)
        truth0 = x.copy()
        y = eq.observe(truth0, F, dt, steps, idx)
        y += sigma_o * rng.standard_normal(y.shape)
        xb = truth0 + sigma_b * rng.standard_normal(n)
        return cls(x0=xb, obs_values=y, background=xb if background else None, **probe)

    # ---- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "steps": self.obs_steps.tolist(), "indices": self.obs_indices.tolist(),
            "values": self.obs_values.tolist(), "sigma": self.sigma_o,
        }
        return {
            "model": MODEL, "n": self.n, "dt": self.dt, "nsteps": self.nsteps, "scheme": self.scheme,
            "x0": self.x0.tolist(), "params": {"F": self.F}, "control": self.control,
            "background": None if self.background is None else {"values": self.background.tolist(), "sigma": self.sigma_b},
            "obs": obs,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any) -> Lorenz96Problem:
        if not isinstance(d, dict):
            raise ValueError("problem must be a JSON object")
        allowed = {"model", "n", "dt", "nsteps", "scheme", "x0", "params", "control", "background", "obs"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown problem key(s): {', '.join(map(str, unknown))}")
        missing = sorted({"n", "dt", "nsteps", "x0", "params", "obs"} - set(d))
        if missing:
            raise ValueError(f"problem is missing key(s): {', '.join(missing)}")
        params = d["params"]
        if not isinstance(params, dict) or set(params) != {"F"}:
            raise ValueError('params must be an object with exactly the key "F"')
        obs = d["obs"]
        if not isinstance(obs, dict) or not {"steps", "indices", "values"} <= set(obs):
            raise ValueError('obs must be an object with "steps", "indices" and "values"')
        unknown = sorted(set(obs) - {"steps", "indices", "values", "sigma"})
        if unknown:
            raise ValueError(f"unknown obs key(s): {', '.join(map(str, unknown))}")
        bg = d.get("background")
        if bg is not None:
            if not isinstance(bg, dict) or "values" not in bg or set(bg) - {"values", "sigma"}:
                raise ValueError('background must be null or an object {"values": [n numbers], "sigma": number}')
        control = d.get("control", "state")
        if not isinstance(control, str):
            raise ValueError(f"control must be a string, got {control!r}")
        scheme = d.get("scheme", "rk4")
        if not isinstance(scheme, str):
            raise ValueError(f"scheme must be a string, got {scheme!r}")
        return cls(
            n=d["n"], dt=d["dt"], nsteps=d["nsteps"], x0=d["x0"], F=params["F"], obs_steps=obs["steps"],
            obs_indices=obs["indices"], obs_values=obs["values"], sigma_o=obs.get("sigma", 1.0),
            background=None if bg is None else bg["values"], sigma_b=1.0 if bg is None else bg.get("sigma", 1.0),
            control=control, scheme=scheme,
        )

    @classmethod
    def from_json(cls, text: str) -> Lorenz96Problem:
        from . import problem_from_json

        problem = problem_from_json(text)
        if not isinstance(problem, cls):
            raise ValueError(f"not a {MODEL} problem (model {problem.model!r})")
        return problem

    @classmethod
    def load(cls, path: str | Path) -> Lorenz96Problem:
        text = read_problem_text(path)
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")
