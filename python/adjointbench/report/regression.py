"""Regression tracking: each benchmark's time over a reference backend's in the same run,
compared with the same ratio in a baseline (the speed of the machine cancels)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .constants import FEW_ROUNDS

REGRESS_KEYS = ["group", "problem", "backend", "driver", "device", "devices", "dtype"]


def ratios(results: pd.DataFrame, reference: str, groups: Sequence[str] = ("gradient", "tbl3", "scale")) -> pd.DataFrame:
    """Each benchmark's min time (per workload iteration) over the reference backend's, same run.

    The reference time is the probe taken right beside each benchmark when the run has one for
    this reference (bench/ times the reference's gradient call before and after every
    benchmark, so the load of a shared machine at that moment cancels); otherwise the
    reference backend's own Python-driven float64 CPU row of the same group.  ``jitter`` =
    (median - min) / min, a per-row measure of how noisy the ratio is; ``rounds`` the rounds
    behind it.  Several runs: the median ratio of each row.
    """
    rows = []
    sel = results[results["group"].isin(list(groups))]
    for run, g in sel.groupby("run", sort=False):
        for (group, _), gg in g.groupby(["group", "problem"], sort=False):
            probed = (gg["probe_backend"] == reference) & gg["probe_s"].notna()
            ref = gg[(gg["backend"] == reference) & (gg["driver"] == "python") & (gg["device"] == "cpu")
                     & (gg["dtype"] == "float64")]
            if ref.empty and not probed.all():
                raise ValueError(f"run {run}: reference backend {reference!r} has no {group} result")
            if not ref.empty:
                r = ref.iloc[0]
                ref_t, ref_j = r["min"] / r["iterations"], (r["median"] - r["min"]) / r["min"]
            for i, b in gg.iterrows():
                if probed[i]:
                    t, j, how = b["probe_s"], 0.0, "probe"
                else:
                    t, j, how = ref_t, ref_j, "row"
                rows.append({
                    **{k: b[k] for k in REGRESS_KEYS}, "run": run,
                    "ratio": (b["min"] / b["iterations"]) / t,
                    "jitter": (b["median"] - b["min"]) / b["min"] + j, "rounds": int(b["rounds"]), "by": how,
                })
    df = pd.DataFrame.from_records(rows, columns=REGRESS_KEYS + ["run", "ratio", "jitter", "rounds", "by"])
    if df.empty:
        return df
    # several runs (e.g. a baseline of three quick runs): the median run of each row
    agg = df.groupby(REGRESS_KEYS, sort=False).agg(
        run=("run", "first"), ratio=("ratio", "median"), jitter=("jitter", "median"), rounds=("rounds", "min"),
        by=("by", "first"))
    return agg.reset_index()


#: the jitter's extra room is capped, so that a noisy row still fails at threshold + 100%
JITTER_ROOM_MAX = 1.0


def regress(baseline: pd.DataFrame, current: pd.DataFrame, *, reference: str = "numpy",
            threshold: float = 0.25, jitter_weight: float = 1.0, few_rounds_threshold: float = 3.0,
            groups: Sequence[str] = ("gradient", "tbl3", "scale")) -> pd.DataFrame:
    """Compare current ratios with baseline ratios; verdict per benchmark.

    A row regresses when current/baseline - 1 exceeds ``threshold`` plus ``jitter_weight``
    times the rows' own jitter (current and baseline): rows whose rounds scatter widely,
    e.g. microsecond calls on a busy 2-core box, get room in proportion to that scatter.
    That extra room is at most JITTER_ROOM_MAX.  Rows with fewer than FEW_ROUNDS rounds on
    either side use ``few_rounds_threshold`` instead of ``threshold``.
    """
    for name, v in (("threshold", threshold), ("few_rounds_threshold", few_rounds_threshold),
                    ("jitter_weight", jitter_weight)):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {v!r}")
    b = ratios(baseline, reference, groups)
    c = ratios(current, reference, groups)
    m = b.merge(c, on=REGRESS_KEYS, how="outer", suffixes=("_base", "_cur"))
    m["change"] = m["ratio_cur"] / m["ratio_base"] - 1.0
    few = (m["rounds_base"].fillna(FEW_ROUNDS) < FEW_ROUNDS) | (m["rounds_cur"].fillna(FEW_ROUNDS) < FEW_ROUNDS)
    base = few.map({True: max(threshold, few_rounds_threshold), False: threshold})
    room = (jitter_weight * (m["jitter_base"].fillna(0) + m["jitter_cur"].fillna(0))).clip(upper=JITTER_ROOM_MAX)
    m["allowed"] = base + room

    def verdict(r: pd.Series) -> str:
        if r["backend"] == reference:
            return "reference"
        if math.isnan(r["ratio_base"]):
            return "new"
        if math.isnan(r["ratio_cur"]):
            return "missing"
        if r["change"] > r["allowed"]:
            return "REGRESSED"
        if r["ratio_base"] / r["ratio_cur"] - 1.0 > threshold:  # symmetric: 2x faster at threshold 1
            return "improved"
        return "ok"

    m["verdict"] = m.apply(verdict, axis=1) if not m.empty else pd.Series(dtype=str)
    return m[REGRESS_KEYS + ["ratio_base", "ratio_cur", "change", "allowed", "verdict"]]
