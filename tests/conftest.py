import os
import zlib

import numpy as np
import pytest

import adjointbench as ab
from adjointbench.testing import random_problem

#: a fresh seed each run unless ADJOINTBENCH_SEED pins one; printed in the header to reproduce
SEED = int(os.environ.get("ADJOINTBENCH_SEED", np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    return f"adjointbench random problems: ADJOINTBENCH_SEED={SEED}"


@pytest.fixture
def rng(request):
    # one stream per test, derived from the session seed and the test's name
    return np.random.default_rng([SEED, zlib.crc32(request.node.nodeid.encode())])


def random_problems(rng, control, n=8, **kw):
    return [random_problem(rng, control, **kw) for _ in range(n)]


def backend_or_skip(name):
    """The backend, or skip the test with the reason it cannot run here."""
    b = ab.backend(name)
    ok, reason = b.available()
    if not ok:
        pytest.skip(f"{name} unavailable: {reason}")
    return b
