"""The scaling study's table: time per gradient, x C, gradient/forward ratio, peak memory,
compile and throughput, per case (axis, N, window, ensemble size) and backend x device x dtype.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .constants import STATS

#: columns of the frame returned by ``scale_table``
SCALE_COLUMNS = (
    "axis", "model", "n", "nsteps", "batch", "backend", "kind", "idiom", "hardware", "device", "devices", "dtype", "grad_s",
    "per_member_s", "x_c", "cost_s", "ratio", "peak_bytes", "peak_x_trajectory", "trajectory_bytes",
    "device_peak_bytes", "compile_s", "throughput", "rounds", "problem", "machine", "run",
)
AXES = ("state", "window", "ensemble", "shard")


def scale_table(results: pd.DataFrame, *, stat: str = "min") -> pd.DataFrame:
    """One row per run x case x backend x device x dtype of the ``scale`` group.

    grad_s: one value-and-gradient call (a whole batch for ensembles); per_member_s = grad_s / B;
    x_c: grad_s over the plain-C yardstick's on the same case in the same run; cost_s: the
    forward-only J (the whole batch's for ensembles); ratio = gradient / forward (the
    cheap-gradient ratio; for an ensemble only where its forward ran by the gradient's batch idiom);
    peak_bytes: one call's peak resident memory above what was resident before it,
    peak_x_trajectory: that over the stored trajectory (what a hand adjoint must keep);
    compile_s: prepare() + first call, in process; throughput: gradients per second.
    """
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; expected one of {', '.join(STATS)}")
    g = results[results["group"] == "scale"].copy()
    if g.empty:
        raise ValueError("no scale results (run `adjointbench bench --scale`)")
    g["grad_s"] = g[stat]
    g["batch"] = g["batch"].fillna(0).astype(int)
    members = g["batch"].clip(lower=1)
    g["per_member_s"] = g["grad_s"] / members
    # single problems: one gradient over one forward; ensembles: the batch's gradient over the batch's
    # forward, only when both ran by the same idiom (a threaded gradient over a forward loop is no ratio)
    same = g["batch"].eq(0) | g["cost_idiom"].eq(g["batch_idiom"])
    g["ratio"] = (g["grad_s"] / g["cost_s"]).where(same)
    g["peak_x_trajectory"] = g["peak_bytes"] / g["trajectory_bytes"]
    g["compile_s"] = g["prepare_s"] + g["first_call_s"]
    g["throughput"] = members / g["grad_s"]
    g["idiom"] = g["batch_idiom"].where(g["batch"] > 0, "")
    c = g[g["yardstick"].eq(True)].groupby(["run", "problem"])["grad_s"].min().rename("c_s")
    g = g.join(c, on=["run", "problem"])
    g["x_c"] = g["grad_s"] / g["c_s"]
    g["axis"] = pd.Categorical(g["axis"], categories=list(AXES), ordered=True)
    g = g.sort_values(["machine", "axis", "model", "batch", "nsteps", "n", "devices", "grad_s"], kind="stable")
    g["axis"] = g["axis"].astype(str)
    return g[list(SCALE_COLUMNS)].reset_index(drop=True)


def fmt_bytes(b: float) -> str:
    if b is None or not isinstance(b, (int, float)) or not math.isfinite(b):
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def scale_display_frame(df: pd.DataFrame) -> pd.DataFrame:
    from .render import fmt_time

    def num(v: float, spec: str = ".3g") -> str:
        return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "—"

    def case(r) -> str:
        if r.axis == "ensemble":
            return f"{r.model} B={r.batch}" + (f" N={int(r.n)}" if r.model == "lorenz96" else "")
        return f"N={int(r.n)} K={int(r.nsteps)}"

    return pd.DataFrame({
        "axis": df["axis"],
        "case": [case(r) for r in df.itertuples()],
        "gradient": [b if not i else f"{b} ({i})" for b, i in zip(df["backend"], df["idiom"], strict=True)],
        "hardware": [f"{h} [{d}{f' ×{k} devices' if k > 1 else ''}]"
                     for h, d, k in zip(df["hardware"], df["device"], df["devices"], strict=True)],
        "dtype": df["dtype"],
        "time / gradient": df["per_member_s"].map(fmt_time),
        "× C": df["x_c"].map(num),
        "grad / fwd": df["ratio"].map(lambda v: num(v, ".2f")),
        "peak memory": df["peak_bytes"].map(fmt_bytes),
        "× trajectory": df["peak_x_trajectory"].map(lambda v: num(v, ".2f")),
        "compile": df["compile_s"].map(fmt_time),
        "gradients / s": df["throughput"].map(lambda v: num(v, ".3g")),
    })


#: the scaling study's performance targets: the largest time per gradient, as a multiple of the
#: plain-C yardstick on the same case, per backend (CPU, N >= TARGET_N)
X_C_TARGETS = {"numba": 1.5, "cython": 1.5, "enzyme": 1.5, "jax": 2.0, "torch": 5.0, "numpy": 4.0}
#: the cheap-gradient bound every compiled backend (``Backend.compiled``) is held to: gradient / forward
RATIO_TARGET = 4.0
#: the peak memory of a hand adjoint's gradient over the trajectory it must store
MEMORY_TARGET = 1.5
#: the smallest state size the targets are read at (dispatch no longer dominates there)
TARGET_N = 40_000
TARGET_COLUMNS = ("machine", "target", "backend", "bound", "measured", "at N", "met")


def _sizes(n) -> str:
    """State sizes as 4e4, 4e5 (mantissa e exponent, no plus sign or zero padding)."""
    def one(k: int) -> str:
        m, e = f"{k:.0e}".split("e")
        return f"{m}e{int(e)}" if float(m) * 10 ** int(e) == k else str(k)
    return ", ".join(one(int(k)) for k in n)


def scale_targets(table: pd.DataFrame) -> pd.DataFrame:
    """Where each performance target stands, from ``scale_table``'s rows: one row per machine x
    target x backend, with the measured range over the state-size cases at N >= ``TARGET_N`` on
    the CPU in float64 and whether every such case meets it ("yes", "no", or "at N = ..." for the
    sizes that do).  A backend with no such case has no row."""
    from ..backends import all_backends

    compiled = {b.name for b in all_backends() if b.compiled}
    s = table[table["axis"].eq("state") & table["device"].eq("cpu") & table["dtype"].eq("float64")
              & (table["n"] >= TARGET_N) & ~table["kind"].astype(str).str.startswith("yardstick")]
    rows: list[dict] = []

    def add(machine: str, target: str, backend: str, bound: float, part: pd.DataFrame, col: str) -> None:
        part = part[np.isfinite(pd.to_numeric(part[col], errors="coerce").to_numpy(float))].sort_values("n")
        if part.empty:
            return
        v, n = part[col].to_numpy(float), part["n"].astype(int).to_numpy()
        ok = v <= bound
        lo, hi = f"{v.min():.3g}", f"{v.max():.3g}"
        met = "yes" if ok.all() else "no" if not ok.any() else "at N = " + _sizes(n[ok])
        rows.append({"machine": machine, "target": target, "backend": backend, "bound": f"≤ {bound:g}",
                     "measured": lo if lo == hi else f"{lo}–{hi}", "at N": _sizes(n), "met": met})

    for machine, m in s.groupby("machine", sort=False):
        for backend, bound in X_C_TARGETS.items():
            add(machine, "time / C", backend, bound, m[m["backend"].eq(backend)], "x_c")
        for backend in sorted(set(m["backend"]) & compiled):
            add(machine, "gradient / forward", backend, RATIO_TARGET, m[m["backend"].eq(backend)], "ratio")
        hand = m[m["kind"].astype(str).str.startswith("hand adjoint")]
        for backend in sorted(hand["backend"].unique()):
            add(machine, "peak memory / trajectory", backend, MEMORY_TARGET, hand[hand["backend"].eq(backend)],
                "peak_x_trajectory")
    return pd.DataFrame(rows, columns=list(TARGET_COLUMNS))
