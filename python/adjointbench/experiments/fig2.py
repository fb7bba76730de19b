"""Fig. 2: the Rosenbrock function (1 - x)^2 + 100 (y - x^2)^2 from (-1, -1) by Gauss-Newton.

As least squares, r(x, y) = (1 - x, 10 (y - x^2)); its Jacobian comes from the complex step
(eq. 24; backend ``complex-step``), forward differences (``fd``) or by hand (``numpy``).
r is square and the Jacobian invertible, so Gauss-Newton is Newton's method on r = 0: the
first step solves the linear part exactly (x = 1), the second the quadratic one (y = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import derivatives, optimize
from . import md_table, pyplot, skipped_md

NAME = "fig2"
TITLE = "Fig. 2: Rosenbrock function from (-1, -1) by Gauss-Newton"
START = (-1.0, -1.0)
METHODS = ("complex-step", "fd", "numpy")
DEFAULT_BACKENDS = ["complex-step", "fd", "numpy"]
PAPER_STEPS = 2


def residual(p: Any) -> np.ndarray:
    x, y = p[0], p[1]
    return np.array([1 - x, 10 * (y - x * x)])


def rosenbrock(x: Any, y: Any) -> Any:
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def analytic_jacobian(p: np.ndarray) -> np.ndarray:
    return np.array([[-1.0, 0.0], [-20.0 * p[0], 10.0]])


def forward_difference_jacobian(p: np.ndarray) -> np.ndarray:
    """The residual's Jacobian by forward differences (h_k = sqrt(eps) max(1, |p_k|))."""
    return derivatives.forward_difference_jacobian(residual, p)


def jacobian_for(method: str) -> Callable[[np.ndarray], np.ndarray] | None:
    return {"complex-step": None, "fd": forward_difference_jacobian, "numpy": analytic_jacobian}[method]


def solve(method: str = "complex-step", tol: float = 1e-10) -> optimize.OptimizeResult:
    return optimize.gauss_newton(residual, START, jacobian=jacobian_for(method), tol=tol)


def compute(*, backends: list[str] | None, quick: bool, progress: bool) -> dict[str, Any]:
    chosen = list(backends or DEFAULT_BACKENDS)
    skipped = {b: "Fig. 2 has Jacobians by complex-step, fd and numpy (by hand) only" for b in chosen if b not in METHODS}
    methods = [b for b in chosen if b in METHODS] or ["complex-step"]
    rows = []
    for m in methods:
        r = solve(m)
        rows.append({"jacobian": m, "steps": r.nit, "x": float(r.x[0]), "y": float(r.x[1]), "f": float(rosenbrock(*r.x)),
                     "path": [list(map(float, p)) for p in r.path]})
    return {"experiment": NAME, "title": TITLE, "start": list(START), "rows": rows, "paper_steps": PAPER_STEPS,
            "skipped": skipped}


def figure(data: dict[str, Any]):
    main = data["rows"][0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    # the background is the problem's own definition, not a result
    xs, ys = np.meshgrid(np.linspace(-1.6, 1.6, 400), np.linspace(-3.5, 2.0, 400))
    levels = [0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000]
    cs = ax.contour(xs, ys, rosenbrock(xs, ys), levels=levels, colors="0.55", linewidths=0.8)
    ax.clabel(cs, fontsize=7, fmt="%g")
    path = np.array(main["path"])
    ax.plot(path[:, 0], path[:, 1], "-o", color="tab:blue", ms=6, lw=1.5)
    for i, (px, py) in enumerate(path):
        ax.annotate(str(i), (px, py), textcoords="offset points", xytext=(6, 4), color="tab:blue", fontsize=11,
                    fontweight="bold")
    ax.plot([1], [1], "r+", ms=14, mew=2, label="minimum (1, 1)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"Gauss–Newton with {main['jacobian']} derivatives: {main['steps']} steps", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def render(data: dict[str, Any]) -> tuple[str, Any]:
    table = md_table(["Jacobian", "steps", "iterates", "final f"], [
        [r["jacobian"], r["steps"], " → ".join(f"({p[0]:.6g}, {p[1]:.6g})" for p in r["path"]), f"{r['f']:.1e}"]
        for r in data["rows"]])
    markdown = "\n".join([f"# {data['title']}\n", table, f"\nPaper: converges in {data['paper_steps']} steps with CSDA "
                          "derivatives (as with analytic ones)."])
    return markdown + skipped_md(data["skipped"]), figure(data)


def summary(data: dict[str, Any]) -> Any:
    return data["rows"]
