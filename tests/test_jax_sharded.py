"""Backend ``jax-sharded``: Lorenz-96 split over K devices (shard_map, ppermute halos, psum).

Without accelerators the K devices are forced CPU devices, fixed when JAX starts, so each K
runs in its own subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=K``,
``python -c``, one JSON line back): for K = 2, 3, 4 the sharded J and gradient equal the
single-device ``numpy`` ones to 1e-12 relative and pass complex step on random problems (N
divisible by K and not: padded blocks), the forward-only J equals the gradient call's, batch
rows (members sharded, B padded) equal single calls, and N < 2K is a ValueError naming N and
K.  The K = 4 subprocess also runs N = 40000; two more a 2-process x 2-device run on loopback
(``jax.distributed``).  The subprocesses all start at module set-up and run concurrently;
the in-process tests use the pytest process's devices (one CPU unless told otherwise), and
cover Lorenz-63 (unsharded gradient, member-sharded batch).
XLA compiles cost ~1-2 s each on the 2-core VM, so each job prepares few executables.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.models import Lorenz96Problem
from adjointbench.testing import random_problem, random_problem96

from conftest import backend_or_skip

NAME = "jax-sharded"
RTOL = 1e-12
TIMEOUT = 150

#: what each subprocess runs: the job (JSON) is argv[1]; prints one JSON line
SCRIPT = r"""
import json, sys
import numpy as np
job = json.loads(sys.argv[1])
import adjointbench as ab
from adjointbench import verify
from adjointbench.models import lorenz96_equations as l96
from adjointbench.testing import random_problem96
import jax

def ends(rng, p):
    # step 0 and the last step observed (rows: the first guess's states plus noise)
    add = sorted({0, p.nsteps} - set(p.obs_steps.tolist()))
    if not add:
        return p
    rows = l96.observe(p.x0, p.F, p.dt, np.array(add), p.obs_indices) + rng.standard_normal((len(add), p.obs_indices.size))
    steps = np.concatenate([p.obs_steps, add]); order = np.argsort(steps)
    return p.with_(obs_steps=steps[order], obs_values=np.concatenate([p.obs_values, rows])[order])

rng = np.random.default_rng(job["seed"])
b, ref = ab.backend("jax-sharded"), ab.backend("numpy")
b.devices()  # the backend first: with JAX_COORDINATOR_ADDRESS it starts jax.distributed
out = {"devices": jax.device_count(), "processes": jax.process_count(), "problems": []}
for spec in job.get("problems", []):
    p = random_problem96(rng, spec["control"], n=spec["n"], max_steps=spec.get("max_steps", 12))
    if spec.get("ends"):
        p = ends(rng, p)
    vg = b.prepare(p)
    J, g = vg(p.u0)
    J0, g0 = ref.prepare(p)(p.u0)
    r = verify.check_vg("jax-sharded", vg, p)
    row = {"n": p.n, "control": p.control, "steps": p.obs_steps.tolist(), "m": int(p.obs_indices.size),
           "info": {k: vg.info[k] for k in ("devices", "block", "padded_slots", "processes", "halo")},
           "dJ": abs(J - J0) / abs(J0), "dg": verify.relative_error(g, g0),
           "cs_grad": r.grad_error, "cs_J": r.J_error, "cs_passed": r.passed}
    if spec.get("cost"):
        row["dcost"] = abs(b.prepare_cost(p)(p.u0) - J) / abs(J)
    if spec.get("batch"):
        vgb = b.prepare_batch(p)
        worst = 0.0
        for B in spec["batch"]:
            U = p.u0 + 0.05 * np.abs(p.u0).max() * rng.standard_normal((B, p.n_control))
            JB, GB = vgb(U)
            assert JB.shape == (B,) and GB.shape == (B, p.n_control)
            for i in range(B):
                Ji, gi = vg(U[i])
                worst = max(worst, abs(JB[i] - Ji) / abs(Ji), verify.relative_error(GB[i], gi))
        row["batch_idiom"], row["batch_err"] = vgb.idiom, worst
    out["problems"].append(row)
if "too_small" in job:
    p = random_problem96(rng, "state", n=job["too_small"], max_steps=3)
    try:
        b.prepare(p)
        out["too_small"] = None
    except ValueError as e:
        out["too_small"] = str(e)
print("RESULT " + json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(job: dict, k: int, extra_env: dict | None = None) -> subprocess.Popen:
    env = {key: v for key, v in os.environ.items() if not key.startswith(("JAX_COORDINATOR", "ADJOINTBENCH_NUM_PROC",
                                                                          "ADJOINTBENCH_PROCESS", "ADJOINTBENCH_DISTRIB"))}
    # LLVM at -O0 (XLA_FLAGS' backend level): the same HLO, ~30% less compile time per executable
    env.update({"XLA_FLAGS": f"--xla_force_host_platform_device_count={k} --xla_backend_optimization_level=0",
                "JAX_PLATFORMS": "cpu",
                "JAX_NUM_CPU_DEVICES": str(k)})
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(job)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_RESULTS: dict = {}


def _result(proc: subprocess.Popen, what: str) -> dict:
    if id(proc) in _RESULTS:
        return _RESULTS[id(proc)]
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"{what}: timed out after {TIMEOUT} s\n{stderr[-3000:]}")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{what}: exit {proc.returncode}\n{stderr[-3000:]}"
    _RESULTS[id(proc)] = json.loads(lines[-1][len("RESULT "):])
    return _RESULTS[id(proc)]


def _n(r, k: int, wide: bool, padded: bool) -> int:
    """A random N for K blocks: >= 8 per block (one wide halo per step) or fewer (a halo per
    tendency), divisible by K or not (padded blocks)."""
    per = int(r.integers(8, 16) if wide else r.integers(2, 7))
    return k * per + (int(r.integers(1, k)) if padded else 0)


def _jobs(seed: int) -> dict:
    """K -> job: random N (both halo schemes, padded and not), both controls, obs at 0 and last."""
    r = np.random.default_rng(seed)
    jobs = {}
    for k in (2, 3, 4):
        controls = ["state", "state+params"]
        r.shuffle(controls)
        padded = k == 3  # K = 3: the narrow halo padded, the wide one not; K = 2, 4 the other way
        jobs[k] = {"seed": int(r.integers(2**31)), "problems": [
            {"control": controls[0], "n": _n(r, k, False, padded), "cost": k == 2, "batch": [3] if k == 2 else None},
            {"control": controls[1], "n": _n(r, k, True, not padded), "ends": True, "cost": k == 4,
             "batch": [4] if k == 3 else None},
        ]}
        if 2 * k - 1 >= 4:  # a problem needs N >= 4: for K = 2 no valid N is too small
            jobs[k]["too_small"] = 2 * k - 1
    # the 40000-variable problem rides in the K = 4 process (one JAX start less)
    jobs[4]["problems"].append({"control": "state+params", "n": 40000, "max_steps": 8, "ends": True})
    return jobs


@pytest.fixture(scope="module", autouse=True)
def runs():
    """Every subprocess started at module set-up (they overlap each other and the in-process
    tests, which come first in this file); each subprocess test collects its own."""
    backend_or_skip(NAME)
    from conftest import SEED

    seed = int(np.random.default_rng([SEED, 96]).integers(2**31))
    started = {k: _start(job, k) for k, job in _jobs(seed).items()}
    port = _free_port()
    mp = {"seed": seed, "problems": [{"control": "state+params", "n": 4 * 5 + 2, "ends": True, "batch": [3]}]}
    started["multi"] = [
        _start(mp, 2, {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "ADJOINTBENCH_NUM_PROCESSES": "2",
                       "ADJOINTBENCH_PROCESS_ID": str(i)}) for i in (0, 1)]
    yield started, seed
    for proc in [p for v in started.values() for p in (v if isinstance(v, list) else [v])]:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _check_problems(out: dict, k: int, seed: int, processes: int = 1) -> None:
    assert out["devices"] == k and out["processes"] == processes, out
    for row in out["problems"]:
        what = (k, seed, row["n"], row["control"], row["steps"])
        assert row["info"]["devices"] == k and row["info"]["processes"] == processes, what
        assert row["info"]["padded_slots"] == k * row["info"]["block"] - row["n"], what
        wide = row["n"] // k >= 8  # the smallest block holds floor(N/K) variables
        assert row["info"]["halo"].startswith("per step" if wide else "per tendency"), (what, row["info"])
        assert row["dJ"] <= RTOL and row["dg"] <= RTOL, (what, row)
        assert row["cs_passed"], (what, row)
        if "dcost" in row:
            assert row["dcost"] <= RTOL, (what, row)
        if "batch_err" in row:
            assert row["batch_idiom"] == "vmap (sharded members)"
            assert row["batch_err"] <= RTOL, (what, row)


# ---- in process (the pytest process's devices, one CPU by default) --------------------------


@pytest.fixture(scope="module")
def backend():
    return backend_or_skip(NAME)


def _min_n(b) -> int:
    import jax

    return max(4, 2 * jax.device_count())


def test_declares_both_models_and_sharded_batches(backend):
    assert backend.kind == "AD, XLA (sharded)" and backend.models == ("lorenz63", "lorenz96")
    assert backend.batch_idiom == "vmap (sharded members)" and not backend.fused
    assert backend.has_cost("lorenz63") and backend.has_cost("lorenz96")
    assert set(backend.devices()) <= {"cpu", "gpu", "tpu"} and backend.devices()


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_lorenz63_unsharded_gradient_and_sharded_batch(backend, control, rng):
    """Lorenz-63 (nothing to shard): one device's gradient; its batch sharded by member."""
    p = random_problem(rng, control, max_steps=200)
    p = p.with_(obs_steps=[0, p.nsteps], obs_values=np.vstack([p.obs_values[:1], p.obs_values[-1:]]))
    vg = backend.prepare(p)
    assert verify.check_vg(NAME, vg, p).passed and vg.info["devices"] == 1
    assert abs(backend.prepare_cost(p)(p.u0) - vg(p.u0)[0]) <= RTOL * abs(vg(p.u0)[0])
    vgb = backend.prepare_batch(p)
    U = p.u0 + 0.05 * rng.standard_normal((5, p.n_control))
    J, G = vgb(U)
    for i in range(5):
        Ji, gi = vg(U[i])
        assert abs(J[i] - Ji) <= RTOL * abs(Ji) and verify.relative_error(G[i], gi) <= RTOL


@pytest.mark.parametrize("control", ["state", "state+params"])
def test_in_process_matches_complex_step(backend, control, rng):
    lo = _min_n(backend)
    for n in ((lo, int(rng.integers(lo, 65)))[control == "state+params"],):
        p = random_problem96(rng, control, n=n, max_steps=15)
        vg = backend.prepare(p)
        r = verify.check_vg(NAME, vg, p)
        assert r.passed, (p.label(), r)
        J0, g0 = ab.backend("numpy").prepare(p)(p.u0)
        J, g = vg(p.u0)
        assert abs(J - J0) <= RTOL * abs(J0) and verify.relative_error(g, g0) <= RTOL
        assert vg.info["devices"] >= 1 and vg.info["mesh_shape"] == {"x": vg.info["devices"]}
        assert vg.compile_s and vg.compile_s > 0


def test_in_process_batch_and_cost(backend, rng):
    p = random_problem96(rng, "state+params", n=max(_min_n(backend), 9), max_steps=10)
    vg, vgb = backend.prepare(p), backend.prepare_batch(p)
    assert vgb.idiom == "vmap (sharded members)"
    for B in (1, 3, 17):
        U = p.u0 + 0.05 * np.abs(p.u0).max() * rng.standard_normal((B, p.n_control))
        J, G = vgb(U)
        assert J.shape == (B,) and G.shape == (B, p.n_control)
        for i in range(B):
            Ji, gi = vg(U[i])
            assert abs(J[i] - Ji) <= RTOL * abs(Ji) and verify.relative_error(G[i], gi) <= RTOL, (B, i)
    u = p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control))
    assert abs(backend.prepare_cost(p)(u) - vg(u)[0]) <= RTOL * abs(vg(u)[0])
    assert abs(vg(u)[0] - float(p.cost(u))) <= 1e-12 * abs(float(p.cost(u)))


def test_bad_inputs_are_value_errors(backend):
    p = Lorenz96Problem.standard(n=max(_min_n(backend), 8), nsteps=4)
    vg, vgb = backend.prepare(p), backend.prepare_batch(p)
    for u in (np.zeros(p.n + 1), np.zeros(p.n - 1), np.full(p.n, np.nan), np.zeros((2, p.n))):
        with pytest.raises(ValueError):
            vg(u)
    for U in (np.zeros((0, p.n)), np.zeros((2, p.n + 1)), np.zeros(p.n), np.full((2, p.n), np.inf)):
        with pytest.raises(ValueError):
            vgb(U)
    with pytest.raises(ValueError, match="dtype"):
        backend.prepare(p, dtype="float32")
    with pytest.raises(ValueError, match="device"):
        backend.prepare(p, device="no-such-device")


# ---- the subprocesses: K forced CPU devices each ------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4])
def test_sharded_equals_single_device_and_complex_step(runs, k):
    started, seed = runs
    out = _result(started[k], f"K = {k}")
    _check_problems(out, k, seed)
    kinds = {(row["info"]["halo"].split()[1], bool(row["info"]["padded_slots"])) for row in out["problems"][:2]}
    assert kinds == ({("tendency", True), ("step", False)} if k == 3 else {("tendency", False), ("step", True)}), kinds
    if k == 2:
        return
    msg = out["too_small"]
    assert msg is not None and f"N = {2 * k - 1}" in msg and f"{k} devices" in msg, msg


def test_40000_variables_on_4_devices_equal_numpy(runs):
    started, seed = runs
    out = _result(started[4], "K = 4")
    _check_problems(out, 4, seed)
    large = out["problems"][-1]
    assert large["n"] == 40000 and large["info"]["block"] == 10000


def test_two_processes_on_loopback(runs):
    started, seed = runs
    outs = [_result(p, f"process {i} of 2") for i, p in enumerate(started["multi"])]
    for out in outs:
        _check_problems(out, 4, seed, processes=2)
    assert outs[0]["problems"][0]["dJ"] == outs[1]["problems"][0]["dJ"]
