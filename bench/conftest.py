"""The benchmark suite's hooks: cases from the backend registry, the context of every result.

Every registered backend (``adjointbench.backends.all_backends()``) that is not a reference
approximation becomes a case per device it reports (``devices()``) and dtype (``dtypes``):
nothing here names a backend, so a new backend module is benchmarked without edits here.
Options (defined in the root conftest.py): --ab-backend, --ab-device, --ab-dtype, --ab-quick.

Correctness gate: before anything is timed, the backend's gradient on the
benchmarked problem (the paper's, control ``state``; each --ab-problem in the gradient group;
each case in the scale group) is compared with the complex-step reference (directional at
large N); a fused driver must reproduce the Python-driven iterates.  A wrong gradient fails
the benchmark and it is never timed (see ``_bench.gated``).
"""

from __future__ import annotations

import pytest

from _bench import PROBE_BACKEND, Policy, cases, paper_selected, policy, probe_reference


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fused: benchmark only backends with a fused descent driver")
    config.addinivalue_line("markers", "problems: parametrise over every selected problem (--ab-problem), "
                                       "not only the paper's")
    config.addinivalue_line("markers", "scale: the scaling study (run alone with --ab-scale)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        fused_only = metafunc.definition.get_closest_marker("fused") is not None
        problems = metafunc.definition.get_closest_marker("problems") is not None
        metafunc.parametrize("case", cases(metafunc.config, fused_only, problems))
    if "scase" in metafunc.fixturenames:
        from _scale import scale_cases

        cfg = metafunc.config
        metafunc.parametrize("scase", scale_cases(cfg.getoption("ab_quick"), large=cfg.getoption("ab_large")),
                             ids=lambda c: c.id)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    # --ab-scale runs the scale group alone; without it the scale group is left out
    scale = config.getoption("ab_scale")
    keep = [i for i in items if (i.get_closest_marker("scale") is not None) == scale]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    if scale or paper_selected(config):
        return
    skip = pytest.mark.skip(reason="this group times the paper's problem; --ab-problem chose others")
    for item in items:
        if item.get_closest_marker("problems") is None:
            item.add_marker(skip)


@pytest.fixture
def pol(request) -> Policy:
    return policy(request.config)


@pytest.fixture(autouse=True)
def reference_probe(request, benchmark):
    """The reference backend's per-call time just before and after each benchmark (min of both)."""
    before = probe_reference()
    yield
    benchmark.extra_info.update({"probe_backend": PROBE_BACKEND, "probe_s": min(before, probe_reference())})


# ---- progress on a terminal (quiet in CI logs) ------------------------------------------------

class _Progress:
    """One line per benchmark on a terminal: how far, how long so far, a rough time left.

    The time left is the mean time per benchmark so far times the ones remaining: cases vary
    by orders of magnitude (eager JAX takes minutes), so it is a guide, not a promise.
    """

    def __init__(self, reporter, total: int) -> None:
        import time

        self.reporter, self.total, self.done, self.t0 = reporter, total, 0, time.perf_counter()

    @staticmethod
    def _clock(s: float) -> str:
        s = int(s)
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"

    def start(self, nodeid: str) -> None:
        import time

        elapsed = time.perf_counter() - self.t0
        left = f", ~{self._clock(elapsed / self.done * (self.total - self.done))} left" if self.done else ""
        self.done += 1
        name = nodeid.split("::")[-1]
        self.reporter.write_line(f"[{self.done}/{self.total} {self._clock(elapsed)}{left}] {name}", cyan=True)


def _progress_wanted(config: pytest.Config) -> bool:
    import os
    import sys

    return not os.environ.get("CI") and sys.stdout.isatty() and config.getoption("verbose") <= 0


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _progress_wanted(session.config):
        session.config._ab_progress = _Progress(reporter, len(session.items))


def pytest_runtest_logstart(nodeid: str, location) -> None:
    progress = getattr(_CONFIG[0], "_ab_progress", None) if _CONFIG else None
    if progress is not None:
        progress.start(nodeid)


_CONFIG: list = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG[:] = [session.config]
