"""Root conftest: routes ``pytest --benchmark-only`` to bench/ and keeps bench/ out of test runs.

``python -m pytest tests`` (and plain ``pytest``: testpaths = tests) never collects bench/;
``pytest --benchmark-only`` from the root runs bench/ instead of tests/; ``pytest bench`` runs it
explicitly.  The benchmark's own options live here because this file is loaded whichever way
pytest is started, so they parse before bench/conftest.py is imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "bench"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("adjointbench", "adjointbench benchmark (bench/)")
    g.addoption("--ab-backend", action="append", default=[], metavar="NAME",
                help="benchmark only this backend (repeatable; default: every available one)")
    g.addoption("--ab-device", action="append", default=[], metavar="DEVICE",
                help="benchmark only on this device, e.g. cpu, gpu, cuda, tpu (repeatable)")
    g.addoption("--ab-dtype", action="append", default=[], metavar="DTYPE",
                help="benchmark only this dtype (repeatable; default: float64, plus float32 in full runs)")
    g.addoption("--ab-problem", action="append", default=[], metavar="SPEC",
                help="problem of the gradient group (repeatable): paper, lorenz96[:n=N,nsteps=K,seed=S,obs_every=K], "
                     "or a problem file (default: paper and lorenz96:n=40,nsteps=40; Tbl. 3 needs paper)")
    g.addoption("--ab-scale", action="store_true", default=False,
                help="run the scaling study (group scale) alone; without it the scale group is left out")
    g.addoption("--ab-large", action="store_true", default=False,
                help="with --ab-scale: the accelerator cases too (Lorenz-96 N = 4e7, ensembles of 65536 and 1e6)")
    g.addoption("--ab-quick", action="store_true", default=False,
                help="short run (CI, smoke checks): fewer rounds, long workloads truncated and scaled")


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """CPU, cores/threads, GPU, library versions, compiler, and how this run measured.

    Here, not in bench/conftest.py: pytest-benchmark asks for the machine info when the
    session starts, before bench/conftest.py is loaded when the suite is reached through
    ``pytest --benchmark-only`` from the root, and ``--benchmark-compare`` then warned that
    every stored run's machine info differed from the current one.
    """
    from adjointbench import report
    from adjointbench.report.constants import BENCH_DEFAULT_PROBLEMS

    ctx = dict(report.machine_context_cached())
    quick = config.getoption("ab_quick")
    ctx["run"] = {
        "mode": "quick" if quick else "full",
        "statistic": "min",
        "backends": config.getoption("ab_backend") or "all available",
        "devices": config.getoption("ab_device") or "all visible",
        "dtypes": config.getoption("ab_dtype") or ("float64" if quick else "all supported"),
        "problems": config.getoption("ab_problem") or list(BENCH_DEFAULT_PROBLEMS),
        "scale": bool(config.getoption("ab_scale")),
        "large": bool(config.getoption("ab_large")),
        "compile": "cold start: prepare() + first call in a fresh process per round, library import "
                   "excluded, JIT caches pointed at empty folders",
    }
    machine_info["adjointbench"] = ctx


def _benchmarking(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_only", default=False))


def pytest_configure(config: pytest.Config) -> None:
    # testpaths = ["tests"] holds no benchmark; with --benchmark-only and no paths given, the
    # benchmark suite is what was meant.
    if _benchmarking(config) and config.args_source == pytest.Config.ArgsSource.TESTPATHS and BENCH.is_dir():
        config.args[:] = [str(BENCH)]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `pytest .` or `pytest tests bench`-style globs must not start a 15-minute benchmark by
    # accident: bench/ is collected only when named, or with --benchmark-only.
    if collection_path.resolve() != BENCH or _benchmarking(config):
        return None
    named = [Path(a.split("::")[0]).resolve() for a in config.args]
    if any(p == BENCH or BENCH in p.parents for p in named):
        return None
    return True
