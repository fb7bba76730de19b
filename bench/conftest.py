"""The benchmark suite's hooks: cases from the backend registry, the context of every result.

Every registered backend (``adjointbench.backends.all_backends()``) that is not a reference
approximation becomes a case per device it reports (``devices()``) and dtype (``dtypes``):
nothing here names a backend, so a new backend module is benchmarked without edits here.
Options (defined in the root conftest.py): --ab-backend, --ab-device, --ab-dtype, --ab-quick.

Correctness gate (issue 6, item 2): before anything is timed, the backend's gradient on the
benchmarked problem (the paper's, control ``state``) is compared with the complex-step
reference; a fused driver must reproduce the Python-driven iterates.  A wrong gradient fails
the benchmark and it is never timed (see ``_bench.gated``).
"""

from __future__ import annotations

import pytest

from _bench import PROBE_BACKEND, Policy, cases, paper_selected, policy, probe_reference, problem_keys
from adjointbench import report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fused: benchmark only backends with a fused descent driver")
    config.addinivalue_line("markers", "problems: parametrise over every selected problem (--ab-problem), "
                                       "not only the paper's")
    config.addinivalue_line("markers", "paper: times the paper's problem only (skipped when --ab-problem leaves it out)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        fused_only = metafunc.definition.get_closest_marker("fused") is not None
        problems = metafunc.definition.get_closest_marker("problems") is not None
        metafunc.parametrize("case", cases(metafunc.config, fused_only, problems))


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if paper_selected(config):
        return
    skip = pytest.mark.skip(reason="this group times the paper's problem; --ab-problem chose others")
    for item in items:
        if item.get_closest_marker("problems") is None:
            item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """CPU, cores/threads, GPU, library versions, compiler, and how this run measured."""
    ctx = dict(report.machine_context_cached())
    quick = config.getoption("ab_quick")
    ctx["run"] = {
        "mode": "quick" if quick else "full",
        "statistic": "min",
        "backends": config.getoption("ab_backend") or "all available",
        "devices": config.getoption("ab_device") or "all visible",
        "dtypes": config.getoption("ab_dtype") or ("float64" if quick else "all supported"),
        "problems": problem_keys(config),
        "compile": "cold start: prepare() + first call in a fresh process per round, library import "
                   "excluded, JIT caches pointed at empty folders",
    }
    machine_info["adjointbench"] = ctx


@pytest.fixture
def pol(request) -> Policy:
    return policy(request.config)


@pytest.fixture(autouse=True)
def reference_probe(request, benchmark):
    """The reference backend's per-call time just before and after each benchmark (min of both)."""
    before = probe_reference()
    yield
    benchmark.extra_info.update({"probe_backend": PROBE_BACKEND, "probe_s": min(before, probe_reference())})
