"""Fig. 1: relative error of finite differences and the complex step for f(x) = x^(9/2) at x = 1.5.

FD is the forward difference (f(x+h) - f(x))/h, whose error is smallest near the step of
eq. (25), h_opt = 2 |u f(x) / f''(x)|^(1/2) with u = 2^-53 (Gill, Murray & Wright); the central
difference of eq. (22) is drawn too.  The complex step is Im f(x + ih)/h (eq. 24).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import derivatives
from . import md_table, pyplot, skipped_md

NAME = "fig1"
TITLE = "Fig. 1: finite differences vs complex step for f(x) = x^(9/2) at x = 1.5"
X = 1.5
POWER = 4.5
HS = tuple(10.0 ** -k for k in range(1, 21))
#: unit roundoff of float64 as the paper uses it (u ~ 1.11e-16)
U = 2.0 ** -53
#: the paper's estimate of h_opt for this example (§3.2)
PAPER_H_OPT = 1.25e-7
DEFAULT_BACKENDS = ["complex-step", "fd"]
METHODS = ("complex-step", "fd")


def f(x: Any) -> Any:
    return np.power(x, POWER)


def exact_derivative(x: float) -> float:
    return POWER * x ** (POWER - 1)


def h_opt(x: float) -> float:
    """Eq. (25)."""
    f2 = POWER * (POWER - 1) * x ** (POWER - 2)
    return 2.0 * np.sqrt(U * abs(f(x) / f2))


# Fig. 1 studies the textbook quotients with the nominal h, rounding of x + h included (that is
# what loses the derivative at tiny h); ``derivatives.py`` divides by the step actually taken,
# which is right for a gradient but would hide the effect this figure shows
def forward_difference(x: float, h: float) -> float:
    return (f(x + h) - f(x)) / h


def central_difference(x: float, h: float) -> float:
    return (f(x + h) - f(x - h)) / (2 * h)


def complex_step(x: float, h: float) -> float:
    return float(derivatives.complex_step_gradient(lambda v: f(v[0]), [x], h)[0])


def errors() -> list[dict[str, Any]]:
    d = exact_derivative(X)
    rows = []
    for h in HS:
        fd = forward_difference(X, h)
        rows.append({
            "h": h, "fd": fd, "fd_rel_error": abs(fd - d) / abs(d), "fd_lost": bool(f(X + h) == f(X)),
            "central_rel_error": abs(central_difference(X, h) - d) / abs(d),
            "cs_rel_error": abs(complex_step(X, h) - d) / abs(d),
        })
    return rows


def compute(*, backends: list[str] | None, quick: bool, progress: bool) -> dict[str, Any]:
    skipped = {b: "Fig. 1 compares the derivative approximations complex-step and fd only"
               for b in (backends or []) if b not in METHODS}
    return {"experiment": NAME, "title": TITLE, "x": X, "exact": exact_derivative(X), "h_opt": h_opt(X),
            "paper_h_opt": PAPER_H_OPT, "rows": errors(), "skipped": skipped}


def figure(data: dict[str, Any]):
    rows, hopt = data["rows"], data["h_opt"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    hs = np.array([r["h"] for r in rows])

    def masked(key: str, drop: np.ndarray) -> np.ndarray:
        v = np.array([r[key] for r in rows], dtype=float)
        v[drop | (v == 0)] = np.nan  # zero error or a lost derivative cannot be drawn on log axes
        return v

    lost = np.array([r["fd_lost"] for r in rows])
    ax.loglog(hs, masked("fd_rel_error", lost), "o-", color="tab:orange", label="FD (forward)")
    ax.loglog(hs, masked("central_rel_error", np.zeros_like(lost)), "s--", color="tab:orange", alpha=0.45,
              ms=4, label="FD (central, eq. 22)")
    ax.loglog(hs, masked("cs_rel_error", np.zeros_like(lost)), "^-", color="tab:blue", label="CSDA (eq. 24)")
    ax.axvline(hopt, color="k", ls=":", lw=1)
    ax.text(hopt, 3e-1, f" $h_{{opt}}$ eq. (25)\n = {hopt:.2g}", fontsize=8, va="top")
    ax.axvline(data["paper_h_opt"], color="0.6", ls="--", lw=1)
    ax.text(data["paper_h_opt"], 1e-3, f" paper's\n $h_{{opt}}$ = {data['paper_h_opt']:.3g}", fontsize=8, color="0.4")
    ax.set_xlabel("h")
    ax.set_ylabel("relative error")
    ax.set_xlim(3e-21, 0.3)
    ax.invert_xaxis()
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(r"$f(x)=x^{9/2}$ at $x=1.5$: missing points are exact (CSDA) or $f(x+h)=f(x)$ (FD)", fontsize=9)
    fig.tight_layout()
    return fig


def render(data: dict[str, Any]) -> tuple[str, Any]:
    rows, hopt = data["rows"], data["h_opt"]
    best = min((r for r in rows if not r["fd_lost"]), key=lambda r: r["fd_rel_error"])
    table = md_table(["h", "FD forward", "FD central", "CSDA"], [
        [f"1e-{round(-np.log10(r['h']))}", "lost (f(x+h) = f(x))" if r["fd_lost"] else f"{r['fd_rel_error']:.2e}",
         f"{r['central_rel_error']:.2e}", f"{r['cs_rel_error']:.2e}"] for r in rows])
    markdown = "\n".join([
        f"# {data['title']}\n", "Relative error of the derivative 4.5 x^3.5 (exact: "
        f"{data['exact']:.15g}).\n", table,
        f"\nh_opt of eq. (25) with u = 2^-53: **{hopt:.3g}** (paper: {data['paper_h_opt']:g}). Smallest forward-difference "
        f"error at h = {best['h']:g} ({best['fd_rel_error']:.1e}); the paper notes the error already grows at "
        "h = 1e-7, which fits our h_opt (the paper's 1.25e-7 looks like 2 sqrt(u) |f(x)| rather than eq. (25)).",
        f"\nForward FD loses the derivative (f(x+h) = f(x)) for h <= {max(r['h'] for r in rows if r['fd_lost']):g} "
        "(paper: h <= 1e-16). CSDA agrees with the exact value to "
        f"{max(r['cs_rel_error'] for r in rows if r['h'] <= 1e-8):.1e} for every h <= 1e-8 and exactly at h = "
        + ", ".join(f"{r['h']:g}" for r in rows if r["cs_rel_error"] == 0)
        + " (paper: exact at 1e-8, 1e-9, 1e-19; which h land exactly depends on the rounding of the complex power).",
    ])
    return markdown + skipped_md(data["skipped"]), figure(data)


def summary(data: dict[str, Any]) -> Any:
    return data["rows"]
