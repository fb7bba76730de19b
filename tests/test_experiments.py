"""Reduced versions of the paper's experiments (Tbl. 2, Tbl. 4/Fig. 6, Figs. 1-3) and the optimisers."""

import json
import subprocess
import sys

import numpy as np
import pytest

import adjointbench as ab
from adjointbench import experiments, optimize
from adjointbench.experiments import discontinuous, fig1, fig2, fig3, table2
from adjointbench.problem import PAPER_TRUTH_PARAMS, PAPER_TRUTH_X0

TRUTH6 = np.array([*PAPER_TRUTH_X0, *PAPER_TRUTH_PARAMS.values()])


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "adjointbench", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


# ---- optimisers -----------------------------------------------------------------------------
def random_quadratic(rng, n=5):
    A = rng.standard_normal((n, n))
    H = A @ A.T + n * np.eye(n)
    xs = rng.standard_normal(n)

    def vg(x):
        d = x - xs
        return 0.5 * d @ H @ d, H @ d

    return vg, xs


@pytest.mark.parametrize("method", [optimize.nvm, optimize.bfgs, optimize.lbfgsb])
def test_optimisers_minimise_a_random_quadratic(rng, method):
    vg, xs = random_quadratic(rng)
    res = method(vg, rng.standard_normal(xs.size) * 3)
    assert np.max(np.abs(res.x - xs)) < 1e-6


def test_nvm_counts_like_rvmmin(rng):
    vg, _ = random_quadratic(rng)
    res = optimize.nvm(vg, np.zeros(5))
    # Rvmmin: counts = (function, gradient); every accepted point costs one gradient, the first guess both
    assert res.ngev == len(res.path) and res.nfev >= res.ngev and res.status in (0, 2)


def test_table2_nvm_recovers_the_truth():
    problem = table2.problem_for((59, 119, 179))
    res = optimize.nvm(ab.backend("numpy").prepare(problem), problem.u0)
    assert res.status == 0
    assert np.max(np.abs(res.x - TRUTH6)) < 1e-6


def test_table2_r_bfgs_reproduces_the_papers_row():
    # the paper's "hand-coded adjoint, BFGS" row: R's optim BFGS stops early at (1.235, 2.702, 4.975)
    problem = table2.problem_for((59, 119, 179))
    with np.errstate(all="ignore"):
        res = optimize.vmmin(ab.backend("numpy").prepare(problem), problem.u0)
    assert res.ngev == 39
    assert np.allclose(res.x[:3], [1.235, 2.702, 4.975], atol=5e-4)


def test_lbfgs_strong_wolfe_converges_on_the_smooth_problem():
    pytest.importorskip("torch")
    problem = ab.Lorenz63Problem.paper(control="state")
    vg = ab.backend("numpy").prepare(problem)
    J0 = vg(problem.u0)[0]
    res = optimize.lbfgs_torch(vg, problem.u0, line_search=True, steps=20)
    # J falls by ten orders of magnitude; X0 is the least determined component (Tbl. 2's L-BFGS row)
    assert res.fun < 1e-10 * J0
    assert np.max(np.abs(res.x - np.array(PAPER_TRUTH_X0))) < 0.2


def test_lbfgs_strong_wolfe_converges_on_rosenbrock(rng):
    pytest.importorskip("torch")

    def vg(p):
        r = fig2.residual(p)
        return 0.5 * float(r @ r), fig2.analytic_jacobian(p).T @ r

    res = optimize.lbfgs_torch(vg, rng.uniform(-1.5, 1.5, 2), line_search=True, steps=50, restarts=3)
    # torch stops once J changes by < tolerance_change = 1e-9, i.e. |x - x*| ~ 1e-5
    assert res.fun < 1e-8
    assert np.allclose(res.x, [1.0, 1.0], atol=2e-4)


def test_gauss_newton_rosenbrock_two_steps():
    res = fig2.solve("complex-step")
    assert res.nit == 2
    assert np.allclose(res.x, [1.0, 1.0], atol=1e-12)


def test_complex_step_jacobian_matches_analytic(rng):
    p = rng.uniform(-2, 2, 2)
    assert np.allclose(optimize.complex_step_jacobian(fig2.residual, p), fig2.analytic_jacobian(p), rtol=1e-14, atol=1e-14)


# ---- discontinuous model (Tbl. 4 / Fig. 6) ----------------------------------------------------
def differentiable_points(rng, dx, n):
    """Random first guesses whose states stay clear of the switch at x = 1."""
    out = []
    while len(out) < n:
        x0 = float(rng.uniform(-1.0, 3.5))
        if min(abs(x - 1.0) for x in discontinuous.forward(x0, dx)[:-1]) > 1e-6:
            out.append(x0)
    return out


def test_discontinuous_global_minimum():
    xs = discontinuous.forward(discontinuous.X_STAR, 3.0)
    assert abs(xs[-1]) < 1e-15 and all(x < 1 for x in xs)


@pytest.mark.parametrize("gradient", ["torch", "jax"])
def test_discontinuous_hand_adjoint_equals_ad(rng, gradient):
    pytest.importorskip(gradient)
    for dx in rng.uniform(0.5, 3.5, 3):
        vg = discontinuous.make_vg(gradient, float(dx))
        for x0 in differentiable_points(rng, dx, 20):
            J, g = vg(np.array([x0]))
            assert abs(J - discontinuous.cost(x0, dx)) <= 1e-14 * max(1.0, J)
            ref = discontinuous.hand_gradient(x0, dx)
            assert abs(g[0] - ref) <= 1e-13 * max(1.0, abs(ref))


def test_discontinuous_hand_adjoint_equals_complex_step(rng):
    def complex_cost(z, dx):
        for _ in range(discontinuous.NSTEPS):
            z = z + discontinuous.DT * ((2 * z - 2) if z.real < 1 else (z - (1 + dx)))
        return z * z

    for dx in (0.5, 3.0, 3.5):
        for x0 in differentiable_points(rng, dx, 20):
            cs = (complex_cost(complex(x0, 1e-20), dx)).imag / 1e-20
            assert abs(cs - discontinuous.hand_gradient(x0, dx)) <= 1e-13 * max(1.0, abs(cs))


def test_table4_cli_quick_json(tmp_path):
    pytest.importorskip("torch")
    full = tmp_path / "table4.json"
    full.write_text('{"a full run": true}\n')  # a reduced run must never replace a full one
    rc, out, err = cli("experiment", "table4", "--quick", "--json", "--backend", "numpy", "--outdir", str(tmp_path))
    assert rc == 0, err
    cells = json.loads(out)
    assert len(cells) == 4 * 3
    for c in cells:
        assert {"restart", "line_search", "dx", "converged", "total"} <= set(c)
        assert 0 <= c["converged"] <= c["total"] == 30
    # without line search every run from these first guesses finds the global minimum (Tbl. 4, row 1)
    assert all(c["converged"] == c["total"] for c in cells if not c["line_search"])
    assert (tmp_path / "quick" / "table4.json").exists() and (tmp_path / "quick" / "table4.md").exists()
    assert full.read_text() == '{"a full run": true}\n' and not (tmp_path / "table4.md").exists()


def test_table4_jax_leaves_the_x64_flag_alone(tmp_path):
    """The jax gradient computes in float64 inside ``jax.enable_x64(True)`` only: the quick Tbl. 4
    run must not switch the process-wide ``jax_enable_x64`` flag (the user's JAX code keeps its
    precision), and must still be float64 (agreement with the hand adjoint far below float32)."""
    jax = pytest.importorskip("jax")
    pytest.importorskip("torch")  # the paper's optimiser, torch.optim.LBFGS
    before = jax.config.jax_enable_x64
    out = experiments.run("table4", backends=["jax"], quick=True, outdir=tmp_path, progress=False)
    assert jax.config.jax_enable_x64 == before
    assert out.data["gradient_max_rel_diff"]["jax"] <= 1e-13
    # without line search every run from these first guesses finds the global minimum (Tbl. 4, row 1)
    assert all(c["converged"] == c["total"] for c in out.data["cells"] if not c["line_search"])


# ---- Tbl. 2 command, Fig. 1, Fig. 3 ---------------------------------------------------------
def test_table2_cli_quick_json(tmp_path):
    rc, out, err = cli("experiment", "table2", "--quick", "--json", "--backend", "numpy", "--outdir", str(tmp_path))
    assert rc == 0, err
    rows = json.loads(out)
    keys = {"gradient", "optimizer", "n", "r", "sigma", "beta", "x0", "y0", "z0"}
    assert rows and all(keys <= set(r) for r in rows)
    nvm = next(r for r in rows if r["optimizer"] == "nvm")
    assert abs(nvm["r"] - 32) < 1e-6 and abs(nvm["x0"] - 1) < 1e-6


def test_experiment_rejects_unknown_backend(tmp_path):
    rc, out, err = cli("experiment", "table2", "--backend", "nope", "--outdir", str(tmp_path))
    assert rc == 2 and "unknown backend" in err and len(err.strip().splitlines()) == 1


def test_fig1_complex_step_exact_and_fd_optimum():
    rows = fig1.errors()
    assert all(r["cs_rel_error"] < 1e-15 for r in rows if r["h"] <= 1e-8)
    ok = [r for r in rows if not r["fd_lost"]]
    best = min(ok, key=lambda r: r["fd_rel_error"])
    # the best forward-difference step lies within a decade of eq. (25)'s h_opt
    assert abs(np.log10(best["h"]) - np.log10(fig1.h_opt(fig1.X))) <= 1.0
    assert all(r["fd_lost"] for r in rows if r["h"] < 1e-16)


def test_fig3_mlef_small_ensemble(rng):
    seed = int(rng.integers(2**31))
    r = fig3.mlef(members=200, seed=seed)
    assert r["steps"] <= 10
    assert r["rel_error_vs_ensemble_exact"] < 1e-2
    assert r["rel_error_percent"] < 10.0
    assert abs(r["analysis_speed"] - 3.03) < 0.05


def test_discontinuous_teeth_are_local_minima_with_nonzero_gradient(rng):
    for dx in rng.uniform(0.5, 3.5, 3):
        for e in discontinuous.tooth_edges(float(dx)):
            left, right = discontinuous.cost(e - 1e-9, dx), discontinuous.cost(e + 1e-9, dx)
            assert right < left  # J jumps down across the edge ...
            assert discontinuous.hand_gradient(e + 1e-9, dx) > 0  # ... and rises right of it: a tooth bottom


def test_line_search_stalls_at_a_tooth_bottom():
    pytest.importorskip("torch")
    res = discontinuous.minimise(discontinuous.make_vg("numpy", 3.0), 2.8, line_search=True, restart=False)
    assert not discontinuous.converged(res)
    assert min(abs(float(res.x[0]) - e) for e in discontinuous.tooth_edges(3.0)) < 1e-3


# ---- computing, rendering and writing are apart -------------------------------------------
@pytest.mark.parametrize("name", experiments.NAMES)
def test_experiment_rerenders_from_its_written_json(tmp_path, name):
    """``render`` draws from the experiment's JSON document alone: the file ``run`` wrote renders
    again (``rerender``) to the same markdown, and the figure is drawn without recomputing."""
    if name in ("table4", "fig6"):
        pytest.importorskip("torch")  # the paper's optimiser, torch.optim.LBFGS
    backends = {"fig1": None, "fig2": None, "fig3": None}.get(name, ["numpy"])
    out = experiments.run(name, backends=backends, quick=True, outdir=tmp_path, progress=False)
    written = tmp_path / "quick" / f"{name}.json"
    assert written in out.files and (tmp_path / "quick" / f"{name}.md").read_text() == out.markdown.rstrip() + "\n"
    again = experiments.rerender(written, outdir=tmp_path / "again")
    assert again.markdown == out.markdown
    assert json.loads(json.dumps(again.stdout_json)) == json.loads(json.dumps(out.stdout_json, default=float))
    assert [f.name for f in again.files] == [f.name for f in out.files]


def test_rerender_refuses_a_file_that_is_not_an_experiment(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not an experiment's JSON"):
        experiments.rerender(bad)
