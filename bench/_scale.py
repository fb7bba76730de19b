"""The scaling study (group ``scale``): cases, problems, caps, and the memory worker.

Cases (``ScaleCase``), three axes:
- ``state``: Lorenz-96 at N = 40 ... 4·10^5 (4·10^6 in full runs), 40 RK4 steps;
- ``window``: N = 4000 at 40, 400, 4000 steps over the same 2-unit window (``problem_of``);
- ``ensemble``: ``prepare_batch`` with B = 1, 64, 4096 members of Lorenz-96 at N = 40, and B = 10^4
  members of the Lorenz-63 paper problem (10^3 in quick runs);
- with ``--ab-large`` (an accelerator's run, ``bench/gpu.sh scale``): N = 4·10^7, ensembles of
  65536 and 10^6 Lorenz-96 members and 10^6 Lorenz-63 ones;
- ``shard`` (full runs): ``jax-sharded`` alone at N = 10^4, 2·10^4, 4·10^4, 40 steps, on however many
  devices the process has (``adjointbench bench --cpu-devices K`` splits the CPU into K): runs on
  1, 2 and 4 devices give strong scaling (fixed N) and weak scaling (N / devices = 10^4).

Each case is timed in the pytest process (same gate as every group: the gradient against
complex step, directional at large N; batch rows against single calls); its peak memory is
measured there too (``_memory.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from adjointbench.models import Lorenz96Problem, Problem
from adjointbench.problem import Lorenz63Problem


@dataclass(frozen=True)
class ScaleCase:
    axis: str  # "state", "window", "ensemble" or "shard"
    model: str
    n: int  # variables per member (3 for Lorenz-63)
    nsteps: int
    batch: int = 0  # 0: a single vg call; B >= 1: prepare_batch with B members

    @property
    def key(self) -> str:
        """The ``problem`` column of the results: unique per case."""
        base = f"scale:{self.axis}:{self.model}:n={self.n},nsteps={self.nsteps}"
        return base + (f",B={self.batch}" if self.batch else "")

    @property
    def id(self) -> str:
        b = f"-B{self.batch}" if self.batch else ""
        return f"{self.axis}-{self.model}-n{self.n}-k{self.nsteps}{b}"

    @property
    def work(self) -> float:
        """Variables x steps x members: what the cost of one call grows with."""
        return float(self.n * self.nsteps * max(1, self.batch))


def scale_cases(quick: bool, large: bool = False) -> list[ScaleCase]:
    if quick:  # CI's cases: both ends of the state axis, the longer window, one ensemble size
        state = [40, 40_000]
        window = [400]
        ensemble = [64]
    else:
        state = [40, 400, 4000, 40_000, 400_000, 4_000_000]
        window = [40, 400, 4000]
        ensemble = [1, 64, 4096]
    cases = [ScaleCase("state", "lorenz96", n, 40) for n in state]
    cases += [ScaleCase("window", "lorenz96", 4000, k) for k in window if k != 40]  # k = 40 is a state case
    cases += [ScaleCase("ensemble", "lorenz96", 40, 40, b) for b in ensemble]
    # quick: 10^3 paper problems, not 10^4 (measured on the 2-core VM: ADOL-C's 10^4 took 64 s of a
    # 6-minute quick run, pytensor's 25 s; the full run keeps the 10^4)
    cases.append(ScaleCase("ensemble", "lorenz63", 3, 200, 1_000 if quick else 10_000))
    if not quick:
        cases += [ScaleCase("shard", "lorenz96", n, 40) for n in SHARD_N]
    if large:  # an accelerator's sizes (bench/gpu.sh scale); the caps skip what a CPU cannot hold
        cases.insert(len(state), ScaleCase("state", "lorenz96", 40_000_000, 40))
        cases += [ScaleCase("ensemble", "lorenz96", 40, 40, b) for b in LARGE_B]
        cases.append(ScaleCase("ensemble", "lorenz63", 3, 200, 1_000_000))
    return cases


#: ensemble sizes of the accelerator cases (``--ab-large``), Lorenz-96 at N = 40
LARGE_B = (65_536, 1_000_000)


#: the shard axis: N = 10^4 per device on 1, 2, 4 devices (weak) and each N on every count (strong)
SHARD_N = (10_000, 20_000, 40_000)
#: the backends the shard axis times (the others' device count is one whatever the flag)
SHARD_BACKENDS = ("jax-sharded",)


#: the standard window, 40 steps of 0.05 = 2 time units (about 10 "days" at 5 days per unit)
WINDOW_T = 40 * 0.05


@cache
def problem_of(case: ScaleCase) -> Problem:
    """The case's problem.  The window axis refines the same 2-unit window (dt = 2 / nsteps,
    observations at the same times): a window of 4000 steps of 0.05 would be 200 time units,
    over which the chaotic gradient grows like exp(1.7 T) and overflows float64, and no gate
    could check it.  What grows along that axis is what the axis is about: the tape."""
    if case.model == "lorenz63":
        return Lorenz63Problem.paper(control="state")
    if case.axis == "window":
        # the spin-up covers the standard 25 time units at the finer step
        return Lorenz96Problem.standard(n=case.n, nsteps=case.nsteps, dt=WINDOW_T / case.nsteps,
                                        obs_every=max(1, case.nsteps // 10), spinup=500 * case.nsteps // 40)
    return Lorenz96Problem.standard(n=case.n, nsteps=case.nsteps)


@cache
def controls_of(case: ScaleCase) -> np.ndarray:
    """B distinct controls around the first guess (seeded: every backend gets the same)."""
    p = problem_of(case)
    rng = np.random.default_rng(case.batch)
    scale = 0.01 if case.model == "lorenz63" else 0.1
    return p.u0 + scale * rng.standard_normal((case.batch, p.n_control))


#: seconds one call may take before a case is skipped (with the estimate as the reason)
CALL_CAP_S = {"quick": 2.0, "full": 30.0}
#: backends whose calls cost seconds whatever N (eager JAX): the small cases only
SMALL_ONLY = {"jax-nojit": 40 * 40 * 64}


def available_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


class Estimates:
    """Per backend x device x dtype: the last measured case, to predict the next one's cost."""

    def __init__(self) -> None:
        self.last: dict[tuple, tuple[ScaleCase, float, float]] = {}

    def check(self, who: tuple, case: ScaleCase, mode: str, backend=None) -> None:
        if case.axis == "shard" and who[0] not in SHARD_BACKENDS:
            pytest.skip(f"the shard axis times {', '.join(SHARD_BACKENDS)} only (the state axis has the others)")
        bound = getattr(backend, "max_work", None)
        if bound is not None and bound(case.model) is not None:
            # a backend that builds the whole window as a graph (CasADi) states how large it can go;
            # quick runs stay at a tenth of that (its prepare grows with the graph)
            limit = bound(case.model) // (10 if mode == "quick" else 1)
            if case.n * case.nsteps > limit:
                pytest.skip(f"{who[0]}: graph of {case.n * case.nsteps} variable-steps > {limit} "
                            f"({'a tenth of ' if mode == 'quick' else ''}its stated bound)")
        small = SMALL_ONLY.get(who[0])
        if small is not None and case.work > small:
            pytest.skip(f"{who[0]}: seconds per call whatever the size; small cases only (work <= {small})")
        prev = self.last.get(who)
        if prev is None:
            return
        pcase, call_s, peak = prev
        ratio = case.work / pcase.work
        est = call_s * ratio
        if est > CALL_CAP_S[mode]:
            pytest.skip(f"estimated {est:.3g} s per call (from {pcase.id}: {call_s:.3g} s) > cap {CALL_CAP_S[mode]:g} s")
        # extrapolate memory only from a case large enough that its peak is mostly data (below,
        # compiled code and libraries dominate: numba's 150 MiB at N = 40 is not 100x at N = 4000)
        if math.isfinite(peak) and peak > 2**28 and peak * ratio > 0.6 * available_memory_bytes():
            pytest.skip(f"estimated peak memory {peak * ratio / 2**30:.3g} GiB > 60% of the available memory")

    def update(self, who: tuple, case: ScaleCase, call_s: float, peak: float) -> None:
        prev = self.last.get(who)
        if prev is None or case.work >= prev[0].work:
            self.last[who] = (case, call_s, peak)


ESTIMATES = Estimates()
