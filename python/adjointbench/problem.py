"""The Lorenz (1963) 4D-Var problem: model set-up, observations, control, JSON format.

Paper §4.1 (after Huang & Yang 1996): forward Euler, dt = 0.01, 200 steps, truth
(sigma, r, beta) = (10, 32, 8/3) from (X, Y, Z)_0 = (1, 3, 5), error-free observations of
the full state at steps 60, 120, 180, J = 1/2 sum_obs |w_n - wo_n|^2.

Every field is validated when the problem is built; an invalid problem is a ValueError whose
message names the field, so the CLI can print it as one line.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .model import trajectory

MODELS = ("lorenz63",)
CONTROLS = ("state", "state+params")
STATE_NAMES = ("x0", "y0", "z0")
PARAM_NAMES = ("sigma", "r", "beta")

#: the paper's truth (§4.1, Tbl. 2 "truth" row)
PAPER_TRUTH_X0 = (1.0, 3.0, 5.0)
PAPER_TRUTH_PARAMS = {"sigma": 10.0, "r": 32.0, "beta": 8.0 / 3.0}
#: the paper's first guess (Tbl. 2 "first guess" row)
PAPER_FIRST_GUESS_X0 = (1.1, 3.3, 5.5)
PAPER_FIRST_GUESS_PARAMS = {"sigma": 11.0, "r": 30.0, "beta": 2.0}
PAPER_DT = 0.01
PAPER_NSTEPS = 200
PAPER_OBS_STEPS = (60, 120, 180)
#: the trajectory (nsteps+1 states) is stored for the adjoint sweep; bound its memory
MAX_NSTEPS = 10_000_000


def control_names(control: str) -> tuple[str, ...]:
    """Names of the control vector's entries, in order (DESIGN.md: x0, y0, z0, sigma, r, beta)."""
    if control == "state":
        return STATE_NAMES
    if control == "state+params":
        return STATE_NAMES + PARAM_NAMES
    raise ValueError(f"unknown control {control!r}; expected one of {', '.join(CONTROLS)}")


def control_vector(u: Any, n_control: int, control: str) -> np.ndarray:
    """``u`` as a C-contiguous float64 vector of length ``n_control``, or ValueError (any model)."""
    arr = np.asarray(u)
    if arr.shape != (n_control,):
        raise ValueError(f"control vector must have shape ({n_control},) for control {control!r}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"control vector must be real, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("control vector must be finite")
    return arr


def _choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
    return value


def _finite_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return v


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        # an integer-valued real such as 200.0 read from JSON; numbers.Real promises
        # __float__ but not __int__, so convert through the (already checked) float
        v = float(value)
        if math.isfinite(v) and v.is_integer():
            return int(v)
    raise ValueError(f"{what} must be an integer, got {value!r}")


def _reject_bools(value: Any, what: str) -> None:
    # np.array([True, 1.5], float) silently gives [1.0, 1.5]; JSON booleans are not numbers
    if isinstance(value, (list, tuple)):
        stack = [value]
        while stack:
            seq = stack.pop()
            for v in seq:
                if isinstance(v, bool):
                    raise ValueError(f"{what} must hold real numbers, found {v!r}")
                if isinstance(v, (list, tuple)):
                    stack.append(v)


def _finite_array(value: Any, shape: tuple[int, ...] | None, what: str) -> np.ndarray:
    """A read-only float64 array of real, finite entries (of ``shape`` if given), or ValueError.

    Booleans and numeric strings are refused, not converted (``np.array(["1.5"], float)`` would
    take the string; a problem file must hold numbers).
    """
    if not isinstance(value, np.ndarray):
        _reject_bools(value, what)
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an array of real numbers, got {value!r}") from None
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be an array of real numbers, got {value!r}")
    arr = np.array(raw, dtype=np.float64)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Lorenz63Problem:
    """A 4D-Var problem for the Euler-discretised Lorenz (1963) model.

    ``x0`` and ``params`` are the first guess of the control (for control ``state`` the
    parameters are fixed at ``params``).  ``obs_steps`` are strictly increasing time-step
    indices in 0..nsteps and ``obs_values`` the observed states there, shape (len(steps), 3).
    ``noise``/``seed`` record how the observations were perturbed (provenance only).
    """

    dt: float
    nsteps: int
    x0: np.ndarray
    params: dict[str, float]
    obs_steps: np.ndarray
    obs_values: np.ndarray
    control: str = "state"
    model: str = "lorenz63"
    noise: float = 0.0
    seed: int | None = None
    _u0: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _choice(self.model, MODELS, "model")
        _choice(self.control, CONTROLS, "control")
        dt = _finite_float(self.dt, "dt")
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt!r}")
        set_(self, "dt", dt)
        nsteps = _int(self.nsteps, "nsteps")
        if nsteps < 1:
            raise ValueError(f"nsteps must be >= 1, got {nsteps}")
        if nsteps > MAX_NSTEPS:
            raise ValueError(f"nsteps must be <= {MAX_NSTEPS} (the trajectory is kept in memory), got {nsteps}")
        set_(self, "nsteps", nsteps)
        set_(self, "x0", _finite_array(self.x0, (3,), "x0"))
        if not isinstance(self.params, dict):
            raise ValueError(f"params must be a mapping with keys {', '.join(PARAM_NAMES)}")
        if set(self.params) != set(PARAM_NAMES):
            raise ValueError(
                f"params must have exactly the keys {', '.join(PARAM_NAMES)}, got {', '.join(map(str, self.params)) or 'none'}"
            )
        set_(self, "params", {k: _finite_float(self.params[k], f"params.{k}") for k in PARAM_NAMES})

        raw_steps = self.obs_steps
        if isinstance(raw_steps, np.ndarray):
            raw_steps = raw_steps.tolist()
        if not isinstance(raw_steps, (list, tuple)):
            raise ValueError(f"obs.steps must be a list of integers, got {raw_steps!r}")
        steps = [_int(s, "obs.steps entry") for s in raw_steps]
        if not steps:
            raise ValueError("obs.steps must contain at least one observation step")
        for s in steps:
            if not 0 <= s <= nsteps:
                raise ValueError(f"observation step {s} is outside 0..nsteps={nsteps}")
        for a, b in itertools.pairwise(steps):
            if b == a:
                raise ValueError(f"observation step {a} is repeated")
            if b < a:
                raise ValueError(f"obs.steps must be sorted in increasing order ({a} comes before {b})")
        steps_arr = np.array(steps, dtype=np.int64)
        steps_arr.setflags(write=False)
        set_(self, "obs_steps", steps_arr)
        set_(self, "obs_values", _finite_array(self.obs_values, (len(steps), 3), "obs.values"))

        noise = _finite_float(self.noise, "noise")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        set_(self, "noise", noise)
        if self.seed is not None:
            set_(self, "seed", _int(self.seed, "seed"))

        u0 = np.concatenate([self.x0, [self.params[k] for k in PARAM_NAMES]])[: self.n_control]
        u0.setflags(write=False)
        set_(self, "_u0", u0)

    # ---- derived quantities -------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Names of the control vector entries."""
        return control_names(self.control)

    @property
    def n_control(self) -> int:
        return 3 if self.control == "state" else 6

    @property
    def u0(self) -> np.ndarray:
        """First-guess control vector: (x0, y0, z0) or (x0, y0, z0, sigma, r, beta)."""
        return self._u0.copy()

    @property
    def last_obs_step(self) -> int:
        """J depends on w_0..w_{last_obs_step} only; later steps need not be integrated."""
        return int(self.obs_steps[-1])

    def check_control(self, u: Any) -> np.ndarray:
        """Return ``u`` as a float64 vector of the right length, or raise ValueError."""
        return control_vector(u, self.n_control, self.control)

    def split(self, u: Any) -> tuple[Any, Any, Any, Any]:
        """(state, sigma, r, beta) for control vector u (real or complex, not copied)."""
        if len(u) == 6:
            return u[:3], u[3], u[4], u[5]
        return u[:3], self.params["sigma"], self.params["r"], self.params["beta"]

    def grad_dict(self, g: np.ndarray) -> dict[str, float]:
        """The ``grad`` object of ``grad --json``: one number per control name."""
        return dict(zip(self.names, map(float, np.asarray(g, dtype=np.float64)), strict=True))

    def cost(self, u: Any) -> Any:
        """J(u) by the Python model (complex u allowed: the complex-step reference)."""
        from .model import cost

        return cost(self, u)

    def label(self) -> str:
        return f"lorenz63 nsteps={self.nsteps} control={self.control}"

    def with_(self, **changes: Any) -> Lorenz63Problem:
        """A copy with some fields changed (validated again)."""
        fields: dict[str, Any] = dict(
            dt=self.dt, nsteps=self.nsteps, x0=self.x0, params=dict(self.params),
            obs_steps=self.obs_steps, obs_values=self.obs_values, control=self.control,
            model=self.model, noise=self.noise, seed=self.seed,
        )
        fields.update(changes)
        return Lorenz63Problem(**fields)

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def paper(
        cls, control: str = "state", noise: float = 0.0, seed: int | None = None, *, dt: float = PAPER_DT,
        nsteps: int = PAPER_NSTEPS, obs_steps: Any = PAPER_OBS_STEPS,
    ) -> Lorenz63Problem:
        """The paper's set-up (§4.1): truth from (1, 3, 5), observations at 60, 120, 180.

        First guess (1.1, 3.3, 5.5); for control ``state+params`` also (sigma, r, beta) =
        (11, 30, 2) as in Tbl. 2, otherwise the parameters are fixed at the truth.  ``dt``,
        ``nsteps`` and ``obs_steps`` vary the window (observations of the same truth run).
        """
        control_names(control)
        probe = cls(
            dt=dt, nsteps=nsteps, x0=np.array(PAPER_FIRST_GUESS_X0), params=dict(PAPER_TRUTH_PARAMS),
            obs_steps=obs_steps, obs_values=np.zeros((len(np.atleast_1d(obs_steps)), 3)), control=control,
        )  # every field validated before the truth is integrated
        sigma, r, beta = (PAPER_TRUTH_PARAMS[k] for k in PARAM_NAMES)
        truth = trajectory(np.array(PAPER_TRUTH_X0), sigma, r, beta, probe.dt, probe.last_obs_step)
        values = truth[probe.obs_steps]
        noise = _finite_float(noise, "noise")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if noise > 0:
            values = values + noise * np.random.default_rng(seed).standard_normal(values.shape)
        params = PAPER_FIRST_GUESS_PARAMS if control == "state+params" else PAPER_TRUTH_PARAMS
        return probe.with_(params=dict(params), obs_values=values, noise=noise, seed=seed if noise > 0 else None)

    # ---- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        obs: dict[str, Any] = {"steps": self.obs_steps.tolist(), "values": self.obs_values.tolist()}
        if self.noise > 0:
            obs["noise"] = {"sigma": self.noise, "seed": self.seed}
        return {
            "model": self.model, "dt": self.dt, "nsteps": self.nsteps, "x0": self.x0.tolist(),
            "params": dict(self.params), "control": self.control, "obs": obs,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any) -> Lorenz63Problem:
        if not isinstance(d, dict):
            raise ValueError("problem must be a JSON object")
        allowed = {"model", "dt", "nsteps", "x0", "params", "control", "obs"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown problem key(s): {', '.join(unknown)}")
        missing = sorted({"dt", "nsteps", "x0", "params", "obs"} - set(d))
        if missing:
            raise ValueError(f"problem is missing key(s): {', '.join(missing)}")
        obs = d["obs"]
        if not isinstance(obs, dict) or not {"steps", "values"} <= set(obs):
            raise ValueError('obs must be an object with "steps" and "values"')
        unknown = sorted(set(obs) - {"steps", "values", "noise"})
        if unknown:
            raise ValueError(f"unknown obs key(s): {', '.join(unknown)}")
        noise = obs.get("noise") or {}
        if not isinstance(noise, dict) or set(noise) - {"sigma", "seed"}:
            raise ValueError('obs.noise must be an object {"sigma": ..., "seed": ...}')
        return cls(
            dt=d["dt"], nsteps=d["nsteps"], x0=d["x0"], params=d["params"],
            obs_steps=obs["steps"], obs_values=obs["values"], control=d.get("control", "state"),
            model=d.get("model", "lorenz63"), noise=noise.get("sigma", 0.0), seed=noise.get("seed"),
        )

    @classmethod
    def from_json(cls, text: str) -> Lorenz63Problem:
        from .models import problem_from_json

        problem = problem_from_json(text)
        if not isinstance(problem, cls):
            raise ValueError(f"not a lorenz63 problem (model {problem.model!r})")
        return problem

    @classmethod
    def load(cls, path: str | Path) -> Lorenz63Problem:
        text = read_problem_text(path)
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1) + "\n")


def read_problem_text(path: str | Path) -> str:
    """The text of a problem file, or ValueError naming the file and why it cannot be read."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read problem file {str(path)!r}: {e}") from None
