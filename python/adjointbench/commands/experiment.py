"""``adjointbench experiment NAME``: reproduce one of the paper's tables or figures.

Writes runs/experiments/NAME.{json,md,png} (``--outdir DIR``: DIR; ``--outdir results/experiments``
regenerates the committed ones), reduced runs (``--quick``) in a ``quick/`` subfolder so they
never replace a full run, and prints the table with the paper's values beside ours; ``--json``
prints the experiment's JSON instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..cli import require

# the experiments package itself needs NumPy only; its modules (scipy, tqdm, matplotlib) are
# imported by run_experiment
from ..experiments import DEFAULT_OUTDIR, NAMES

NAME = "experiment"
HELP = "reproduce the paper's Tbl. 2, Fig. 5, Tbl. 4, Fig. 6, Figs. 1-3 (writes runs/experiments/)"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=[*NAMES, "all"], help="which experiment")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="gradient backend(s) to use (repeatable; default: the experiment's own list)")
    p.add_argument("--quick", action="store_true", help="reduced version (fewer rows, sweep points, members)")
    p.add_argument("--json", action="store_true", help="print the experiment's JSON on stdout")
    p.add_argument("--outdir", default=str(DEFAULT_OUTDIR), metavar="DIR",
                   help=f"where to write NAME.json/.md/.png (default {DEFAULT_OUTDIR}; --quick: DIR/quick/)")


def run(args: argparse.Namespace) -> int:
    require(NAME, "experiments", "scipy", "matplotlib", "tqdm")
    from ..experiments import run as run_experiment
    from ..jsonable import jsonable

    names = list(NAMES) if args.name == "all" else [args.name]
    printed = []
    for name in names:
        t0 = time.perf_counter()
        out = run_experiment(name, backends=args.backend, quick=args.quick, outdir=Path(args.outdir),
                             progress=not args.json)
        if args.json:
            printed.append(out.stdout_json)
        else:
            print(out.markdown)
            print(f"[{name}: wrote {', '.join(str(f) for f in out.files)} in {time.perf_counter() - t0:.1f} s]\n")
    if args.json:
        doc = printed[0] if len(printed) == 1 else dict(zip(names, printed, strict=True))
        print(json.dumps(jsonable(doc), indent=1))
    return 0
