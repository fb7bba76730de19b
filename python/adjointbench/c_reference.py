"""The yardstick for compiled backends: a plain C hand adjoint compiled with ``gcc -O3``.

The compiled backends are measured against this program ("within 2x of a plain C hand adjoint",
"fused workload within 1.3x of that C loop"), so it is compiled and timed in the same process
as the backend it is compared with: timings on a shared machine are only comparable as
ratios taken side by side.  The C source (``kernels/c_reference/lorenz63_adjoint.c``) is
paper List 1 and List 3 with the conventions of ``hand_adjoint.py``; it times itself in C, so
its numbers contain no Python overhead at all.

    >>> from adjointbench import c_reference
    >>> m = c_reference.measure()          # the paper problem, control "state"
    >>> m["call_s"], m["workload_s"]       # seconds per gradient, per Tbl. 3 workload

``python -m adjointbench.c_reference`` prints the timings and checks the C gradient against
the complex-step reference; ``--backend numba --backend cython`` also times those backends
beside it (``compare``) and prints the ratios.

Lorenz-96 has its own yardstick, ``kernels/c_reference/lorenz96_adjoint.c`` (the RK4 hand adjoint
of ``models/lorenz96_equations.py`` with the Cython kernel's arithmetic):

    >>> m = c_reference.measure96(Lorenz96Problem.standard(n=40000))
    >>> m["call_s"], m["cost_s"]           # seconds per gradient, per forward-only cost

``python -m adjointbench.c_reference --model lorenz96 --n 40000`` prints them, with the check
against the complex-step reference (directional beyond 65 controls).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .models import Lorenz96Problem
from .native import kernel_source
from .problem import PARAM_NAMES, Lorenz63Problem
from .workload import TBL3_ITERATIONS, TBL3_STEP

SOURCE_NAME = "lorenz63_adjoint.c"
SOURCE_NAME96 = "lorenz96_adjoint.c"
DEFAULT_FLAGS: tuple[str, ...] = ("-O3",)


class CReferenceUnavailable(RuntimeError):
    """No C compiler or no C source here; the message says which."""


def source_path(source: str = SOURCE_NAME) -> Path:
    """The C source: shipped in the package, or in a source checkout (``native.kernel_source``)."""
    try:
        return kernel_source(f"c_reference/{source}")
    except FileNotFoundError as e:
        raise CReferenceUnavailable(str(e)) from None


def available(compiler: str = "gcc", source: str = SOURCE_NAME) -> tuple[bool, str]:
    if shutil.which(compiler) is None:
        return False, f"C compiler {compiler!r} not found on PATH"
    try:
        source_path(source)
    except CReferenceUnavailable as e:
        return False, str(e)
    return True, ""


@functools.cache
def build(flags: tuple[str, ...] = DEFAULT_FLAGS, compiler: str = "gcc", source: str = SOURCE_NAME) -> Path:
    """Compile a C reference once per (flags, compiler, source) per process; return the executable."""
    ok, reason = available(compiler, source)
    if not ok:
        raise CReferenceUnavailable(reason)
    exe = Path(tempfile.mkdtemp(prefix="adjointbench-cref-")) / Path(source).stem
    cmd = [compiler, *flags, "-o", str(exe), str(source_path(source)), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CReferenceUnavailable(f"{' '.join(cmd)} failed: {' '.join(proc.stderr.split())[:400]}")
    return exe


def _input(problem: Lorenz63Problem, u: np.ndarray, repeats: int, batch: int, iterations: int, step: float) -> str:
    full = np.concatenate([u[:3], u[3:] if problem.n_control == 6 else [problem.params[k] for k in PARAM_NAMES]])
    lines = [
        f"{problem.dt!r} {problem.n_control} {len(problem.obs_steps)} {repeats} {batch} {iterations} {step!r}",
        " ".join(repr(float(x)) for x in full),
    ]
    lines += [f"{int(s)} " + " ".join(repr(float(x)) for x in row)
              for s, row in zip(problem.obs_steps, problem.obs_values, strict=True)]
    return "\n".join(lines) + "\n"


def measure(
    problem: Lorenz63Problem | None = None, u: ArrayLike | None = None, *, repeats: int = 200,
    batch: int = 50, iterations: int = TBL3_ITERATIONS, step: float = TBL3_STEP,
    flags: Sequence[str] = DEFAULT_FLAGS, compiler: str = "gcc",
) -> dict[str, Any]:
    """Run the C reference on ``problem`` (default: the paper's, control ``state``) at u (default u0).

    Returns J, grad (float64 array), ``call_s`` (seconds per gradient: min over ``repeats``
    batches of ``batch`` back-to-back calls), ``workload_s`` (the fused steepest descent of
    ``iterations`` evaluations: min over ``repeats``), the descent's final control
    ``descent_u`` and cost history ``descent_costs``, and the compiler and flags used.
    Raises CReferenceUnavailable without a compiler, ValueError for bad arguments.
    """
    problem = Lorenz63Problem.paper() if problem is None else problem
    if not isinstance(problem, Lorenz63Problem):
        raise ValueError(f"measure() needs a Lorenz63Problem, got {type(problem).__name__}")
    x = problem.u0 if u is None else problem.check_control(u)
    for name, value in (("repeats", repeats), ("batch", batch), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not np.isfinite(step):
        raise ValueError(f"step must be finite, got {step!r}")
    flags = tuple(flags)
    exe = build(flags, compiler)
    proc = subprocess.run(
        [str(exe)], input=_input(problem, x, repeats, batch, iterations, float(step)), capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"C reference failed: {proc.stderr.strip()}")
    out = json.loads(proc.stdout)
    out["grad"] = np.array(out["grad"], dtype=np.float64)
    out["descent_u"] = np.array(out["descent_u"], dtype=np.float64)
    out["descent_costs"] = np.array(out["descent_costs"], dtype=np.float64)
    out["flags"] = " ".join(flags)
    return out


def _input96(problem: Lorenz96Problem, u: np.ndarray, repeats: int, batch: int) -> str:
    bg = problem.background
    header = (
        f"{problem.n} {problem.dt!r} {problem.n_control} {problem.F!r} {len(problem.obs_steps)} "
        f"{len(problem.obs_indices)} {0 if bg is None else 1} {problem.sigma_o!r} {problem.sigma_b!r} {repeats} {batch}"
    )
    floats = lambda xs: " ".join(map(repr, np.asarray(xs, dtype=np.float64).tolist()))  # noqa: E731 - exact round trip
    lines = [header, floats(u), " ".join(map(str, problem.obs_indices.tolist()))]
    lines += [f"{int(s)} {floats(row)}" for s, row in zip(problem.obs_steps, problem.obs_values, strict=True)]
    if bg is not None:
        lines.append(floats(bg))
    return "\n".join(lines) + "\n"


def measure96(
    problem: Lorenz96Problem | None = None, u: ArrayLike | None = None, *, repeats: int = 20, batch: int = 5,
    flags: Sequence[str] = DEFAULT_FLAGS, compiler: str = "gcc",
) -> dict[str, Any]:
    """Run the Lorenz-96 C reference on ``problem`` (default: ``Lorenz96Problem.standard()``) at u (default u0).

    Returns J and grad (float64 array) of the hand adjoint, ``J_cost`` (J by the forward-only
    sweep), ``call_s`` (seconds per gradient) and ``cost_s`` (seconds per forward-only cost
    evaluation), each the min over ``repeats`` batches of ``batch`` back-to-back calls, and the
    compiler and flags used.  Raises CReferenceUnavailable without a compiler, ValueError for
    bad arguments.
    """
    problem = Lorenz96Problem.standard() if problem is None else problem
    if not isinstance(problem, Lorenz96Problem):
        raise ValueError(f"measure96() needs a Lorenz96Problem, got {type(problem).__name__}")
    x = problem.u0 if u is None else problem.check_control(u)
    for name, value in (("repeats", repeats), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    flags = tuple(flags)
    exe = build(flags, compiler, SOURCE_NAME96)
    stdout, stderr, rc, maxrss = _run_measured(exe, _input96(problem, x, repeats, batch))
    if rc != 0:
        raise RuntimeError(f"C reference failed: {stderr.strip()}")
    out = json.loads(stdout)
    out["grad"] = np.array(out["grad"], dtype=np.float64)
    out["flags"] = " ".join(flags)
    out["peak_rss_bytes"] = maxrss
    return out


def _run_measured(exe: Path, text: str) -> tuple[str, str, int, int]:
    """(stdout, stderr, exit status, the child's peak RSS in bytes) of one run of ``exe``.

    The peak comes from the kernel's account of that child alone (``wait4``'s ru_maxrss), so
    the scaling study can set the C program's memory beside the backends'.
    """
    import os

    with tempfile.TemporaryFile("w+") as fin, tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        fin.write(text)
        fin.seek(0)
        proc = subprocess.Popen([str(exe)], stdin=fin, stdout=fout, stderr=ferr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        return fout.read(), ferr.read(), proc.returncode, int(usage.ru_maxrss) * 1024


def check96(problem: Lorenz96Problem, u: ArrayLike | None = None, **measure_kw: Any) -> dict[str, Any]:
    """The Lorenz-96 C gradient against the complex-step reference (``verify.check_vg``'s rules).

    Returns the measurement with ``grad_error``/``J_error`` (full complex step up to
    ``verify.FULL_GRADIENT_MAX`` controls, directional beyond) and ``passed``.
    """
    from . import verify

    x = problem.u0 if u is None else problem.check_control(u)
    m = measure96(problem, x, **{"repeats": 1, "batch": 1, **measure_kw})
    res = verify.check_vg("c_reference", lambda _u: (m["J"], m["grad"]), problem, x)
    m.update(grad_error=res.grad_error, J_error=res.J_error, passed=res.passed)
    return m


def _min_batch_s(fn: Callable[[], Any], repeats: int, batch: int) -> float:
    """Seconds per call: min over ``repeats`` of the mean over ``batch`` back-to-back calls."""
    return min(timeit.repeat(fn, number=batch, repeat=repeats)) / batch


def compare(
    names: Sequence[str], problem: Lorenz63Problem | None = None, *, rounds: int = 5, repeats: int = 100,
    batch: int = 50, flags: Sequence[str] = DEFAULT_FLAGS,
) -> dict[str, Any]:
    """Time backends against the C reference side by side, in this process.

    Per ``vg`` call (Python overhead included) and per Tbl. 3 workload (the backend's fused
    driver, or python_descent when it has none), each the min over ``rounds`` interleaved
    rounds of the C-style measure (min over ``repeats`` batches): on a shared machine only
    minima taken close together are comparable.  Returns {"c": {...}, "backends": {name: {...}}}
    with seconds and ratios to C.
    """
    from .backends import backend, python_descent

    problem = Lorenz63Problem.paper() if problem is None else problem
    runs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    for name in names:
        b = backend(name)
        vg = b.prepare(problem)
        u0 = problem.u0
        workload: Callable[[], Any]
        if b.fused:
            run = b.prepare_descent(problem)
            workload = functools.partial(run, u0)
        else:
            workload = functools.partial(python_descent, vg, u0)
        runs[name] = (functools.partial(vg, u0), workload)
        workload()  # warm caches once
    best: dict[str, list[float]] = {k: [np.inf, np.inf] for k in ["c", *runs]}
    c = {}
    for _ in range(rounds):
        c = measure(problem, repeats=repeats, batch=batch, flags=flags)
        best["c"] = [min(best["c"][0], c["call_s"]), min(best["c"][1], c["workload_s"])]
        for name, (call, workload) in runs.items():
            t_call = _min_batch_s(call, repeats, batch)
            t_work = _min_batch_s(workload, max(repeats // 10, 3), 1)
            best[name] = [min(best[name][0], t_call), min(best[name][1], t_work)]
    c_call, c_work = best["c"]
    out: dict[str, Any] = {
        "c": {"call_s": c_call, "workload_s": c_work, "compiler": c.get("compiler"), "flags": " ".join(flags)},
        "backends": {},
    }
    for name in runs:
        t_call, t_work = best[name]
        out["backends"][name] = {
            "call_s": t_call, "workload_s": t_work, "call_ratio": t_call / c_call, "workload_ratio": t_work / c_work,
            "fused": backend(name).fused,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from . import verify

    ap = argparse.ArgumentParser(prog="python -m adjointbench.c_reference", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lorenz63", choices=["lorenz63", "lorenz96"])
    ap.add_argument("--n", type=int, default=40, help="lorenz96: number of variables (standard problem)")
    ap.add_argument("--nsteps", type=int, default=40, help="lorenz96: window length in steps (standard problem)")
    ap.add_argument("--control", default="state", choices=["state", "state+params"])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--flags", default=" ".join(DEFAULT_FLAGS),
                    help="compiler flags, e.g. --flags='-O3 -march=native' (default: %(default)s)")
    ap.add_argument("--backend", action="append", default=[], metavar="NAME",
                    help="also time this backend against C, side by side in this process (repeatable)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --backend (min is kept)")
    args = ap.parse_args(argv)
    if args.model == "lorenz96":
        return _main96(args)
    problem = Lorenz63Problem.paper(args.control)
    try:
        m = measure(problem, repeats=args.repeats, flags=args.flags.split())
    except CReferenceUnavailable as e:
        print(f"C reference unavailable: {e}", file=sys.stderr)
        return 2
    J_ref, g_ref = verify.reference(problem)
    err = verify.relative_error(m["grad"], g_ref)
    print(f"C reference ({m['compiler']}, {m['flags']}), paper problem, control {problem.control}")
    print(f"J = {m['J']!r} (complex-step reference {J_ref!r})")
    for name, g in zip(problem.names, m["grad"].tolist(), strict=True):
        print(f"dJ/d{name:<6}= {g!r}")
    print(f"gradient vs complex step: relative error {err:.2e} ({'pass' if err <= verify.TOLERANCE else 'FAIL'})")
    print(f"per gradient:  {m['call_s'] * 1e6:.3f} us (min over {args.repeats} batches)")
    print(f"Tbl. 3 workload ({TBL3_ITERATIONS} evaluations): {m['workload_s'] * 1e6:.1f} us (min over {args.repeats})")
    if args.backend:
        res = compare(args.backend, problem, rounds=args.rounds, repeats=args.repeats, flags=args.flags.split())
        c = res["c"]
        print(f"\nside by side, min over {args.rounds} interleaved rounds (C: {c['call_s'] * 1e6:.3f} us/gradient, "
              f"{c['workload_s'] * 1e6:.1f} us/workload)")
        print(f"{'backend':<10} {'us/vg call':>11} {'x C':>6} {'us/workload':>12} {'x C':>6}  workload driver")
        for name, r in res["backends"].items():
            print(f"{name:<10} {r['call_s'] * 1e6:11.3f} {r['call_ratio']:6.2f} {r['workload_s'] * 1e6:12.1f} "
                  f"{r['workload_ratio']:6.2f}  {'fused' if r['fused'] else 'python loop'}")
    return 0 if err <= verify.TOLERANCE else 1


def _main96(args: argparse.Namespace) -> int:
    problem = Lorenz96Problem.standard(n=args.n, nsteps=args.nsteps, control=args.control)
    try:
        m = check96(problem, repeats=args.repeats, batch=1, flags=args.flags.split())
    except CReferenceUnavailable as e:
        print(f"C reference unavailable: {e}", file=sys.stderr)
        return 2
    print(f"C reference ({m['compiler']}, {m['flags']}), {problem.label()}")
    print(f"J = {m['J']!r} (forward-only: {m['J_cost']!r})")
    print(f"gradient vs complex step: relative error {m['grad_error']:.2e} ({'pass' if m['passed'] else 'FAIL'})")
    print(f"per gradient: {m['call_s'] * 1e3:.3f} ms, per forward-only cost: {m['cost_s'] * 1e3:.3f} ms "
          f"(min over {args.repeats})")
    return 0 if m["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
