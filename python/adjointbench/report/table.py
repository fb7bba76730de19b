"""The Tbl. 3 table: gradient method x hardware -> time for the workload of 101
value-and-gradient evaluations of steepest descent, with the per-call time, the cold-start
compile time, the ratio to the fastest backend of the same run, and the paper's published rows
beside ours (``source == "paper"``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

from .constants import STATS, TBL3_ITERATIONS
from .store import load_results

#: The paper's Tbl. 3 ("Benchmark for the initial state estimation with %timeit"), seconds for
#: the whole workload.  The two Enzyme rows: the text says "on the Mac, Enzyme is 5054x faster
#: than JAX with JIT", and 4.64 s (M1, JAX with JIT) / 918 us = 5054, so 918 us is the M1 and
#: 279 us the Ryzen 5 5600G (as DESIGN.md has it); the table's hardware cell is ambiguous.
PAPER_TBL3: tuple[dict[str, Any], ...] = (
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 92.5e-3},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 263.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 4.64},
    {"method": "Enzyme AD", "backend": "enzyme", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 918e-6,
     "note": "hardware from the text: on the Mac Enzyme is 5054x JAX with JIT (4.64 s / 918 µs)"},
    {"method": "Enzyme AD", "backend": "enzyme", "hardware": "AMD Ryzen 5 5600G 32GB", "workload_s": 279e-6},
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "Colab T4", "workload_s": 1.09},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "Colab T4", "workload_s": 626.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "Colab T4", "workload_s": 117e-3},
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "Colab A100", "workload_s": 641e-3},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "Colab A100", "workload_s": 319.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "Colab A100", "workload_s": 44.8e-3},
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "Colab v6e1 TPU", "workload_s": 162e-3},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "Colab v6e1 TPU", "workload_s": 199.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "Colab v6e1 TPU", "workload_s": 258e-3},
)

#: columns of the Tbl. 3 frame returned by ``load``
TABLE_COLUMNS = (
    "source", "backend", "kind", "driver", "hardware", "device", "dtype", "workload_s", "call_us",
    "compile_s", "ratio", "measured", "machine", "run",
)


def _stat(rows: pd.DataFrame, stat: str) -> float:
    return float(rows[stat].min()) if not rows.empty else math.nan


def tbl3(results: pd.DataFrame, *, stat: str = "min", paper: bool = True) -> pd.DataFrame:
    """Tbl. 3 rows from long-form results: one row per run x backend x driver x device x dtype.

    workload_s: the 101-evaluation descent (scaled by 101/k when only k iterations were
    timed, which ``measured`` says); call_us: one value-and-gradient call (``gradient``
    group; Python-driven rows only); compile_s: cold start, prepare() + first call in a fresh
    process; ratio: workload_s over the smallest workload_s of a backend in the same run (the
    plain-C yardstick is not a backend, so its ratio may be below 1; a run that timed one
    backend row only has no ratio).
    """
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; expected one of {', '.join(STATS)}")
    if "problem" in results:  # Tbl. 3 is the paper's problem; other problems: ``gradient_table``
        results = results[results["problem"] == "paper"]
    rows = []
    floor = []  # per row: the plain-C yardstick, which is not a backend
    keys = ["run", "machine", "backend", "kind", "device", "dtype", "hardware"]
    for key, g in results.groupby(keys, sort=False, dropna=False):
        base = dict(zip(keys, key, strict=True))
        drivers = [d for d in ("python", "fused") if (g["driver"] == d).any()]
        yardstick = bool("yardstick" in g and g["yardstick"].eq(True).any())
        for driver in drivers:
            t = g[(g["group"] == "tbl3") & (g["driver"] == driver)]
            c = g[(g["group"] == "compile") & (g["driver"] == driver)]
            v = g[(g["group"] == "gradient") & (g["driver"] == driver)]
            notes = []
            workload = math.nan
            if not t.empty:
                it = int(t["iterations"].iloc[0])
                workload = _stat(t, stat) * TBL3_ITERATIONS / it
                rounds = int(t["rounds"].iloc[0])
                if "self_timed" in t and t["self_timed"].eq(True).any():
                    notes.append("timed by the C program itself (min over repeats)")
                elif it == TBL3_ITERATIONS:
                    notes.append(f"{stat} of {rounds} round{'s' * (rounds != 1)}")
                else:
                    notes.append(f"{stat} of {rounds}, scaled from {it}/{TBL3_ITERATIONS} iterations")
            call_us = _stat(v, stat) * 1e6
            if not v.empty and t.empty:
                notes.append("no workload timed")
            rows.append({
                **base, "source": "measured", "driver": driver, "workload_s": workload, "call_us": call_us,
                "compile_s": _stat(c, stat), "measured": "; ".join(notes),
            })
            floor.append(yardstick)
    df = pd.DataFrame.from_records(rows, columns=[c for c in TABLE_COLUMNS if c != "ratio"])
    if not df.empty:
        # the C yardstick is a floor, not a backend: ratios are to the fastest backend of the run
        backend_t = df["workload_s"].where(~pd.Series(floor, index=df.index, dtype=bool))
        fastest = backend_t.groupby(df["run"]).transform("min")
        # a run that timed a single backend row has nothing to compare it with: no ratio
        rows_in_run = backend_t.notna().groupby(df["run"]).transform("sum")
        df["ratio"] = (df["workload_s"] / fastest).where(rows_in_run > 1)
    else:
        df["ratio"] = pd.Series(dtype=float)
    if paper:
        df = pd.concat([df, paper_rows()], ignore_index=True) if not df.empty else paper_rows()
    return df[list(TABLE_COLUMNS)].reset_index(drop=True)


def paper_rows() -> pd.DataFrame:
    """The published Tbl. 3, ratio taken within each of the paper's hardware blocks."""
    df = pd.DataFrame.from_records([
        # the paper does not say how its loops were driven: no driver
        {"source": "paper", "backend": r["backend"], "kind": r["method"], "driver": "",
         "hardware": r["hardware"], "device": "", "dtype": "",
         "workload_s": r["workload_s"], "call_us": math.nan, "compile_s": math.nan,
         "measured": "paper Tbl. 3 (%timeit)" + (f"; {r['note']}" if "note" in r else ""),
         "machine": "paper", "run": "paper Tbl. 3"}
        for r in PAPER_TBL3
    ])
    df["ratio"] = df["workload_s"] / df.groupby("hardware")["workload_s"].transform("min")
    return df


def load(paths: Iterable[str | os.PathLike], *, stat: str = "min", paper: bool = True,
         latest: bool = False) -> pd.DataFrame:
    """Result files/folders -> the Tbl. 3 table (measured rows, then the paper's)."""
    return tbl3(load_results(paths, latest=latest), stat=stat, paper=paper)


#: columns of the per-problem gradient frame returned by ``gradient_table``
GRADIENT_COLUMNS = (
    "problem", "problem_label", "model", "n_control", "backend", "kind", "hardware", "device", "dtype", "call_s",
    "ratio", "rounds", "machine", "run",
)


def gradient_table(results: pd.DataFrame, *, stat: str = "min", problems: Iterable[str] | None = None) -> pd.DataFrame:
    """The ``gradient`` group per problem: one value-and-gradient call per backend x device x dtype.

    ``ratio``: the call over the fastest backend's call on the same problem in the same run.
    ``problems`` restricts the problem keys (default: all, the paper's included).
    """
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; expected one of {', '.join(STATS)}")
    g = results[(results["group"] == "gradient") & (results["driver"] == "python")]
    if problems is not None:
        g = g[g["problem"].isin(list(problems))]
    keys = ["run", "machine", "problem", "problem_label", "model", "n_control", "backend", "kind", "device", "dtype",
            "hardware"]
    df = g.groupby(keys, sort=False, dropna=False).agg(call_s=(stat, "min"), rounds=("rounds", "min")).reset_index()
    if df.empty:
        return pd.DataFrame(columns=list(GRADIENT_COLUMNS))
    fastest = df.groupby(["run", "problem"])["call_s"].transform("min")
    count = df.groupby(["run", "problem"])["call_s"].transform("count")
    df["ratio"] = (df["call_s"] / fastest).where(count > 1)
    return df[list(GRADIENT_COLUMNS)].reset_index(drop=True)
