"""Group ``scale``: time, memory and the gradient/forward ratio from 3 to 10^6+ variables.

``adjointbench bench --scale`` (``pytest bench --benchmark-only --ab-scale``) runs this group
alone; other runs leave it out.  Cases and the memory method: ``_scale.py``.  Per case and
backend x device x dtype:

- the gate: the gradient against complex step (directional beyond 65 controls), a batch's rows
  (first, middle, last) against single calls; a wrong number is never timed;
- ``vg`` (or ``vgb``) timed by pytest-benchmark (min over rounds), compile = ``prepare()`` in
  this process plus the first call;
- forward-only J (``prepare_cost``, no tape) timed beside it: ``cost_s``; for an ensemble the
  batched forward (``prepare_cost_batch``) and its idiom, ``cost_idiom``;
- the peak memory of holding and running the gradient (``_memory.py``).

The plain-C Lorenz-96 yardstick (``adjointbench.c_reference.measure96``) runs at every
single-member Lorenz-96 case: the floor of the compiled rows.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from adjointbench import verify
from adjointbench.backends import backend
from adjointbench.jsonable import jsonable
from adjointbench.models.lorenz96 import MemoryBudgetError

from _bench import GATE_TOLERANCE, Case, estimate, record_case, rounds_for
from _memory import Peak
from _scale import ESTIMATES, ScaleCase, controls_of, problem_of

#: fewer rounds for slow calls (seconds per call, from the estimate before timing): above the first,
#: at most 3 rounds; above the second, 1 round.  At N = 4e6 a call is 2-30 s on the 2-core VM and
#: every call there is a minute of the full run for a dozen backends (the AMD run of 7aa49da: that
#: case was half of its 58 min); the minimum of one such call moves by a few percent, not by the
#: factors the table compares
SLOW_CALL_S = (1.0, 4.0)


def _mode(request) -> str:
    return "quick" if request.config.getoption("ab_quick") else "full"


def _trajectory_bytes(problem, batch: int) -> int:
    """What a hand adjoint must store: the states x_0..x_last of every member."""
    n = getattr(problem, "n", 3)
    return 8 * n * (problem.last_obs_step + 1) * max(1, batch)


def _timing(fn, out: list[float]):
    """fn, appending the wall time of each call to out."""
    def timed(u):
        t0 = time.perf_counter()
        r = fn(u)
        out.append(time.perf_counter() - t0)
        return r
    return timed


def _gate_batch(name, fn, vg, problem, U, tol) -> float:
    J, G = fn(U)
    J, G = np.asarray(J), np.asarray(G)
    if J.shape != (U.shape[0],) or G.shape != U.shape:
        pytest.fail(f"{name}: batch returned shapes {J.shape}, {G.shape} for U of shape {U.shape}", pytrace=False)
    worst = verify.check_vg(name, vg, problem, U[0], tolerance=tol)
    err = max(worst.grad_error, worst.J_error)
    for b in sorted({0, U.shape[0] // 2, U.shape[0] - 1}):
        Jb, gb = vg(U[b])
        err = max(err, verify.relative_error(G[b], gb), abs(J[b] - Jb) / max(abs(Jb), 1e-300))
    return err


@pytest.mark.scale
@pytest.mark.benchmark(group="scale")
def test_scale(benchmark, case: Case, scase: ScaleCase, pol, request):
    b = backend(case.backend)
    ok, why = b.supports(scase.model)
    if not ok:
        pytest.skip(why)
    mode = _mode(request)
    who = (case.backend, case.device, case.dtype)
    ESTIMATES.check(who, scase, mode, b)
    problem = problem_of(scase)
    tol = GATE_TOLERANCE.get(case.dtype, 1e-3)
    opts = {"device": case.device, "dtype": case.dtype}
    # what the gate keeps resident (the directional reference, the batch) before the baseline
    if problem.n_control > verify.FULL_GRADIENT_MAX:
        verify.directional_reference(problem, problem.u0)
    single = None
    if scase.batch:
        controls_of(scase)
        try:  # the gate compares the batch's rows with single calls: prepared outside the measurement
            single = b.prepare(problem, **opts)
        except ValueError as e:
            pytest.fail(f"{case.id} {scase.id}: {' '.join(str(e).split())}", pytrace=False)
    gate_s: list[float] = []  # the single-call gate's call times
    peak = Peak(case.device, case.backend)
    peak.start()
    t0 = time.perf_counter()
    try:
        if scase.batch:
            fn = b.prepare_batch(problem, **opts)
            arg = controls_of(scase)
        else:
            fn = b.prepare(problem, **opts)
            arg = problem.u0
        prepare_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        fn(arg)  # the first call: a backend that compiles lazily compiles here
        first_call_s = time.perf_counter() - t1
        if scase.batch:
            err = _gate_batch(case.backend, fn, single, problem, arg, tol)
        else:
            res = verify.check_vg(case.backend, _timing(fn, gate_s), problem, tolerance=tol)
            err = max(res.grad_error, res.J_error)
    except MemoryBudgetError as e:  # the backend's own stated limit, refused before allocating: a cap, not a failure
        pytest.skip(f"{case.id} {scase.id}: {' '.join(str(e).split())}")
    except ValueError as e:
        pytest.fail(f"{case.id} {scase.id}: {' '.join(str(e).split())}", pytrace=False)
    if not err <= tol:
        pytest.fail(f"{case.id} {scase.id}: gradient differs from the reference ({err:.3g} > {tol:g}); not timed",
                    pytrace=False)
    # a slow call's estimate is the gate's own call (warm: after the first), not one call more
    if gate_s and gate_s[0] > SLOW_CALL_S[0]:  # empty for a batch (its gate is _gate_batch)
        call_s = gate_s[0]
    else:
        call_s = estimate(lambda: fn(arg), budget_s=0.5, max_n=5)
    rounds, per_round = rounds_for(call_s, pol.scale_s, pol.scale_min_rounds, pol)
    if call_s > SLOW_CALL_S[0]:
        rounds = min(rounds, 3)
    if call_s > SLOW_CALL_S[1]:
        rounds = 1
    if rounds == per_round == 1:  # one timed call: its memory is measured on it, not on one more
        peak.arm()
        benchmark.pedantic(fn, args=(arg,), rounds=1, iterations=1, warmup_rounds=0)
        mem = peak.read()
    else:
        benchmark.pedantic(fn, args=(arg,), rounds=rounds, iterations=per_round, warmup_rounds=0)
        mem = peak.call(fn, arg)

    # the cheap-gradient ratio: the same backend's forward-only J, timed beside the gradient; for an
    # ensemble the batched forward (``prepare_cost_batch``), whose idiom is recorded: the table divides
    # only like by like (a threaded gradient batch by a forward loop would flatter the ratio)
    cost_s, cost_idiom = float("nan"), None
    if b.has_cost(scase.model):
        try:
            cost = b.prepare_cost_batch(problem, **opts) if scase.batch else b.prepare_cost(problem, **opts)
            cost_idiom = getattr(cost, "idiom", None)  # a batch's BatchCost says how it ran
            J_cost, J_vg = np.asarray(cost(arg)), np.asarray(fn(arg)[0])
        except ValueError as e:
            pytest.fail(f"{case.id} {scase.id}: forward-only cost: {' '.join(str(e).split())}", pytrace=False)
        if J_cost.shape != J_vg.shape or not np.all(np.abs(J_cost - J_vg) <= tol * np.abs(J_vg)):
            pytest.fail(f"{case.id} {scase.id}: forward-only J differs from the gradient call's "
                        f"(worst {np.max(np.abs(J_cost - J_vg) / np.abs(J_vg)):.3g})", pytrace=False)
        cost_s = estimate(lambda: cost(arg), budget_s=0.3, max_n=10)

    info = {
        "problem": scase.key, "model": scase.model, "problem_label": scase.id, "n_control": problem.n_control,
        "axis": scase.axis, "n": scase.n, "nsteps": scase.nsteps, "batch": scase.batch,
        "cost_s": cost_s, "cost_idiom": cost_idiom, "prepare_s": prepare_s, "first_call_s": first_call_s,
        "trajectory_bytes": _trajectory_bytes(problem, scase.batch),
        **{k: mem.get(k) for k in ("peak_bytes", "rss_before", "peak_rss", "device_peak_bytes") if k in mem},
        **{f"info_{k}": jsonable(v) for k, v in fn.info.items()},
        "batch_idiom": getattr(fn, "idiom", None), "backend_compile_s": fn.compile_s,
    }
    record_case(benchmark, case, b.kind, info, err, "scale", "batch" if scase.batch else "python", iterations=1)
    ESTIMATES.update(who, scase, call_s, float(mem.get("peak_bytes") or float("nan")))


@pytest.mark.scale
@pytest.mark.benchmark(group="scale")
def test_scale_yardstick(benchmark, scase: ScaleCase, request):
    """The plain-C hand adjoint (gcc -O3), timed by itself, at the single-member Lorenz-96 cases."""
    if scase.model != "lorenz96" or scase.batch:
        pytest.skip("the C yardstick runs single Lorenz-96 problems")
    if request.config.getoption("ab_backend") or not {"cpu"} >= set(request.config.getoption("ab_device")) \
            or not {"float64"} >= set(request.config.getoption("ab_dtype")):
        pytest.skip("the C yardstick (cpu, float64) runs only without a --ab-backend selection")
    c_reference = pytest.importorskip("adjointbench.c_reference")
    ok, reason = c_reference.available()
    if not ok:
        pytest.skip(f"C yardstick unavailable: {reason}")
    problem = problem_of(scase)
    who = ("C gcc -O3", "cpu", "float64")
    ESTIMATES.check(who, scase, _mode(request))
    c_reference.build(source=c_reference.SOURCE_NAME96)
    base = c_reference.measure96(problem_of(ScaleCase("state", "lorenz96", 4, 4)), repeats=1, batch=1)["peak_rss_bytes"]
    # repeats inside the C program (min over them); 3 at N >= 10^6, where one costs seconds
    repeats = 3 if request.config.getoption("ab_quick") or scase.n >= 1_000_000 else 10
    m = benchmark.pedantic(c_reference.measure96, args=(problem,), kwargs={"repeats": repeats, "batch": 1},
                           rounds=1)
    res = verify.check_vg("C gcc -O3", lambda _u: (m["J"], m["grad"]), problem)
    if not res.passed:
        pytest.fail(f"C yardstick differs from complex step ({res.grad_error:.3g})", pytrace=False)
    case = Case("C gcc -O3", "cpu", "float64")
    record_case(benchmark, case, "yardstick (plain C, timed in C)", {
        "problem": scase.key, "model": scase.model, "problem_label": scase.id, "n_control": problem.n_control,
        "axis": scase.axis, "n": scase.n, "nsteps": scase.nsteps, "batch": 0, "cost_s": m["cost_s"],
        "trajectory_bytes": _trajectory_bytes(problem, 0), "peak_bytes": max(0, m["peak_rss_bytes"] - base),
        "yardstick": True, "self_timed_s": m["call_s"], "compiler": m.get("compiler", ""), "flags": m.get("flags", ""),
    }, max(res.grad_error, res.J_error), "scale", "fused", iterations=1)
    ESTIMATES.update(who, scase, m["call_s"], float(m["peak_rss_bytes"] - base))
