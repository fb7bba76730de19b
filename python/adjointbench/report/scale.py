"""The scaling study's table: time per gradient, x C, gradient/forward ratio, peak memory,
compile and throughput, per case (axis, N, window, ensemble size) and backend x device x dtype.
"""

from __future__ import annotations

import math

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
