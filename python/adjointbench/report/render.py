"""The Tbl. 3 frame as text: markdown, CSV (raw numbers), LaTeX or HTML."""

from __future__ import annotations

import math

import pandas as pd

from .. import tables
from .constants import FORMATS, TBL3_ITERATIONS


def fmt_time(seconds: float) -> str:
    """A time with the unit a reader expects (the paper writes 918 us, 92.5 ms, 4.64 s)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            v = seconds / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    return "—"


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns for md/latex/html (CSV keeps the raw numbers)."""
    return pd.DataFrame({
        "source": df["source"],
        "gradient": [b if s == "measured" else f"{k} [{b}]"
                     for s, b, k in zip(df["source"], df["backend"], df["kind"], strict=True)],
        "kind": [k if s == "measured" else "" for s, k in zip(df["source"], df["kind"], strict=True)],
        "driver": df["driver"],
        "hardware": [h if not d else f"{h} [{d}]" for h, d in zip(df["hardware"], df["device"], strict=True)],
        "dtype": df["dtype"],
        f"time, {TBL3_ITERATIONS} evals": df["workload_s"].map(fmt_time),
        "per call": (df["call_us"] * 1e-6).map(fmt_time),
        "compile (cold)": df["compile_s"].map(fmt_time),
        "× fastest": df["ratio"].map(lambda r: f"{r:.3g}" if math.isfinite(r) else "—"),
        "measured": df["measured"],
    })


def _markdown(df: pd.DataFrame) -> str:
    right = [c.startswith(("time", "per call", "compile", "×")) for c in df.columns]
    return tables.markdown(list(df.columns), df.itertuples(index=False), right)


def gradient_display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns of ``gradient_table`` for md/latex/html."""
    return pd.DataFrame({
        "problem": df["problem_label"],
        "gradient": df["backend"],
        "kind": df["kind"],
        "hardware": [f"{h} [{d}]" for h, d in zip(df["hardware"], df["device"], strict=True)],
        "dtype": df["dtype"],
        "per call": df["call_s"].map(fmt_time),
        "× fastest": df["ratio"].map(lambda r: f"{r:.3g}" if math.isfinite(r) else "—"),
        "rounds": df["rounds"],
    })


def format_table(df: pd.DataFrame, fmt: str = "md", display=display_frame) -> str:
    """The Tbl. 3 frame (or another, with its ``display``) as md, csv (raw numbers), latex or html."""
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    shown = display(df)
    if fmt == "md":
        return _markdown(shown)
    if fmt == "latex":
        return tables.latex(list(shown.columns), shown.itertuples(index=False))
    if fmt == "html":
        return shown.to_html(index=False, border=0)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
