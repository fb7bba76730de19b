"""The Tbl. 3 frame as text: markdown, CSV (raw numbers), LaTeX or HTML."""

from __future__ import annotations

import math
import re

import pandas as pd

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
    cells = [list(map(str, df.columns))] + [[str(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(df.columns))]
    right = [c.startswith(("time", "per call", "compile", "×")) for c in df.columns]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
             "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True)) + "|"]
    for row in cells[1:]:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True))
        lines.append("| " + " | ".join(padded) + " |")
    return "\n".join(lines)


def _latex(df: pd.DataFrame) -> str:
    def esc(s: str) -> str:
        return re.sub(r"([&%$#_{}])", r"\\\1", s).replace("µ", r"$\mu$").replace("×", r"$\times$").replace(
            "→", r"$\to$").replace("—", "--")
    lines = [r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\toprule",
             " & ".join(esc(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(str(v)) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


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
        return _latex(shown)
    if fmt == "html":
        return shown.to_html(index=False, border=0)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
