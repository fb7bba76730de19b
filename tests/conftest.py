import os
import zlib

import numpy as np
import pytest

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
