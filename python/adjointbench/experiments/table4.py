"""Tbl. 4 and Fig. 6: 4D-Var of the discontinuous model of Zhang et al. (2000), paper §4.2.

Model, eqs. (26)-(31): dx/dt = f1(x) = 2x - 2 for x < 1, f2(x) = x - (1 + dx) for x >= 1
(dx = 3 gives the paper's f2 = x - 4), forward Euler with dt = 0.1 for 4 steps (eq. 28), and
J(x0) = x(t_R)^2 (eq. 29).  Its gradient (eq. 30) is 2 x4 prod_i (1 + dt f'(x_i)); the paper
prints it without the factor 2, which does not change where it vanishes.

J = 0 needs x4 = 0.  For dx <= 3.5 that happens only with all four steps on the f1 branch,
where x_{n+1} - 1 = 1.2 (x_n - 1): x0* = 1 - 1.2^-4 = 0.51775 (the paper's "global minimum at
0.5").  Away from it J is a sawtooth whose teeth (local minima with non-zero gradient) sit just
right of each x0 that sends some x_i onto the threshold 1.

The gradient comes from the hand adjoint (eq. 30, backend name ``numpy``), torch autograd
(``torch``: Python ``if`` on tensor values, eager) or JAX (``jax``: ``jnp.where`` under ``jit``;
``jax-nojit``: the same, eager); all are defined here because the model is not Lorenz (1963).
The optimiser is torch's L-BFGS as the paper used it (``optimize.lbfgs_torch``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import optimize
from ..workload import VG
from . import Outcome, md_table, pyplot, write

NAME = "table4"
TITLE = "Tbl. 4: convergence to the global minimum of the discontinuous model"
FIG6_TITLE = "Fig. 6: minimisation of the discontinuous cost function"

DT = 0.1
NSTEPS = 4
#: the only x0 with x4 = 0 for dx <= 3.5: all four Euler steps on f1 (eq. 26)
X_STAR = 1.0 - 1.2 ** -NSTEPS
#: a run "converged to the global minimum" when its final x0 is this close to X_STAR
CONVERGED_TOL = 1e-6
DXS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5)
X0S = tuple(round(0.01 * k, 2) for k in range(1, 301))
MAX_RESTARTS = 10
#: Fig. 6: first guesses and whether the strong-Wolfe line search is on (panels a-d)
FIG6_RUNS = ((2.0, False), (2.29, False), (2.8, False), (2.8, True))
FIG6_DX = 3.0

#: the paper's Tbl. 4 (copied from its text): (restart, line search) -> counts per dx, of 300
PAPER = {
    (False, False): (300, 300, 300, 299, 300, 298, 300, 300, 299, 300, 299),
    (False, True): (300, 300, 300, 293, 299, 275, 283, 280, 273, 274, 266),
    (True, False): (300, 300, 300, 300, 300, 300, 300, 300, 299, 300, 300),
    (True, True): (300, 300, 300, 300, 300, 300, 300, 300, 300, 298, 290),
}
GRADIENTS = ("numpy", "torch", "jax", "jax-nojit", "torch-float32")
#: each gradient of the discontinuous model is written with a backend's tool, in a precision that
#: backend supports: the backend's own ``available()`` and ``dtypes`` decide whether it runs here
TOOL = {"numpy": ("numpy", "float64"), "torch": ("torch", "float64"), "jax": ("jax", "float64"),
        "jax-nojit": ("jax-nojit", "float64"), "torch-float32": ("torch", "float32")}
#: torch-float32: model and optimizer in single precision, to show which cells depend on rounding
DEFAULT_BACKENDS = ["numpy", "torch", "jax", "torch-float32"]



# ---- the model and its hand adjoint -------------------------------------------------------
def tendency(x: float, dx: float) -> float:
    """Eqs. (26)/(31): the switch at x = 1."""
    return 2.0 * x - 2.0 if x < 1.0 else x - (1.0 + dx)


def forward(x0: float, dx: float) -> list[float]:
    """States x_0..x_4 of eq. (27)."""
    xs = [float(x0)]
    for _ in range(NSTEPS):
        xs.append(xs[-1] + DT * tendency(xs[-1], dx))
    return xs


def cost(x0: float, dx: float) -> float:
    return forward(x0, dx)[-1] ** 2


def hand_gradient(x0: float, dx: float) -> float:
    """Eq. (30) with its factor 2: dJ/dx0 = 2 x4 prod_i (1 + dt f'(x_i)), f' = 2 or 1."""
    xs = forward(x0, dx)
    prod = 1.0
    for x in xs[:-1]:
        prod *= 1.0 + DT * (2.0 if x < 1.0 else 1.0)
    return 2.0 * xs[-1] * prod


def cost_curve(x0: np.ndarray, dx: float) -> np.ndarray:
    """J on an array of first guesses (vectorised, for plotting the sawtooth)."""
    x = np.asarray(x0, dtype=np.float64).copy()
    for _ in range(NSTEPS):
        x = x + DT * np.where(x < 1.0, 2.0 * x - 2.0, x - (1.0 + dx))
    return x * x


def tooth_edges(dx: float) -> list[float]:
    """First guesses x0 > 1 whose k-th state (k = 1..3) lands exactly on the switch x_k = 1.

    Just right of each, J jumps down (the state there takes the f2 branch one step longer), so
    each is the bottom of a tooth of the sawtooth: a local minimum where the gradient is not 0.
    """
    edges = []
    for k in range(1, NSTEPS):
        x = 1.0
        for _ in range(k):
            x = (x + DT * (1.0 + dx)) / (1.0 + DT)  # inverse of an Euler step on f2
        edges.append(x)
    return edges


def hand_vg(dx: float) -> VG:
    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        x0 = float(np.asarray(u).reshape(-1)[0])
        return cost(x0, dx), np.array([hand_gradient(x0, dx)])

    return vg


# ---- AD versions: the same model written for torch and JAX --------------------------------
def torch_vg(dx: float, dtype: str = "float64") -> VG:
    """torch autograd through Python control flow (the switch is an ``if`` on the value);
    ``float32`` is torch's (and torch for R's) default dtype."""
    import torch

    from ..backends.torch_ad import torch_dtype

    tdtype = torch_dtype(dtype)

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        x0 = torch.tensor(float(np.asarray(u).reshape(-1)[0]), dtype=tdtype, requires_grad=True)
        x = x0
        for _ in range(NSTEPS):
            x = x + DT * (2.0 * x - 2.0 if x.item() < 1.0 else x - (1.0 + dx))
        J = x * x
        (g,) = torch.autograd.grad(J, x0)
        return float(J.detach()), np.array([float(g)], dtype=dtype)

    return vg


def _jax_value_and_grad(dx: float, jit: bool):
    """value_and_grad of eq. (29); trace and call it inside ``jax.enable_x64(True)`` (jax_vg)."""
    import jax
    import jax.numpy as jnp

    def J(x0):
        x = x0
        for _ in range(NSTEPS):
            x = x + DT * jnp.where(x < 1.0, 2.0 * x - 2.0, x - (1.0 + dx))
        return x * x

    f = jax.value_and_grad(J)
    return jax.jit(f) if jit else f


def jax_vg(dx: float, jit: bool = True) -> VG:
    """JAX: the switch as ``jnp.where`` (both branches evaluated, the chosen one differentiated).

    float64 through the thread-local ``jax.enable_x64(True)`` context around each call (tracing
    happens in the first one), as the jax backends do (``backends/_jax_model.py``): the
    process-wide ``jax_enable_x64`` flag, and with it the user's own JAX code, is left alone.
    """
    import jax
    import jax.numpy as jnp

    f = _jax_value_and_grad(dx, jit)

    def vg(u: np.ndarray) -> tuple[float, np.ndarray]:
        with jax.enable_x64(True):
            J, g = f(jnp.float64(float(np.asarray(u).reshape(-1)[0])))
            return float(J), np.array([float(g)])

    return vg


def make_vg(gradient: str, dx: float) -> VG:
    if gradient == "numpy":
        return hand_vg(dx)
    if gradient == "torch":
        return torch_vg(dx)
    if gradient == "torch-float32":
        return torch_vg(dx, "float32")
    if gradient == "jax":
        return jax_vg(dx, jit=True)
    if gradient == "jax-nojit":
        return jax_vg(dx, jit=False)
    raise ValueError(f"no discontinuous-model gradient {gradient!r}; expected one of {', '.join(GRADIENTS)}")


def unavailable(gradient: str) -> str | None:
    """Why ``gradient`` cannot be used here (None when it can): its backend's own verdict."""
    from ..backends import backend

    if gradient not in TOOL:
        return f"the discontinuous model has gradients {', '.join(GRADIENTS)} only"
    name, dtype = TOOL[gradient]
    b = backend(name)
    ok, why = b.available()
    if not ok:
        return why
    if dtype not in b.dtypes:
        return f"backend {name!r} supports dtype {', '.join(b.dtypes)}, not {dtype}"
    return None


def gradients_for(requested: list[str] | None) -> tuple[list[str], dict[str, str]]:
    from ..backends import backend, names

    ok, why = backend("torch").available()
    if not ok:
        raise ValueError(f"Tbl. 4 and Fig. 6 use torch.optim.LBFGS (the paper's optimiser), and torch is unavailable: {why}")

    if requested:
        known = set(names()) | set(GRADIENTS)
        for n in requested:
            if n not in known:
                raise ValueError(f"unknown backend {n!r}; the discontinuous model has {', '.join(GRADIENTS)}")
    use, skipped = [], {}
    for n in requested or DEFAULT_BACKENDS:
        reason = unavailable(n)
        if reason:
            skipped[n] = reason
        elif n not in use:
            use.append(n)
    return use, skipped


# ---- the optimisation ---------------------------------------------------------------------
def minimise(vg: VG, x0: float, *, line_search: bool, restart: bool, dtype: str = "float64") -> optimize.OptimizeResult:
    """torch L-BFGS as in the paper; ``restart``: up to 10 restarts from steepest descent."""
    return optimize.lbfgs_torch(vg, [x0], line_search=line_search, restarts=MAX_RESTARTS if restart else 0,
                                dtype=dtype)


def dtype_of(gradient: str) -> str:
    """The precision of the model and the optimiser for ``gradient`` (``TOOL``)."""
    return TOOL[gradient][1] if gradient in TOOL else "float64"


def converged(res: optimize.OptimizeResult) -> bool:
    return abs(float(res.x[0]) - X_STAR) <= CONVERGED_TOL


def sweep(gradient: str, x0s: tuple[float, ...], dxs: tuple[float, ...], progress: bool) -> list[dict[str, Any]]:
    """Tbl. 4: count runs that reach X_STAR for every (restart, line search, dx) cell."""
    from tqdm import tqdm

    cells = []
    bar = tqdm(total=4 * len(dxs) * len(x0s), desc=f"Tbl. 4 sweep ({gradient})", disable=not progress,
               unit="run", mininterval=1.0)
    for restart in (False, True):
        for line_search in (False, True):
            for dx in dxs:
                vg = make_vg(gradient, dx)
                n = 0
                for x0 in x0s:
                    n += converged(minimise(vg, x0, line_search=line_search, restart=restart,
                                            dtype=dtype_of(gradient)))
                    bar.update()
                cells.append({"restart": restart, "line_search": line_search, "dx": dx, "converged": n,
                              "total": len(x0s), "gradient": gradient})
    bar.close()
    return cells


def gradient_agreement(gradients: list[str], x0s: tuple[float, ...], dxs: tuple[float, ...]) -> dict[str, float]:
    """Max-norm relative difference (as ``verify.relative_error``) of each AD gradient from the
    hand adjoint over the sweep grid, worst over dx (every grid point is differentiable from
    the right: the switch is tested as x < 1)."""
    out = {}
    for g in gradients:
        if g == "numpy":
            continue
        worst = 0.0
        for dx in dxs:
            ad = make_vg(g, dx)
            got = np.array([ad(np.array([x0]))[1][0] for x0 in x0s], dtype=np.float64)
            ref = np.array([hand_gradient(x0, dx) for x0 in x0s])
            worst = max(worst, float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))))
        out[g] = worst
    return out


def _table(cells: list[dict[str, Any]], dxs: tuple[float, ...]) -> list[list[Any]]:
    rows = []
    for restart in (False, True):
        for ls in (False, True):
            counts = {c["dx"]: c["converged"] for c in cells if c["restart"] == restart and c["line_search"] == ls}
            rows.append(["restart" if restart else "no restart", "strong Wolfe" if ls else "no line search",
                         *(counts.get(d) for d in dxs)])
    return rows


def run_table4(*, backends: list[str] | None, quick: bool, outdir: Path, progress: bool) -> Outcome:
    use, skipped = gradients_for(backends)
    if not use:
        raise ValueError("no usable gradient for the discontinuous model: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    x0s = X0S[::10] if quick else X0S
    dxs = (1.0, 3.0, 3.5) if quick else DXS
    results: dict[str, list[dict[str, Any]]] = {}
    timing = {}
    for g in use:
        t0 = time.perf_counter()
        results[g] = sweep(g, x0s, dxs, progress)
        timing[g] = time.perf_counter() - t0
    agreement = gradient_agreement(use, x0s, dxs)
    primary = use[0]
    same = {g: [c["converged"] for c in results[g]] == [c["converged"] for c in results[primary]] for g in use}

    head = ["", "", *(f"δx={d:g}" for d in dxs)]
    md = [f"# {TITLE}\n",
          f"Runs (of {len(x0s)}: x0 = {x0s[0]:g} ... {x0s[-1]:g}) whose final x0 is within {CONVERGED_TOL:g} of the "
          f"global minimiser x0* = 1 - 1.2^-4 = {X_STAR:.6f}. torch.optim.LBFGS (lr 1, max_iter 20, history 100, "
          "tolerance_grad 1e-7, tolerance_change 1e-9), up to 10 steps, stop when the loss changes by < 1e-8; "
          f"'restart': up to {MAX_RESTARTS} fresh optimisers (steepest-descent start) after a stall.\n"]
    for g in use:
        md.append(f"\n## Ours, gradient `{g}` ({timing[g]:.1f} s)\n")
        md.append(md_table(head, _table(results[g], dxs)))
    paper_cells = [{"restart": r, "line_search": ls, "dx": d, "converged": PAPER[(r, ls)][DXS.index(d)], "total": 300}
                   for r in (False, True) for ls in (False, True) for d in dxs]
    md.append("\n## Paper (Tbl. 4, torch for R gradients, of 300)\n")
    md.append(md_table(head, _table(paper_cells, dxs)))
    if not quick:
        diff = [{**c, "converged": c["converged"] - p["converged"]} for c, p in zip(results[primary], paper_cells, strict=True)]
        md.append(f"\n## Ours (`{primary}`) minus paper\n")
        md.append(md_table(head, _table(diff, dxs)))
    md.append("\n## Gradients\n")
    md.append(md_table(["gradient", "max-norm rel. difference from the hand adjoint (eq. 30) on the grid", "same counts as "
                        f"`{primary}`"], [[g, f"{agreement.get(g, 0.0):.1e}" if g != 'numpy' else "(reference)",
                                          same[g]] for g in use]))
    if skipped:
        md.append("\nSkipped: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()))
    markdown = "\n".join(md)
    data = {"experiment": "table4", "title": TITLE, "x_star": X_STAR, "converged_tol": CONVERGED_TOL,
            "x0s": list(x0s), "dxs": list(dxs), "cells": [c for g in use for c in results[g]],
            "paper": paper_cells, "gradient_max_rel_diff": agreement, "same_counts": same, "seconds": timing,
            "skipped": skipped, "quick": quick}
    files = write(outdir, "table4", data, markdown)
    stdout = [c for g in use for c in results[g]]
    return Outcome("table4", data, markdown, stdout, files, skipped)


# ---- Fig. 6 ---------------------------------------------------------------------------------
def run_fig6(*, backends: list[str] | None, quick: bool, outdir: Path, progress: bool) -> Outcome:
    use, skipped = gradients_for(backends)
    if not use:
        raise ValueError("no usable gradient for the discontinuous model")
    plt = pyplot()
    grid = np.linspace(-0.6, 3.1, 3701)
    curve = cost_curve(grid, FIG6_DX)
    runs = []
    for g in use:
        vg = make_vg(g, FIG6_DX)
        for x0, ls in FIG6_RUNS:
            res = minimise(vg, x0, line_search=ls, restart=False, dtype=dtype_of(g))
            runs.append({"gradient": g, "x0": x0, "line_search": ls, "final_x0": float(res.x[0]), "J": res.fun,
                         "iterations": res.nit, "evaluations": res.nfev, "message": res.message,
                         "converged": converged(res), "path": [float(p[0]) for p in res.path]})
    main = [r for r in runs if r["gradient"] == use[0]]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True, sharey=True)
    for ax, r, label in zip(axes.flat, main, "abcd", strict=True):
        ax.plot(grid, curve, color="0.45", lw=1.2, label=r"$J(x_0)=x_4^2$")
        xs = np.array(r["path"])
        # torch evaluates the first guess again at the start of each step: plot each point once
        xs = xs[np.r_[True, np.diff(xs) != 0]]
        js = cost_curve(xs, FIG6_DX)
        ax.plot(xs, js, color="tab:blue", lw=0.8, alpha=0.6)
        ax.scatter(xs, js, color="tab:blue", s=18, zorder=3, label="evaluations (in order)")
        for i, (xv, jv) in enumerate(zip(xs[:12], js[:12], strict=True)):
            ax.annotate(str(i), (xv, jv), textcoords="offset points", xytext=(3, 4), fontsize=7, color="tab:blue")
        ax.scatter([xs[-1]], [cost_curve(xs[-1:], FIG6_DX)[0]], marker="*", s=140, color="tab:red", zorder=4,
                   label=f"final x0 = {r['final_x0']:.4g}")
        ax.axvline(X_STAR, color="tab:green", ls=":", lw=1)
        search = "strong Wolfe" if r["line_search"] else "no line search"
        ax.set_title(f"{label}) x0 = {r['x0']:g}, {search}", fontsize=10)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylim(0, 20)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("$x_0$")
    for ax in axes[:, 0]:
        ax.set_ylabel("J")
    fig.suptitle(f"Discontinuous model (δx = {FIG6_DX:g}), torch L-BFGS with gradient `{use[0]}`; "
                 f"dotted: global minimiser {X_STAR:.4f}", fontsize=10)
    fig.tight_layout()
    header = ["gradient", "x0", "line search", "final x0", "J", "L-BFGS iterations", "evaluations", "global min?"]
    edges = tooth_edges(FIG6_DX)
    md = [f"# {FIG6_TITLE}\n", f"δx = {FIG6_DX:g} (f2 = x - 4), torch L-BFGS as in Tbl. 4, no restart. Bottoms of "
          "the sawtooth's teeth (x0 with x_k = 1 for k = 1, 2, 3): " + ", ".join(f"{e:.5f}" for e in edges) + ".\n",
          md_table(header, [[r["gradient"], r["x0"], "strong Wolfe" if r["line_search"] else "none",
                             f"{r['final_x0']:.6g}", f"{r['J']:.3g}", r["iterations"], r["evaluations"],
                             r["converged"]] for r in runs]),
          "\nPaper: from x0 = 2 and 2.29 the line search makes no difference; from x0 = 2.8 one of the two runs "
          "stalls at x0 = 1.797 from the 4th step on (the text says without line search, Fig. 6 shows the "
          "strong-Wolfe run in panel d)."]
    if skipped:
        md.append("\nSkipped: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()))
    markdown = "\n".join(md)
    data = {"experiment": "fig6", "title": FIG6_TITLE, "dx": FIG6_DX, "x_star": X_STAR, "tooth_edges": edges, "runs": runs,
            "skipped": skipped}
    files = write(outdir, "fig6", data, markdown, fig)
    stdout = [{k: v for k, v in r.items() if k != "path"} for r in runs]
    return Outcome("fig6", data, markdown, stdout, files, skipped)


def run(*, name: str, backends: list[str] | None, quick: bool, outdir: Path, progress: bool) -> Outcome:
    if name == "fig6":
        return run_fig6(backends=backends, quick=quick, outdir=outdir, progress=progress)
    return run_table4(backends=backends, quick=quick, outdir=outdir, progress=progress)


__all__ = ["X_STAR", "cost", "forward", "hand_gradient", "jax_vg", "make_vg", "minimise", "run", "sweep", "torch_vg"]
