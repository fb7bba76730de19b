"""Fig. 6: four torch L-BFGS runs on the discontinuous model (``discontinuous.py``, δx = 3)
drawn over its sawtooth cost: from x0 = 2, 2.29 and 2.8 without line search, and 2.8 with the
strong-Wolfe one (panels a-d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import md_table, pyplot
from .discontinuous import (
    DEFAULT_BACKENDS,
    X_STAR,
    converged,
    cost_curve,
    dtype_of,
    gradients_for,
    make_vg,
    minimise,
    tooth_edges,
)

NAME = "fig6"
TITLE = "Fig. 6: minimisation of the discontinuous cost function"
#: first guesses and whether the strong-Wolfe line search is on (panels a-d)
FIG6_RUNS = ((2.0, False), (2.29, False), (2.8, False), (2.8, True))
FIG6_DX = 3.0
__all__ = ["DEFAULT_BACKENDS", "compute", "render", "summary"]


def compute(*, backends: list[str] | None, quick: bool, progress: bool) -> dict[str, Any]:
    use, skipped = gradients_for(backends)
    if not use:
        raise ValueError("no usable gradient for the discontinuous model")
    runs = []
    for g in use:
        vg = make_vg(g, FIG6_DX)
        for x0, ls in FIG6_RUNS:
            res = minimise(vg, x0, line_search=ls, restart=False, dtype=dtype_of(g))
            runs.append({"gradient": g, "x0": x0, "line_search": ls, "final_x0": float(res.x[0]), "J": res.fun,
                         "iterations": res.nit, "evaluations": res.nfev, "message": res.message,
                         "converged": converged(res), "path": [float(p[0]) for p in res.path]})
    return {"experiment": NAME, "title": TITLE, "dx": FIG6_DX, "x_star": X_STAR, "tooth_edges": tooth_edges(FIG6_DX),
            "runs": runs, "gradients": use, "skipped": skipped}


def figure(data: dict[str, Any]):
    plt = pyplot()
    # the sawtooth is the model's own closed form (the background, not a result)
    grid = np.linspace(-0.6, 3.1, 3701)
    curve = cost_curve(grid, FIG6_DX)
    main = [r for r in data["runs"] if r["gradient"] == data["gradients"][0]]
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
    fig.suptitle(f"Discontinuous model (δx = {FIG6_DX:g}), torch L-BFGS with gradient `{data['gradients'][0]}`; "
                 f"dotted: global minimiser {X_STAR:.4f}", fontsize=10)
    fig.tight_layout()
    return fig


def render(data: dict[str, Any]) -> tuple[str, Any]:
    header = ["gradient", "x0", "line search", "final x0", "J", "L-BFGS iterations", "evaluations", "global min?"]
    runs, edges = data["runs"], data["tooth_edges"]
    md = [f"# {data['title']}\n", f"δx = {FIG6_DX:g} (f2 = x - 4), torch L-BFGS as in Tbl. 4, no restart. Bottoms of "
          "the sawtooth's teeth (x0 with x_k = 1 for k = 1, 2, 3): " + ", ".join(f"{e:.5f}" for e in edges) + ".\n",
          md_table(header, [[r["gradient"], r["x0"], "strong Wolfe" if r["line_search"] else "none",
                             f"{r['final_x0']:.6g}", f"{r['J']:.3g}", r["iterations"], r["evaluations"],
                             r["converged"]] for r in runs]),
          "\nPaper: from x0 = 2 and 2.29 the line search makes no difference; from x0 = 2.8 one of the two runs "
          "stalls at x0 = 1.797 from the 4th step on (the text says without line search, Fig. 6 shows the "
          "strong-Wolfe run in panel d)."]
    if data["skipped"]:
        md.append("\nSkipped: " + "; ".join(f"`{k}`: {v}" for k, v in data["skipped"].items()))
    return "\n".join(md), figure(data)


def summary(data: dict[str, Any]) -> Any:
    return [{k: v for k, v in r.items() if k != "path"} for r in data["runs"]]
