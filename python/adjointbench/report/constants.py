"""Names the CLI needs to build its parser: importable without pandas (the core install)."""

from __future__ import annotations

from ..workload import TBL3_ITERATIONS

#: benchmark groups of bench/ (``extra_info["group"]``)
GROUPS = ("gradient", "tbl3", "compile", "scale")
#: the problems bench/'s gradient group times unless --ab-problem says otherwise: the paper's
#: Lorenz-63 (Tbl. 3's per-call column) and the standard Lorenz-96 at N = 40
BENCH_DEFAULT_PROBLEMS = ("paper", "lorenz96:n=40,nsteps=40")
#: statistics over rounds a table can show
STATS = ("min", "median", "mean")
#: output formats of ``format_table``
FORMATS = ("md", "csv", "latex", "html")
#: rows timed in fewer rounds than this (seconds-long calls such as JAX without JIT) have no
#: minimum worth the name on a shared machine: ``regress`` gives them ``few_rounds_threshold``
FEW_ROUNDS = 5

__all__ = ["BENCH_DEFAULT_PROBLEMS", "FEW_ROUNDS", "FORMATS", "GROUPS", "STATS", "TBL3_ITERATIONS"]
