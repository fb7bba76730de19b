"""Helpers of the benchmark suite (see conftest.py): cases, the correctness gate, timing policy."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from adjointbench import report, verify
from adjointbench.backends import all_backends, python_descent
from adjointbench.backends.base import Backend
from adjointbench.jsonable import jsonable
from adjointbench.models import Lorenz96Problem, Problem, load_problem
from adjointbench.problem import Lorenz63Problem
from adjointbench.workload import TBL3_ITERATIONS, TBL3_STEP

#: the gate's tolerance per dtype: float64 is DESIGN.md's 1e-10; float32 has ~7 digits and
#: 180 Euler steps of a chaotic model amplify rounding, so 1e-3 relative (max-norm).
GATE_TOLERANCE = {"float64": verify.TOLERANCE, "float32": 1e-3}


@dataclass(frozen=True)
class Policy:
    """How long to spend per benchmark: seconds of timed rounds, and round bounds."""

    gradient_s: float
    gradient_min_rounds: int
    tbl3_s: float
    tbl3_min_rounds: int
    #: a Python-driven workload estimated above this is timed over its first k iterations only
    #: (in truncated_rounds rounds) and scaled by 101/k in the table; the second cap is for
    #: dtypes other than float64
    workload_cap_s: float
    workload_cap_other_dtype_s: float
    compile_rounds: int
    truncated_rounds: int = 1
    max_rounds: int = 2000
    #: the scale group: seconds of timed rounds per case, and the fewest rounds
    scale_s: float = 1.0
    scale_min_rounds: int = 5
    #: a round of a fast call repeats it until the round lasts this long (timer resolution)
    min_round_s: float = 2e-4


QUICK = Policy(gradient_s=0.25, gradient_min_rounds=3, tbl3_s=0.5, tbl3_min_rounds=3, workload_cap_s=1.5,
               workload_cap_other_dtype_s=1.5, compile_rounds=1, truncated_rounds=3, max_rounds=400,
               scale_s=0.2, scale_min_rounds=3)
#: full: JAX without JIT takes 2.5-6 s per call here (quiet vs. shared machine), so its whole
#: workload alone would take 4-10 minutes; capping it at 2 minutes (scaled, and said so) keeps
#: the full run within 15 minutes.  A cold start over SLOW_PREPARE_S in-process gets one round.
FULL = Policy(gradient_s=1.5, gradient_min_rounds=5, tbl3_s=3.0, tbl3_min_rounds=3, workload_cap_s=120.0,
              workload_cap_other_dtype_s=30.0, compile_rounds=3, scale_s=1.0, scale_min_rounds=5)
SLOW_PREPARE_S = 10.0


@dataclass(frozen=True)
class Case:
    backend: str
    device: str
    dtype: str
    #: which problem (``problem_for``): "paper" is the paper's Lorenz-63 (Tbl. 3)
    problem: str = "paper"

    @property
    def id(self) -> str:
        base = f"{self.backend}-{self.device}-{self.dtype}"
        return base if self.problem == "paper" else f"{base}-{problem_slug(self.problem)}"


# ---- problems: the paper's (Tbl. 3), Lorenz-96, or the user's -------------------------------

from adjointbench.report.constants import BENCH_DEFAULT_PROBLEMS as DEFAULT_PROBLEMS  # noqa: E402 - beside its use

_PROBLEMS: dict[str, Problem] = {}


def problem_slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "=." else "-" for c in key).strip("-")


def problem_for(key: str) -> Problem:
    """The problem of a spec: ``paper``, ``lorenz96[:n=N,nsteps=K,...]``, or a problem file."""
    if key not in _PROBLEMS:
        if key == "paper":
            _PROBLEMS[key] = Lorenz63Problem.paper(control="state")
        elif key == "lorenz96" or key.startswith("lorenz96:"):
            opts: dict[str, Any] = {}
            for item in filter(None, key.partition(":")[2].split(",")):
                name, _, value = item.partition("=")
                if name not in ("n", "nsteps", "seed", "obs_every"):
                    raise pytest.UsageError(f"--ab-problem {key!r}: unknown option {name!r} (n, nsteps, seed, obs_every)")
                try:
                    opts[name] = int(value)
                except ValueError:
                    raise pytest.UsageError(f"--ab-problem {key!r}: {name} must be an integer") from None
            try:
                _PROBLEMS[key] = Lorenz96Problem.standard(**opts)
            except ValueError as e:
                raise pytest.UsageError(f"--ab-problem {key!r}: {e}") from None
        else:
            try:
                _PROBLEMS[key] = load_problem(key)
            except ValueError as e:
                raise pytest.UsageError(f"--ab-problem: {e}") from None
    return _PROBLEMS[key]


def problem_keys(config: pytest.Config) -> list[str]:
    return list(config.getoption("ab_problem")) or list(DEFAULT_PROBLEMS)


def paper_selected(config: pytest.Config) -> bool:
    """Whether this run times the paper's problem (Tbl. 3, compile, yardstick groups)."""
    return "paper" in problem_keys(config)


def problem_info(key: str) -> dict[str, Any]:
    """What a result records about its problem: key, model, label, size, digest of its file."""
    import hashlib

    p = problem_for(key)
    return {
        "problem": key, "model": p.model, "problem_label": p.label(), "n_control": p.n_control,
        "problem_n": getattr(p, "n", 3), "problem_nsteps": p.nsteps,
        "problem_digest": hashlib.sha256(p.to_json().encode()).hexdigest()[:12],
    }


def policy(config: pytest.Config) -> Policy:
    return QUICK if config.getoption("ab_quick") else FULL


def cases(config: pytest.Config, fused_only: bool = False, problems: bool = False) -> list[Any]:
    """pytest params for every timed backend x device x dtype (x problem when ``problems``),
    unavailable ones as skips.  Without ``problems`` the case is the paper's problem."""
    want_b = set(config.getoption("ab_backend"))
    # one device vocabulary (cpu, gpu, tpu); cuda is torch's word for gpu, kept as an alias
    want_dev = {"gpu" if d == "cuda" else d for d in config.getoption("ab_device")}
    want_dt = set(config.getoption("ab_dtype")) or ({"float64"} if config.getoption("ab_quick") else None)
    known = {b.name for b in all_backends()}
    unknown = want_b - known
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    keys = problem_keys(config) if problems else ["paper"]
    params = []
    for b in all_backends():
        if b.reference or (want_b and b.name not in want_b):
            continue  # complex step / fd are references, not adjoints: never timed
        if fused_only and not b.fused:
            continue
        ok, reason = b.available()
        if not ok:
            params.append(pytest.param(Case(b.name, "cpu", "float64"), id=f"{b.name}-unavailable",
                                       marks=pytest.mark.skip(reason=f"{b.name}: {reason}")))
            continue
        for key in keys:
            model = problem_for(key).model
            ok, reason = b.supports(model)
            if not ok:
                case = Case(b.name, "cpu", "float64", key)
                params.append(pytest.param(case, id=f"{case.id}-unsupported", marks=pytest.mark.skip(reason=reason)))
                continue
            for device in b.devices():
                if want_dev and device not in want_dev:
                    continue
                for dtype in b.dtypes:
                    if want_dt is not None and dtype not in want_dt:
                        continue
                    case = Case(b.name, device, dtype, key)
                    params.append(pytest.param(case, id=case.id))
    return params


# ---- the gate and the prepared callables (shared by the groups) -------------------------------

@dataclass
class Gated:
    """A backend prepared on the paper problem and checked against complex step."""

    case: Case
    backend: Backend
    problem: Problem
    vg: Any
    call_s: float  # rough per-call estimate, sizes the rounds
    prepare_s: float  # in-process prepare() time (warm libraries): sizes the compile rounds
    error: float
    info: dict[str, Any]


PROBLEM = Lorenz63Problem.paper(control="state")
_GATED: dict[Case, Gated | str] = {}
_FUSED: dict[Case, Callable | str] = {}


def estimate(fn: Callable[[], Any], budget_s: float = 1.0, max_n: int = 20) -> float:
    """Min wall time of fn over a few calls (after one warm-up), within about budget_s."""
    t0 = time.perf_counter()
    fn()
    best = time.perf_counter() - t0
    spent = best
    for _ in range(max_n):
        if spent > budget_s:
            break
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
    return max(best, 1e-9)


def gated(case: Case) -> Gated:
    """Prepare + verify once per case; a failure is remembered and fails every group."""
    if case not in _GATED:
        from adjointbench.backends import backend

        b = backend(case.backend)
        problem = problem_for(case.problem)
        try:
            t0 = time.perf_counter()
            vg = b.prepare(problem, device=case.device, dtype=case.dtype)
            prepare_s = time.perf_counter() - t0
            res = verify.check_vg(case.backend, vg, problem, tolerance=GATE_TOLERANCE.get(case.dtype, 1e-3))
        except Exception as e:  # noqa: BLE001 - a crashing backend fails its benchmarks, not the session
            _GATED[case] = f"{case.id}: prepare/verify raised {type(e).__name__}: {' '.join(str(e).split())}"
        else:
            if (vg.device, vg.dtype) != (case.device, case.dtype):
                _GATED[case] = (f"{case.id}: asked for {case.device}/{case.dtype}, the backend reports "
                                f"{vg.device}/{vg.dtype}; not timed")
            elif not res.passed:
                _GATED[case] = (f"{case.id}: gradient differs from complex step (grad error {res.grad_error:.3g}, "
                                f"J error {res.J_error:.3g}, tolerance {res.tolerance:g}); not timed")
            else:
                u0 = problem.u0
                _GATED[case] = Gated(
                    case, b, problem, vg, estimate(lambda: vg(u0)), prepare_s, max(res.grad_error, res.J_error),
                    {"backend_device": vg.device, "backend_dtype": vg.dtype, "backend_compile_s": vg.compile_s,
                     **{f"info_{k}": jsonable(v) for k, v in vg.info.items()}, **problem_info(case.problem)},
                )
    g = _GATED[case]
    if isinstance(g, str):
        pytest.fail(g, pytrace=False)
    return g


def fused_driver(g: Gated) -> Callable:
    """The backend's fused Tbl. 3 driver, checked against the Python loop through the gated vg."""
    case = g.case
    if case not in _FUSED:
        tol = GATE_TOLERANCE.get(case.dtype, 1e-3)
        try:
            run = g.backend.prepare_descent(g.problem, iterations=TBL3_ITERATIONS, step=TBL3_STEP,
                                            device=case.device, dtype=case.dtype)
            fused = run(g.problem.u0)
            # slow backends: compare the first k iterates only (the descent is deterministic)
            k = int(min(TBL3_ITERATIONS, max(3, 2.0 // g.call_s)))
            ref = python_descent(g.vg, g.problem.u0, k, TBL3_STEP)
            costs = np.asarray(fused.costs, dtype=np.float64)
            err = float(np.max(np.abs(costs[:k] - ref.costs) / np.maximum(np.abs(ref.costs), 1e-300)))
            if k == TBL3_ITERATIONS:
                err = max(err, verify.relative_error(np.asarray(fused.u), ref.u))
            if costs.shape != (TBL3_ITERATIONS,) or not err <= tol:
                _FUSED[case] = f"{case.id}: fused driver differs from the Python loop (rel. error {err:.3g} > {tol:g}); not timed"
            else:
                _FUSED[case] = run
        except Exception as e:  # noqa: BLE001
            _FUSED[case] = f"{case.id}: fused driver raised {type(e).__name__}: {' '.join(str(e).split())}"
    r = _FUSED[case]
    if isinstance(r, str):
        pytest.fail(r, pytrace=False)
    return r


def workload_cap(pol: Policy, case: Case) -> float:
    return pol.workload_cap_s if case.dtype == "float64" else pol.workload_cap_other_dtype_s


def rounds_for(est_s: float, target_s: float, min_rounds: int, pol: Policy) -> tuple[int, int]:
    """(rounds, calls per round) so that timed rounds last about target_s."""
    per_round = max(1, math.ceil(pol.min_round_s / est_s))
    rounds = int(min(pol.max_rounds, max(min_rounds, target_s // (est_s * per_round))))
    return rounds, per_round


def record(benchmark, g: Gated, group: str, driver: str, **extra: Any) -> None:
    record_case(benchmark, g.case, g.backend.kind, g.info, g.error, group, driver, **extra)


def record_case(benchmark, case: Case, kind: str, info: dict[str, Any], error: float, group: str, driver: str,
                **extra: Any) -> None:
    """The context every adjointbench benchmark carries in extra_info (report/store.py reads it)."""
    hw = report.machine_context_cached()
    device_label = hw["cpu_label"]
    if case.device != "cpu":  # an accelerator: the name the backend reports, else nvidia-smi's
        named = [info.get(f"info_{k}") for k in ("device_name", "device_kind", "gpu_name")]
        device_label = next((str(n) for n in named if n), hw["gpu"] if hw["gpu"] != "none" else case.device)
    benchmark.extra_info.update({
        "group": group, "backend": case.backend, "kind": kind, "device": case.device,
        "dtype": case.dtype, "driver": driver, "hardware": device_label, "gate_error": error,
        "gate_tolerance": GATE_TOLERANCE.get(case.dtype, 1e-3), "statistic": "min", **info, **extra,
    })


def env_for_cold_start(tmp: str) -> dict[str, str]:
    """Environment of a cold-start worker: every JIT cache pointed at an empty folder."""
    env = dict(os.environ)
    for k in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(k, None)
    env.update({
        "NUMBA_CACHE_DIR": os.path.join(tmp, "numba"),
        "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "inductor"),
        "TRITON_CACHE_DIR": os.path.join(tmp, "triton"),
        "CUDA_CACHE_PATH": os.path.join(tmp, "cuda"),
        "XDG_CACHE_HOME": os.path.join(tmp, "xdg"),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


#: the reference backend timed right beside every benchmark (``adjointbench regress`` divides
#: by it): a 2-core shared machine's load changes within a run, so a reference timed minutes
#: earlier, in another load, would not cancel it.  numpy is always available.
PROBE_BACKEND = "numpy"
PROBE_BUDGET_S = 0.04
_PROBE: list = []


def probe_reference() -> float:
    """Min time of one reference-backend gradient call, over about PROBE_BUDGET_S."""
    if not _PROBE:
        from adjointbench.backends import backend

        _PROBE.append(backend(PROBE_BACKEND).prepare(PROBLEM))
    vg = _PROBE[0]
    u0 = PROBLEM.u0
    return estimate(lambda: vg(u0), budget_s=PROBE_BUDGET_S, max_n=1000)
