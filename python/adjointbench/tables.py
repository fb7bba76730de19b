"""Text tables, written once and by pandas: markdown (``DataFrame.to_markdown``, tabulate's
pipe format) and LaTeX (``Styler.to_latex``, every special character escaped).

The report (Tbl. 3, the gradient and scaling tables) and the experiments' markdown both call
these; cells are shown exactly as given (``str``), numbers never re-formatted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: characters LaTeX cannot take in text, after Styler's escaping of \ & % $ # _ { } ~ ^
_LATEX_SYMBOLS = {"µ": r"\textmu{}", "×": r"\texttimes{}", "→": r"\textrightarrow{}", "—": "--", "±": r"\textpm{}"}


def _frame(header: Sequence[str], rows: Iterable[Sequence[Any]]):
    import pandas as pd

    cells = [["" if v is None else str(v) for v in row] for row in rows]
    return pd.DataFrame(cells, columns=[str(h) for h in header], dtype=object)


def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """A GitHub markdown table; ``right`` marks right-aligned columns (default: all left)."""
    df = _frame(header, rows)
    df = df.apply(lambda col: col.str.replace("|", r"\|", regex=False))
    align = tuple("right" if r else "left" for r in (right or [False] * len(df.columns)))
    return df.to_markdown(index=False, disable_numparse=True, colalign=align)


def latex(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A booktabs tabular; text escaped for LaTeX (Styler's ``escape="latex"``, plus µ × → — ±)."""
    df = _frame(header, rows)
    styler = df.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    out = styler.to_latex(hrules=True, column_format="l" * len(df.columns))
    for sym, tex in _LATEX_SYMBOLS.items():
        out = out.replace(sym, tex)
    return out.rstrip("\n")
