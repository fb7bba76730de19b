"""``adjointbench regress``: has a backend become slower relative to a reference backend?

Each benchmark's minimum time is divided by the reference backend's minimum from the same run
(so the speed of the machine cancels), and compared with the same ratio in the baseline.  A
ratio that grew by more than the threshold, plus the row's own jitter, is a regression.

The defaults are the ones CI uses (a ratio may double, rows timed in fewer than FEW_ROUNDS
rounds may grow fivefold): CI boxes are noisy and need not be the baseline's machine, so the
check catches gross slowdowns, and the documented command works on a fresh clone.
"""

from __future__ import annotations

import argparse

from ..cli import require
from ..report.constants import FEW_ROUNDS, GROUPS

NAME = "regress"
HELP = "compare time ratios (backend / reference backend, same run) with a baseline; exit 1 on regressions"
ORDER = 63


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", nargs="+", required=True, metavar="PATH", help="baseline result files/folders")
    p.add_argument("--current", nargs="+", required=True, metavar="PATH", help="current result files/folders")
    p.add_argument("--threshold", type=float, default=1.0, help="allowed relative growth of a ratio (default 1.0: 2x, as CI)")
    p.add_argument("--reference", default="numpy", metavar="BACKEND",
                   help="backend whose time divides the others' (default numpy)")
    p.add_argument("--jitter-weight", type=float, default=1.0,
                   help="extra room per unit of the rows' (median-min)/min jitter (default 1; 0: none)")
    p.add_argument("--few-rounds-threshold", type=float, default=4.0,
                   help=f"threshold for rows timed in < {FEW_ROUNDS} rounds (seconds-long calls; default 4.0: 5x, as CI)")
    p.add_argument("--group", action="append", choices=GROUPS, metavar="GROUP",
                   help="benchmark group to compare (repeatable; default gradient, tbl3 and scale)")
    p.add_argument("--strict", action="store_true", help="also fail when a baseline row is missing from the current run")


def run(args: argparse.Namespace) -> int:
    require(NAME, "bench", "pandas")
    from .. import report

    groups = args.group or ["gradient", "tbl3", "scale"]
    baseline, current = report.load_results(args.baseline), report.load_results(args.current)
    for what, df in (("baseline", baseline), ("current", current)):
        runs = sorted(set(df.loc[df["group"].isin(groups), "path"]))
        print(f"{what}: {len(runs)} run(s): {', '.join(runs) or '(none in the groups compared)'}")
    verdicts = report.regress(
        baseline, current, reference=args.reference,
        threshold=args.threshold, jitter_weight=args.jitter_weight,
        few_rounds_threshold=args.few_rounds_threshold, groups=groups,
    )
    print(f"time / time of {args.reference} in the same run; threshold +{args.threshold:.0%} plus jitter")
    shown = verdicts.copy()
    for c in ("ratio_base", "ratio_cur"):
        shown[c] = shown[c].map(lambda v: f"{v:.4g}")
    shown["change"] = verdicts["change"].map(lambda v: f"{v:+.1%}" if v == v else "—")
    shown["allowed"] = verdicts["allowed"].map(lambda v: f"+{v:.0%}")
    print(shown.to_string(index=False))
    bad = verdicts[verdicts["verdict"] == "REGRESSED"]
    missing = verdicts[verdicts["verdict"] == "missing"]
    if not missing.empty:
        rows = missing["backend"] + "/" + missing["group"] + "/" + missing["driver"] + "/" + missing["problem"]
        print(f"\nmissing from the current run: {', '.join(rows)}")
    if not bad.empty:
        print("\nREGRESSED: " + ", ".join(
            f"{r.backend} {r.group}/{r.driver} ({r.device}, {r.dtype}) {r.change:+.0%} > +{r.allowed:.0%}"
            for r in bad.itertuples()))
        return 1
    if args.strict and not missing.empty:
        return 1
    print("\nno regression")
    return 0
