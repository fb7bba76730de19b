"""Benchmark results: the machine context, loading pytest-benchmark JSON, the Tbl. 3 table.

One module per job:

* ``constants`` — groups, statistics, formats: what the CLI needs to build its parser;
* ``context``   — the machine a run comes from (standard library only);
* ``store``     — reading runs (pytest-benchmark JSON) into one long-form row per benchmark;
* ``table``     — the paper's Tbl. 3 shape from those rows, the paper's published rows beside ours;
* ``render``    — the Tbl. 3 frame as md, csv, latex or html;
* ``scale``     — the scaling study's table (time, x C, gradient/forward, memory vs N, window, B);
* ``regression``— time ratios to a reference backend against a baseline.

``load(paths)`` returns the Tbl. 3 table (gradient method x hardware -> time for the workload
of 101 value-and-gradient evaluations of steepest descent), with the per-call time, the
cold-start compile time and the ratio to the fastest backend of the same run, and the paper's
published rows beside ours (``source == "paper"``).

``constants`` and ``context`` are imported with the package; the modules that need pandas
(the ``bench`` extra) only when one of their names is first used (``report.load`` etc.), so
``from adjointbench import report`` works in the core install (NumPy only).
"""

from __future__ import annotations

import importlib
from typing import Any

from .constants import FEW_ROUNDS, FORMATS, GROUPS, STATS, TBL3_ITERATIONS
from .context import VERSIONED, gpu_names, machine_context, machine_context_cached, slug, versions

#: public name -> module (needing pandas) that defines it, imported on first use
_LAZY = {
    **dict.fromkeys(("result_files", "run_records", "load_results", "is_yardstick"), "store"),
    **dict.fromkeys(("PAPER_TBL3", "TABLE_COLUMNS", "tbl3", "paper_rows", "load", "GRADIENT_COLUMNS",
                     "gradient_table"), "table"),
    **dict.fromkeys(("fmt_time", "display_frame", "gradient_display_frame", "format_table"), "render"),
    **dict.fromkeys(("SCALE_COLUMNS", "scale_table", "scale_display_frame", "fmt_bytes", "scale_targets"), "scale"),
    **dict.fromkeys(("REGRESS_KEYS", "JITTER_ROOM_MAX", "ratios", "regress"), "regression"),
}


def __getattr__(name: str) -> Any:
    """PEP 562: the pandas-backed names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "FEW_ROUNDS", "FORMATS", "GROUPS", "STATS", "TBL3_ITERATIONS", "VERSIONED", "gpu_names", "machine_context",
    "machine_context_cached", "slug", "versions", *_LAZY,
]


def __dir__() -> list[str]:
    return sorted(__all__)
