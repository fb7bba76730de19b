"""Tbl. 4: how often torch's L-BFGS reaches the global minimum of the discontinuous model
(``discontinuous.py``, paper §4.2) from 300 first guesses, with and without restarts and the
strong-Wolfe line search, for 11 sizes of the jump δx."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import md_table
from .discontinuous import (
    CONVERGED_TOL,
    DEFAULT_BACKENDS,
    MAX_RESTARTS,
    X_STAR,
    converged,
    dtype_of,
    gradients_for,
    hand_gradient,
    make_vg,
    minimise,
)

NAME = "table4"
TITLE = "Tbl. 4: convergence to the global minimum of the discontinuous model"
DXS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5)
X0S = tuple(round(0.01 * k, 2) for k in range(1, 301))
#: the paper's Tbl. 4 (copied from its text): (restart, line search) -> counts per dx, of 300
PAPER = {
    (False, False): (300, 300, 300, 299, 300, 298, 300, 300, 299, 300, 299),
    (False, True): (300, 300, 300, 293, 299, 275, 283, 280, 273, 274, 266),
    (True, False): (300, 300, 300, 300, 300, 300, 300, 300, 299, 300, 300),
    (True, True): (300, 300, 300, 300, 300, 300, 300, 300, 300, 298, 290),
}
__all__ = ["DEFAULT_BACKENDS", "compute", "render", "summary", "sweep"]


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


def compute(*, backends: list[str] | None, quick: bool, progress: bool) -> dict[str, Any]:
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

    return {"experiment": NAME, "title": TITLE, "x_star": X_STAR, "converged_tol": CONVERGED_TOL,
            "x0s": list(x0s), "dxs": list(dxs), "cells": [c for g in use for c in results[g]],
            "paper": [{"restart": r, "line_search": ls, "dx": d, "converged": PAPER[(r, ls)][DXS.index(d)], "total": 300}
                      for r in (False, True) for ls in (False, True) for d in dxs],
            "gradient_max_rel_diff": agreement, "same_counts": same, "seconds": timing, "gradients": use,
            "skipped": skipped, "quick": quick}


def render(data: dict[str, Any]) -> tuple[str, None]:
    x0s, dxs, use, timing = data["x0s"], data["dxs"], data["gradients"], data["seconds"]
    results = {g: [c for c in data["cells"] if c["gradient"] == g] for g in use}
    primary, paper_cells, agreement, same = use[0], data["paper"], data["gradient_max_rel_diff"], data["same_counts"]
    head = ["", "", *(f"δx={d:g}" for d in dxs)]
    md = [f"# {data['title']}\n",
          f"Runs (of {len(x0s)}: x0 = {x0s[0]:g} ... {x0s[-1]:g}) whose final x0 is within {CONVERGED_TOL:g} of the "
          f"global minimiser x0* = 1 - 1.2^-4 = {X_STAR:.6f}. torch.optim.LBFGS (lr 1, max_iter 20, history 100, "
          "tolerance_grad 1e-7, tolerance_change 1e-9), up to 10 steps, stop when the loss changes by < 1e-8; "
          f"'restart': up to {MAX_RESTARTS} fresh optimisers (steepest-descent start) after a stall.\n"]
    for g in use:
        md.append(f"\n## Ours, gradient `{g}` ({timing[g]:.1f} s)\n")
        md.append(md_table(head, _table(results[g], dxs)))
    md.append("\n## Paper (Tbl. 4, torch for R gradients, of 300)\n")
    md.append(md_table(head, _table(paper_cells, dxs)))
    if not data["quick"]:
        diff = [{**c, "converged": c["converged"] - p["converged"]} for c, p in zip(results[primary], paper_cells, strict=True)]
        md.append(f"\n## Ours (`{primary}`) minus paper\n")
        md.append(md_table(head, _table(diff, dxs)))
    md.append("\n## Gradients\n")
    md.append(md_table(["gradient", "max-norm rel. difference from the hand adjoint (eq. 30) on the grid", "same counts as "
                        f"`{primary}`"], [[g, f"{agreement.get(g, 0.0):.1e}" if g != 'numpy' else "(reference)",
                                          same[g]] for g in use]))
    if data["skipped"]:
        md.append("\nSkipped: " + "; ".join(f"`{k}`: {v}" for k, v in data["skipped"].items()))
    return "\n".join(md), None


def summary(data: dict[str, Any]) -> Any:
    return data["cells"]
