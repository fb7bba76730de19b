"""What is specific to the AD backends jax, jax-nojit, enzyme-jax, torch, torch-compile.

The common contract (complex step <= 1e-10 in float64, sizes, fused = Python loop in float64)
is tests/test_backends.py.  Here: the float32 variant at a tolerance suited to it, device
choice and reporting, the fused JAX driver in float32 and with other settings, JAX's global
x64 flag left alone, Enzyme really differentiating in enzyme-jax, compile-time reporting,
torch-compile's opt-in, and the CLI.  jax-nojit costs ~10 ms per time step, so its
problems here are kept short.
"""

import json

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import python_descent
from adjointbench.cli import main
from adjointbench.testing import random_problem

from conftest import backend_or_skip

AD = ["jax", "jax-nojit", "enzyme-jax", "torch"]
JIT = ["jax", "enzyme-jax"]
#: float32 carries ~7 digits; over <= 120 Euler steps of a chaotic model errors of ~1e-5 were
#: seen, so 1e-3 checks the derivative is right without flagging float32 rounding
FLOAT32_TOLERANCE = 1e-3




def short_problem(rng, control, name):
    return random_problem(rng, control, max_steps=8 if name == "jax-nojit" else 120)


def is_float32(x):
    return np.array_equal(np.asarray(x, dtype=np.float32).astype(np.float64), x)


@pytest.mark.parametrize("name", AD)
def test_float32_matches_complex_step_at_float32_tolerance(name, rng):
    b = backend_or_skip(name)
    for control in ab.CONTROLS:
        for _ in range(4 if name in ("jax", "torch") else 1):
            p = short_problem(rng, control, name)
            vg = b.prepare(p, dtype="float32")
            assert vg.dtype == "float32"
            u = p.u0 * (1 + 0.01 * rng.standard_normal(p.n_control))
            res = verify.check_vg(name, vg, p, u, tolerance=FLOAT32_TOLERANCE)
            assert res.passed, f"{name}: {res} on {p.to_json()}"
            J, g = vg(u)
            # still the float64 interface, but every value is one that float32 arithmetic produced
            assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (p.n_control,)
            assert is_float32(np.array([J])) and is_float32(g)


@pytest.mark.parametrize("name", AD)
def test_float64_is_really_float64(name, rng):
    b = backend_or_skip(name)
    p = short_problem(rng, "state+params", name)
    vg = b.prepare(p)
    assert vg.dtype == "float64"
    assert verify.check_vg(name, vg, p, tolerance=1e-10).passed  # unreachable in float32


@pytest.mark.parametrize("name", AD)
def test_devices_and_reporting(name):
    b = backend_or_skip(name)
    devices = b.devices()
    assert "cpu" in devices
    p = ab.Lorenz63Problem.paper().with_(nsteps=5, obs_steps=[2, 5], obs_values=np.ones((2, 3)))
    vg = b.prepare(p, device="cpu")
    assert vg.device == "cpu"
    assert vg.info  # library versions / device details recorded with results
    default = b.prepare(p)
    assert default.device == devices[0]
    alias = {"cuda"} if name == "torch" and "gpu" in devices else set()  # torch accepts cuda as an alias of gpu
    for absent in {"gpu", "tpu", "cuda"} - set(devices) - alias:
        with pytest.raises(ValueError, match="device"):
            b.prepare(p, device=absent)


@pytest.mark.parametrize("name", AD)
def test_accelerator_when_visible(name, rng):
    """Runs only where a GPU/TPU is visible (e.g. the H100 machine); skipped on CPU-only hosts."""
    b = backend_or_skip(name)
    accelerators = [d for d in b.devices() if d != "cpu"]
    if not accelerators:
        pytest.skip(f"{name}: no accelerator visible")
    p = short_problem(rng, "state+params", name)
    for device in accelerators:
        vg = b.prepare(p, device=device)
        assert vg.device == device
        assert verify.check_vg(name, vg, p).passed
        assert verify.check_vg(name, b.prepare(p, device=device, dtype="float32"), p,
                               tolerance=FLOAT32_TOLERANCE).passed


@pytest.mark.parametrize("name", JIT)
def test_fused_driver_float32_and_other_settings_match_python_loop(name, rng):
    b = backend_or_skip(name)
    p = random_problem(rng, "state", max_steps=60)
    for dtype, iterations, step in (("float32", 101, 1e-5), ("float64", 7, 2e-5)):
        run = b.prepare_descent(p, iterations=iterations, step=step, dtype=dtype)
        fused = run(p.u0)
        ref = python_descent(b.prepare(p, dtype=dtype), p.u0, iterations=iterations, step=step)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(fused.costs, ref.costs, rtol=tol)
        np.testing.assert_allclose(fused.u, ref.u, rtol=tol)
        assert run.compile_s > 0 and run.dtype == dtype and run.device == "cpu"
        with pytest.raises(ValueError):
            run(np.zeros(4))


@pytest.mark.parametrize("unroll", [1, 3, 12, 1000])
def test_scan_unroll_changes_the_loop_not_the_gradient(unroll, rng):
    """Unrolling (bench/jax_unroll.py picks it per device) must not change what is computed."""
    backend_or_skip("jax")
    import jax

    from adjointbench.backends import _jax_model

    for control in ("state", "state+params"):
        p = random_problem(rng, control, max_steps=40)
        vg = _jax_model.jit_vg(p, "cpu", "float64", jax.value_and_grad, info={}, unroll=unroll)
        assert vg.info["scan_unroll"] == unroll
        assert verify.check_vg("jax", vg, p).passed, (unroll, p)
    for name in ("jax", "enzyme-jax"):
        if ab.backend(name).available()[0]:
            assert ab.backend(name).prepare(p).info["scan_unroll"] == _jax_model.UNROLL[name]["cpu"]


@pytest.mark.parametrize("name", JIT)
def test_compile_time_is_reported(name):
    b = backend_or_skip(name)
    vg = b.prepare(ab.Lorenz63Problem.paper())
    assert vg.compile_s > 0
    assert vg.compile_s == pytest.approx(vg.info["trace_lower_s"] + vg.info["xla_compile_s"])


def test_global_jax_x64_flag_is_left_alone():
    backend_or_skip("jax")
    import jax
    import jax.numpy as jnp

    before = jax.config.jax_enable_x64
    p = ab.Lorenz63Problem.paper()
    for name in ("jax", "jax-nojit", "enzyme-jax"):
        if ab.backend(name).available()[0]:
            q = p.with_(nsteps=3, obs_steps=[3], obs_values=p.obs_values[:1]) if name == "jax-nojit" else p
            ab.backend(name).prepare(q)(q.u0)
    ab.backend("jax").prepare_descent(p, iterations=2)(p.u0)
    assert jax.config.jax_enable_x64 == before
    assert jnp.ones(2).dtype == (jnp.float64 if before else jnp.float32)
    # a user who switched x64 on still gets float32 when asking for it
    with jax.enable_x64(True):
        vg = ab.backend("jax").prepare(p, dtype="float32")
        J, g = vg(p.u0)
    assert is_float32(g) and verify.check_vg("jax", vg, p, tolerance=FLOAT32_TOLERANCE).passed


def test_wrong_sizes_rejected_before_any_jax_work(monkeypatch):
    backend_or_skip("jax-nojit")
    from adjointbench.backends import _jax_model

    p = ab.Lorenz63Problem.paper("state+params")
    vg = ab.backend("jax-nojit").prepare(p)

    def traced(*a, **k):
        raise AssertionError("the JAX model ran on invalid input")

    monkeypatch.setattr(_jax_model, "trajectory", traced)
    for bad in (np.zeros(3), np.zeros(7), [np.nan] * 6):
        with pytest.raises(ValueError, match="control vector"):
            vg(bad)


def test_enzyme_jax_is_differentiated_by_enzyme_not_jax():
    backend_or_skip("enzyme-jax")
    import jax

    from adjointbench.backends import _jax_model, enzyme_jax

    cost = _jax_model.make_cost(ab.Lorenz63Problem.paper("state+params"))
    with _jax_model.x64():
        ours = jax.make_jaxpr(jax.value_and_grad(cost))(np.ones(6))
        theirs = jax.make_jaxpr(enzyme_jax._enzyme_value_and_grad(cost))(np.ones(6))
    prims = {e.primitive.name for e in theirs.jaxpr.eqns}
    assert any("enzyme" in n for n in prims), prims
    # JAX's own reverse mode would show the scan and its transpose (scatter-add of the gather)
    assert "scan" in {e.primitive.name for e in ours.jaxpr.eqns}
    assert not prims & {"scan", "scatter-add", "transpose"}


def test_torch_compile_is_opt_in_with_a_reason(monkeypatch):
    backend_or_skip("torch")
    monkeypatch.delenv("ADJOINTBENCH_TORCH_COMPILE", raising=False)
    ok, reason = ab.backend("torch-compile").available()
    assert not ok and "ADJOINTBENCH_TORCH_COMPILE" in reason
    with pytest.raises(ValueError, match="unavailable"):
        ab.backend("torch-compile").prepare(ab.Lorenz63Problem.paper())


def test_torch_compile_when_enabled(monkeypatch, rng):
    """A 3-step window keeps Inductor's compile to seconds; the paper's 180 steps take minutes."""
    backend_or_skip("torch")
    monkeypatch.setenv("ADJOINTBENCH_TORCH_COMPILE", "1")
    b = ab.backend("torch-compile")
    p = random_problem(rng, "state+params", max_steps=3)
    vg = b.prepare(p)
    assert vg.compile_s > 0
    for u in (p.u0, p.u0 * 1.01):
        assert verify.check_vg("torch-compile", vg, p, u).passed
    with pytest.raises(ValueError):
        vg(np.zeros(3))


@pytest.mark.parametrize("name", ["jax", "enzyme-jax", "torch", "jax-nojit"])
def test_cli_grad_json(name, tmp_path, capsys, rng):
    backend_or_skip(name)
    p = short_problem(rng, "state+params", name)
    path = tmp_path / "p.json"
    p.save(path)
    assert main(["grad", "--backend", name, "--problem", str(path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    J, g = verify.reference(p)
    assert res["backend"] == name and list(res["grad"]) == list(p.names)
    assert abs(res["J"] - J) <= 1e-10 * abs(J)
    assert verify.relative_error(np.array(list(res["grad"].values())), g) <= 1e-10
