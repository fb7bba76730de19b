"""Backend ``enzyme``: the Enzyme-differentiated C++ kernel, its IR fix-ups and its shipped IR.

What tests/test_backends.py checks for every backend is not repeated; here: many random
problems on one build (sizes are run-time values), observations at both ends of the window,
size checks in front of native code, the fused driver bit for bit, the native batch row by
row, the forward-only cost against the gradient's J and the Python cost, the IR fix-up
function, and that kernels/generated/ is what enzyme-ad makes of kernels/lorenz63_enzyme.cpp.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import verify
from adjointbench.backends import python_descent
from adjointbench.testing import random_problem

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build_tools"))

import enzyme_ir  # noqa: E402
import regenerate_enzyme_ir as regen  # noqa: E402

BACKEND = ab.backend("enzyme")
needs_enzyme = pytest.mark.skipif(not BACKEND.available()[0], reason=BACKEND.available()[1])
needs_llvmlite = pytest.mark.skipif(importlib.util.find_spec("llvmlite") is None, reason="llvmlite not installed")
needs_enzyme_ad = pytest.mark.skipif(importlib.util.find_spec("enzyme_ad") is None, reason="enzyme-ad not installed")


def assert_matches_complex_step(vg, problem, u=None):
    u = problem.u0 if u is None else u
    J_ref, g_ref = verify.reference(problem, u)
    J, g = vg(u)
    assert isinstance(J, float) and g.dtype == np.float64 and g.shape == (problem.n_control,)
    assert abs(J - J_ref) <= verify.TOLERANCE * abs(J_ref)
    assert verify.relative_error(g, g_ref) <= verify.TOLERANCE


# ---- gradient --------------------------------------------------------------------------
#: controls the cost and gradient entries refuse (wrong length or shape, non-finite, not real)
BAD_CONTROLS = [np.zeros(2), np.zeros(6), np.zeros((3, 1)), [1.0, np.nan, 2.0], [1.0, 2.0, np.inf], ["a", "b", "c"],
                np.zeros(3, complex)]


@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
def test_random_problems_on_one_build(rng, control):
    problems = [random_problem(rng, control) for _ in range(12)]
    vgs = [BACKEND.prepare(p) for p in problems]
    for p, vg in zip(problems, vgs, strict=True):
        assert_matches_complex_step(vg, p)
    # interleaved repeated calls at other points: each prepared kernel keeps its own buffers
    for p, vg in reversed(list(zip(problems, vgs, strict=True))):
        u = p.u0 * rng.uniform(0.95, 1.05, p.n_control)
        assert_matches_complex_step(vg, p, u)
        assert_matches_complex_step(vg, p, u)


@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("where", ["0", "last", "0 and last", "0 only"])
def test_observations_at_the_ends_of_the_window(rng, control, where):
    base = random_problem(rng, control)
    n = max(base.nsteps, 2)
    steps = {"0": [0, n // 2], "last": [n // 2, n], "0 and last": [0, n], "0 only": [0]}[where]
    problem = base.with_(nsteps=n, obs_steps=steps, obs_values=rng.normal(0, 5, (len(steps), 3)))
    vg = BACKEND.prepare(problem)
    assert_matches_complex_step(vg, problem)
    if where == "0 only":  # J = |x0 - wo_0|^2 / 2 does not depend on the parameters
        J, g = vg(problem.u0)
        np.testing.assert_array_equal(g[:3], problem.u0[:3] - problem.obs_values[0])
        assert not np.any(g[3:])


@needs_enzyme
def test_paper_problem_both_controls():
    for control in ("state", "state+params"):
        p = ab.Lorenz63Problem.paper(control)
        assert_matches_complex_step(BACKEND.prepare(p), p)


# ---- forward-only cost (prepare_cost) ----------------------------------------------------
@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
def test_forward_cost_is_the_gradients_J_and_the_python_cost(rng, control):
    assert BACKEND.has_cost("lorenz63")
    for _ in range(12):
        p = random_problem(rng, control)
        vg, cost = BACKEND.prepare(p), BACKEND.prepare_cost(p)
        for u in (p.u0, p.u0 * rng.uniform(0.95, 1.05, p.n_control)):
            J = cost(u)
            assert isinstance(J, float)
            # the primal of the gradient call is the same forward model, rounded the same way
            assert abs(J - vg(u)[0]) <= 1e-14 * abs(J)
            assert abs(J - float(p.cost(u))) <= 1e-12 * abs(J), p.to_json()


@needs_enzyme
@pytest.mark.parametrize("bad", BAD_CONTROLS)
def test_bad_control_to_the_cost_is_a_value_error(bad):
    cost = BACKEND.prepare_cost(ab.Lorenz63Problem.paper())
    with pytest.raises(ValueError):
        cost(bad)


# ---- batch: one native call, each row what vg gives ---------------------------------------
@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
@pytest.mark.parametrize("B", [1, 3, 17])
def test_batch_rows_equal_single_calls(rng, control, B):
    p = random_problem(rng, control)
    vg, vgb = BACKEND.prepare(p), BACKEND.prepare_batch(p)
    assert vgb.idiom == "native loop"
    U = p.u0 * rng.uniform(0.9, 1.1, (B, p.n_control))  # distinct random members
    J, G = vgb(U)
    assert J.shape == (B,) and G.shape == (B, p.n_control) and J.dtype == G.dtype == np.float64
    for b in range(B):
        Jb, gb = vg(U[b])
        assert J[b] == Jb and np.array_equal(G[b], gb)  # the same compiled gradient
    assert_matches_complex_step(lambda u: (float(J[-1]), G[-1]), p, U[-1])
    J2, G2 = vgb(np.asfortranarray(U))  # any layout: converted by check_controls
    assert np.array_equal(J2, J) and np.array_equal(G2, G)


@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
def test_bad_batches_are_value_errors(control):
    p = ab.Lorenz63Problem.paper(control)
    vgb = BACKEND.prepare_batch(p)
    nc = p.n_control
    for bad in [np.zeros((0, nc)), np.zeros((2, nc + 1)), np.zeros((2, nc - 1)), np.zeros(nc), np.zeros((1, 1, nc)),
                np.full((3, nc), np.nan), np.r_[[p.u0], [np.full(nc, np.inf)]], np.zeros((2, nc), complex)]:
        with pytest.raises(ValueError):
            vgb(bad)


# ---- sizes are checked before native code ----------------------------------------------
@needs_enzyme
@pytest.mark.parametrize("bad", BAD_CONTROLS)
def test_bad_control_is_a_value_error(bad):
    vg = BACKEND.prepare(ab.Lorenz63Problem.paper())
    with pytest.raises(ValueError):
        vg(bad)
    run = BACKEND.prepare_descent(ab.Lorenz63Problem.paper())
    with pytest.raises(ValueError):
        run(bad)


@needs_enzyme
def test_native_wrapper_checks_its_sizes():
    from adjointbench._enzyme import Lorenz63Enzyme

    obs = np.zeros((2, 3))
    good = dict(dt=0.01, params=[10.0, 28.0, 8 / 3], steps=[1, 5], obs=obs, n_control=3)
    for change in (
        {"n_control": 4}, {"dt": 0.0}, {"dt": np.nan}, {"params": [1.0, 2.0]}, {"steps": [5, 1]},
        {"steps": [1, 1]}, {"steps": [-1, 5]}, {"steps": []}, {"steps": [1, 2**31]}, {"steps": [0.5, 1.0]},
        {"obs": np.zeros((3, 3))}, {"obs": np.full((2, 3), np.nan)},
    ):
        with pytest.raises(ValueError):
            Lorenz63Enzyme(**{**good, **change})
    k = Lorenz63Enzyme(**good)
    with pytest.raises(ValueError):
        k.vg(np.zeros(6))
    with pytest.raises(ValueError):
        k.cost(np.zeros(6))
    with pytest.raises(ValueError):
        k.cost(np.array([1.0, np.nan, 0.0]))
    for bad in (np.zeros((2, 6)), np.zeros((0, 3)), np.zeros((2, 3), np.float32), np.full((2, 3), np.inf)):
        for batch in (k.vgb, k.costs):
            with pytest.raises(ValueError):
                batch(bad)  # the wrapper itself refuses: shape, dtype (no float32 promotion), finite
    U = np.random.default_rng(0).normal(0.0, 5.0, (3, 2)).T  # a strided float64 view: copied, same answer
    assert np.array_equal(k.vgb(U)[1], k.vgb(np.ascontiguousarray(U))[1])
    assert np.array_equal(k.costs(U), np.array([k.cost(np.ascontiguousarray(u)) for u in U]))
    with pytest.raises(ValueError):
        k.descent(np.zeros(3), 0, 1e-3)
    with pytest.raises(ValueError):
        k.descent(np.zeros(3), 4, np.inf)


# ---- fused driver ----------------------------------------------------------------------
@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
def test_fused_descent_is_the_python_loop_bit_for_bit(rng, control):
    p = ab.Lorenz63Problem.paper(control) if control == "state" else random_problem(rng, control)
    step = 5e-4 if control == "state" else 1e-6
    run = BACKEND.prepare_descent(p, iterations=101, step=step)
    fused = run(p.u0)
    ref = python_descent(BACKEND.prepare(p), p.u0, iterations=101, step=step)
    np.testing.assert_array_equal(fused.costs, ref.costs)
    np.testing.assert_array_equal(fused.u, ref.u)
    again = run(p.u0)  # buffers reused: the same result
    np.testing.assert_array_equal(again.costs, fused.costs)
    if control == "state":
        assert fused.costs[-1] < fused.costs[0]


@needs_enzyme
def test_concurrent_calls_from_threads(rng):
    # the kernel runs without the GIL; its per-call buffers are on each call's C stack
    from concurrent.futures import ThreadPoolExecutor

    problems = [random_problem(rng, "state+params"), random_problem(rng, "state")]
    vgs = [BACKEND.prepare(p) for p in problems]
    points = [[p.u0 * rng.uniform(0.95, 1.05, p.n_control) for _ in range(20)] for p in problems]
    expected = [[vg(u) for u in us] for vg, us in zip(vgs, points, strict=True)]

    def work(i):
        return [vgs[i % 2](u) for u in points[i % 2]]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    for i, got in enumerate(results):
        for (J, g), (J_ref, g_ref) in zip(got, expected[i % 2], strict=True):
            assert J == J_ref and np.array_equal(g, g_ref)


def test_unavailable_backend_says_why(monkeypatch):
    from adjointbench.backends import enzyme_aot

    monkeypatch.setattr(enzyme_aot.native, "load",
                        lambda name: (None, f"native extension adjointbench.{name} is not built (because)"))
    ok, reason = BACKEND.available()
    assert not ok and "because" in reason
    with pytest.raises(ValueError, match="unavailable"):
        BACKEND.prepare(ab.Lorenz63Problem.paper())


# ---- IR fix-ups ------------------------------------------------------------------------
MODULE = """target triple = "x86_64-unknown-linux-gnu"

define void @entry(ptr %p) #0 {
  store double 1.0, ptr %p, align 8, !alias.scope !3, !noalias !5
  ret void
}

attributes #0 = { nounwind MEMORY }

!0 = distinct !{!0, DOMAIN_FLAG!"diffe_cost"}
!1 = distinct !{!1, !0, !"primal"}
!2 = distinct !{!2, !0, !"shadow"}
!3 = !{!1}
!5 = !{!2}
"""


def module(memory="memory(argmem: write)", flag=""):
    return MODULE.replace("MEMORY", memory).replace("DOMAIN_FLAG", flag)


@pytest.mark.parametrize(
    "before, after",
    [
        ("memory(readwrite, target_mem: none)", "memory(readwrite)"),
        ("memory(argmem: write, target_mem: none)", "memory(argmem: write)"),
        ("memory(target_mem: none, argmem: read)", "memory(argmem: read)"),
        ("memory(target_mem: none)", "memory(none)"),
        ("memory(readwrite, inaccessiblemem: none, target_mem: none)", "memory(readwrite, inaccessiblemem: none)"),
        ("memory(argmem: read)", "memory(argmem: read)"),
    ],
)
def test_fix_up_drops_target_mem_none(before, after):
    assert enzyme_ir.fix_up(f"attributes #0 = {{ nounwind {before} }}") == f"attributes #0 = {{ nounwind {after} }}"


def test_fix_up_refuses_target_mem_access():
    with pytest.raises(enzyme_ir.UnsupportedIR, match="target_mem: read"):
        enzyme_ir.fix_up(module("memory(none, target_mem: read)"))


def test_fix_up_drops_the_domain_flag():
    fixed = enzyme_ir.fix_up('!13 = distinct !{!13, i1 false, !"diffe_cost"}\n!14 = distinct !{!14, !13, !"primal"}')
    assert fixed == '!13 = distinct !{!13, !"diffe_cost"}\n!14 = distinct !{!14, !13, !"primal"}'
    with pytest.raises(enzyme_ir.UnsupportedIR, match="i1 true"):
        enzyme_ir.fix_up('!13 = distinct !{!13, i1 true, !"diffe_cost"}')


@needs_llvmlite
def test_fixed_module_parses_and_verifies():
    enzyme_ir.parse(module("memory(readwrite, target_mem: none)", "i1 false, "))
    enzyme_ir.parse(module())  # nothing to fix


@needs_llvmlite
@pytest.mark.parametrize(
    "memory, flag, named",
    [
        ("memory(readwrite, gpu_mem: none)", "", "gpu_mem"),  # a location LLVM 22 does not know
        ("memory(argmem: write) frobnicate", "", "frobnicate"),  # an unknown attribute
        ("memory(argmem: write)", "i32 7, ", "domain must have one or two operands"),  # verifier
    ],
)
def test_unknown_construct_fails_loudly_naming_it(memory, flag, named):
    with pytest.raises(enzyme_ir.UnsupportedIR, match=named):
        enzyme_ir.parse(module(memory, flag))


# ---- shipped IR ------------------------------------------------------------------------
def test_shipped_ir_was_generated_from_this_source():
    assert set(regen.FRONT_DOORS) == {"lorenz63_entry", "lorenz96_entry"}
    for front_door in regen.FRONT_DOORS:
        digest = regen.source_digest(regen.source_text(front_door))
        text = regen.ir_path(front_door).read_text()
        assert regen.shipped_digest(text) == digest, "run build_tools/regenerate_enzyme_ir.py"


@needs_llvmlite
def test_shipped_ir_builds_an_object(tmp_path):
    for name, door in regen.FRONT_DOORS.items():  # one object per extension (build_tools/ext_enzyme.py)
        obj = tmp_path / f"{name}.o"
        enzyme_ir.emit_object([(name, regen.ir_path(name).read_text(), door.symbol, dict(door.renames))], str(obj))
        assert obj.read_bytes()[:4] == b"\x7fELF"


@needs_enzyme_ad
@needs_llvmlite
def test_shipped_ir_equals_a_fresh_regeneration():
    # enzyme-ad numbers metadata differently on each run; LLVM's re-printing (canonical)
    # renumbers it in order of use, so equal canonical text means the same module.
    # (canonical parses each text in a fresh LLVM context, which keeps named struct types such
    # as Lorenz-96's Problem from being renamed on the second parse)
    for front_door in regen.FRONT_DOORS:
        fresh = regen.generate(front_door, regen.source_text(front_door))
        assert regen.canonical(regen.ir_path(front_door).read_text()) == regen.canonical(fresh), front_door


# ---- the JIT route (same C++ source through enzyme_ad.jax.cpp_call) ---------------------
JIT = ab.backend("enzyme-jit")


@pytest.mark.skipif(not (JIT.available()[0] and BACKEND.available()[0]), reason="needs enzyme-ad, JAX and the built extension")
def test_jit_route_agrees_with_ahead_of_time(rng):
    for control in ("state", "state+params"):
        p = random_problem(rng, control)
        J_aot, g_aot = BACKEND.prepare(p)(p.u0)
        J_jit, g_jit = JIT.prepare(p)(p.u0)
        assert abs(J_jit - J_aot) <= 1e-12 * abs(J_aot)
        assert verify.relative_error(g_jit, g_aot) <= 1e-12
        assert abs(JIT.prepare_cost(p)(p.u0) - BACKEND.prepare_cost(p)(p.u0)) <= 1e-14 * abs(J_aot)


def test_jit_route_without_source_says_why(monkeypatch, tmp_path):
    from adjointbench.backends import enzyme_jit

    monkeypatch.setattr(enzyme_jit, "SOURCE", "missing.cpp")
    monkeypatch.setattr(enzyme_jit, "missing_modules", lambda *m: None)
    ok, reason = JIT.available()
    assert not ok and "missing.cpp not found" in reason


@needs_enzyme
@pytest.mark.parametrize("control", ["state", "state+params"])
def test_forward_model_rounds_as_list_1(rng, control):
    # Long windows of the chaotic model amplify any change in how the forward step rounds:
    # algebraically equal but faster forms of List 1 put J 1e-13..1e-12 and the gradient
    # 1e-11..1e-8 away from the complex-step reference on such windows.  Written as List 1,
    # J agrees to the last bits (only the order of the final sum differs) and the gradient
    # stays below ~5e-13 (largest of 1500 random long windows).
    long_windows = []
    while len(long_windows) < 6:
        p = random_problem(rng, control)
        if p.last_obs_step * p.dt >= 3.5:
            long_windows.append(p)
    for p in long_windows:
        res = verify.check_vg("enzyme", BACKEND.prepare(p), p, tolerance=1e-11)
        assert res.J_error <= 1e-14 and res.grad_error <= 1e-11, f"{res} on {p.to_json()}"
