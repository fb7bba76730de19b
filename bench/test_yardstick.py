"""The plain-C yardstick (``adjointbench.c_reference``, gcc -O3): not a backend, a floor.

The C program times itself (min over batches, no Python in the loop), so its rows report the
C program's own numbers (``extra_info["self_timed_s"]``, which the table uses); the time
pytest-benchmark shows for these two tests is the whole subprocess, build excluded.  Its
gradient is checked against complex step and its descent against the Python loop first.
"""

from __future__ import annotations

import numpy as np
import pytest

from adjointbench import report, verify
from adjointbench.backends import backend, python_descent
from adjointbench.workload import TBL3_ITERATIONS, TBL3_STEP

from _bench import PROBLEM


def _run(benchmark, config) -> dict:
    if config.getoption("ab_backend") or not {"cpu"} >= set(config.getoption("ab_device")) \
            or not {"float64"} >= set(config.getoption("ab_dtype")):
        pytest.skip("the C yardstick (cpu, float64) runs only without a --ab-backend selection")
    quick = config.getoption("ab_quick")
    c_reference = pytest.importorskip("adjointbench.c_reference")
    ok, reason = c_reference.available()
    if not ok:
        pytest.skip(f"C yardstick unavailable: {reason}")
    c_reference.build()  # compile outside the timed call
    m = benchmark.pedantic(c_reference.measure, kwargs={"repeats": 50 if quick else 200}, rounds=1)
    _gate(m)
    return m


def _gate(m: dict) -> None:
    J_ref, g_ref = verify.reference(PROBLEM)
    err = verify.relative_error(m["grad"], g_ref)
    ref = python_descent(backend("numpy").prepare(PROBLEM), PROBLEM.u0, TBL3_ITERATIONS, TBL3_STEP)
    err_d = float(np.max(np.abs(m["descent_costs"] - ref.costs) / np.abs(ref.costs)))
    if not (err <= verify.TOLERANCE and err_d <= verify.TOLERANCE):
        pytest.fail(f"C yardstick differs from complex step / the Python loop ({err:.3g}, {err_d:.3g})", pytrace=False)


def _record(benchmark, m: dict, group: str, driver: str, seconds: float) -> None:
    hw = report.machine_context_cached()
    benchmark.extra_info.update({
        "group": group, "backend": "C gcc -O3", "kind": "yardstick (plain C, timed in C)", "device": "cpu",
        "dtype": "float64", "driver": driver, "hardware": hw["cpu_label"], "iterations": 1 if group == "gradient"
        else TBL3_ITERATIONS, "self_timed_s": seconds, "compiler": m.get("compiler", ""), "flags": m.get("flags", ""),
        "statistic": "min",
    })


@pytest.mark.benchmark(group="gradient")
def test_yardstick_gradient(benchmark, request):
    m = _run(benchmark, request.config)
    _record(benchmark, m, "gradient", "fused", m["call_s"])


@pytest.mark.benchmark(group="tbl3")
def test_yardstick_tbl3(benchmark, request):
    m = _run(benchmark, request.config)
    _record(benchmark, m, "tbl3", "fused", m["workload_s"])
