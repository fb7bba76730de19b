"""Group ``compile``: cold start, the time from nothing compiled to the first gradient.

Each round starts a fresh Python process (``_coldstart.py``) with every JIT cache pointed at
an empty folder, imports the backend's libraries there (not timed), then times ``prepare()``
plus the first call, as seen from this process (so a backend that compiles lazily on its
first call is measured too).  The worker's result is checked against complex step, so a cold
prepare that computes a wrong gradient fails like any other benchmark.  The backend's own
``compile_s`` account and the split prepare/first-call times are kept in extra_info.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from adjointbench import verify
from adjointbench.backends import python_descent
from adjointbench.workload import TBL3_ITERATIONS, TBL3_STEP

from _bench import GATE_TOLERANCE, SLOW_PREPARE_S, env_for_cold_start, gated, record

WORKER = Path(__file__).with_name("_coldstart.py")
READY_TIMEOUT_S = 300


class Worker:
    def __init__(self, spec: dict) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="adjointbench-cold-")
        self.err = open(os.path.join(self.tmp.name, "stderr"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.err, text=True, env=env_for_cold_start(self.tmp.name), cwd=self.tmp.name,
        )
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.fail("did not start")
        self.result: dict | None = None

    def fail(self, what: str) -> None:
        self.proc.kill()
        self.proc.wait()
        self.err.seek(0)
        tail = " ".join(self.err.read().split()[-60:])
        self.close()
        pytest.fail(f"cold-start worker {what}: {tail}", pytrace=False)

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        self.result = json.loads(line) if line.strip() else None

    def close(self) -> None:
        self.err.close()
        self.tmp.cleanup()

    def finish(self) -> dict:
        self.proc.stdin.close()
        if self.proc.wait(timeout=60) != 0 or self.result is None:
            self.fail("failed")
        self.close()
        return self.result


def _check(result: dict, g, driver: str) -> float:
    tol = GATE_TOLERANCE.get(g.case.dtype, 1e-3)
    if driver == "fused":
        costs = np.asarray(result["costs"])
        k = min(TBL3_ITERATIONS, max(3, int(2.0 // g.call_s)))
        ref = python_descent(g.vg, g.problem.u0, k, TBL3_STEP).costs
        err = float(np.max(np.abs(costs[:k] - ref) / np.abs(ref)))
    else:
        J_ref, g_ref = verify.reference(g.problem)
        err = max(verify.relative_error(np.asarray(result["grad"]), g_ref), abs(result["J"] - J_ref) / abs(J_ref))
    if not err <= tol:
        pytest.fail(f"{g.case.id}: cold-start {driver} result differs from the reference ({err:.3g} > {tol:g})",
                    pytrace=False)
    return err


def _bench(benchmark, case, pol, driver: str) -> None:
    g = gated(case)
    spec = {"backend": case.backend, "device": case.device, "dtype": case.dtype, "driver": driver}
    results: list[dict] = []

    def setup():
        return (Worker(spec),), {}

    def teardown(w: Worker) -> None:
        results.append(w.finish())

    record(benchmark, g, "compile", driver, iterations=1)
    # a slow cold start (long compile, or a seconds-long first call) gets one round
    rounds = pol.compile_rounds if g.prepare_s < SLOW_PREPARE_S and g.call_s < 1.0 else 1
    benchmark.pedantic(Worker.go, setup=setup, teardown=teardown, rounds=rounds)
    for r in results:
        _check(r, g, driver)
    benchmark.extra_info.update({
        "prepare_s": [r["prepare_s"] for r in results],
        "first_call_s": [r["first_call_s"] for r in results],
        "backend_compile_s_cold": [r["compile_s"] for r in results],
    })


@pytest.mark.benchmark(group="compile")
def test_compile(benchmark, case, pol):
    _bench(benchmark, case, pol, "python")


@pytest.mark.fused
@pytest.mark.benchmark(group="compile")
def test_compile_fused(benchmark, case, pol, request):
    if request.config.getoption("ab_quick"):
        pytest.skip("quick run: the fused driver's cold start is measured in full runs only")
    _bench(benchmark, case, pol, "fused")
