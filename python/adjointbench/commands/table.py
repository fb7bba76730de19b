"""``adjointbench table``: result files (several machines merge) as the paper's Tbl. 3."""

from __future__ import annotations

import argparse

from ..cli import require
from ..report.constants import FORMATS, STATS

NAME = "table"
HELP = "print result files/folders as the paper's Tbl. 3 (md, csv, latex, html), paper rows beside ours"
ORDER = 61


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="result JSON files or folders (searched recursively)")
    p.add_argument("--format", choices=FORMATS, default="md")
    p.add_argument("--stat", choices=STATS, default="min", help="statistic over rounds (default: min)")
    p.add_argument("--no-paper", action="store_true", help="leave out the paper's published rows")
    p.add_argument("--all-runs", action="store_true",
                   help="every run found (default: per machine and backend x device x dtype, the newest full run, "
                        "else the newest run)")
    p.add_argument("--scale", action="store_true",
                   help="the scaling study (bench --scale): time, x C, gradient/forward ratio, peak memory, compile")
    p.add_argument("--targets", action="store_true",
                   help="with --scale: where each performance target stands (time / C, gradient / forward, memory)")
    p.add_argument("--gradient", action="store_true",
                   help="the gradient group per problem (Lorenz-96, your own problems) instead of Tbl. 3")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE instead of stdout")


def run(args: argparse.Namespace) -> int:
    require(NAME, "bench", "pandas")
    from .. import report

    if args.targets and not args.scale:
        raise ValueError("--targets reads the scaling study: give it with --scale")
    if args.scale:
        results = report.load_results(args.paths, latest=not args.all_runs)
        table = report.scale_table(results, stat=args.stat)
        text = (report.format_table(report.scale_targets(table), args.format, lambda df: df) if args.targets
                else report.format_table(table, args.format, report.scale_display_frame))
    elif args.gradient:
        results = report.load_results(args.paths, latest=not args.all_runs)
        text = report.format_table(report.gradient_table(results, stat=args.stat), args.format,
                                   report.gradient_display_frame)
    else:
        df = report.load(args.paths, stat=args.stat, paper=not args.no_paper, latest=not args.all_runs)
        text = report.format_table(df, args.format)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    else:
        print(text.rstrip("\n"))
    return 0
