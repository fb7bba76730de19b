"""``adjointbench bench``: run the pytest-benchmark suite, store its JSON, print the Tbl. 3 table.

The suite is bench/ of the source checkout (found next to the installed package, or from the
current folder upwards).  Every run writes a new file ``results/<machine>/<UTC time>_<mode>
_<commit>.json`` (or under --out): written to a temporary name, then linked into place, so a
run never overwrites another and a half-written file never appears under a result name.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..cli import require
from ..report.constants import FORMATS

NAME = "bench"
HELP = "run the benchmark suite (pytest-benchmark), save results/<machine>/*.json, print the Tbl. 3 table"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", action="append", default=[], metavar="NAME", help="only this backend (repeatable)")
    p.add_argument("--device", action="append", default=[], metavar="DEVICE", help="only this device, e.g. cpu, gpu (repeatable)")
    p.add_argument("--dtype", action="append", default=[], metavar="DTYPE", help="only this dtype (repeatable)")
    p.add_argument("--quick", action="store_true", help="short run (CI, smoke checks; < 3 min on a 2-core box)")
    p.add_argument("--out", metavar="DIR", help="folder for the result JSON (default: results/<machine>/ of the checkout)")
    p.add_argument("--format", choices=FORMATS, default="md", help="format of the printed table")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression, e.g. 'gradient or tbl3'")


def checkout_root() -> Path:
    """The source checkout holding bench/ (the benchmark suite is not installed with the package)."""
    here = Path(__file__).resolve()
    # the checkout being worked in first (a clone with a non-editable install), then the
    # checkout of an editable install
    candidates = [*(Path.cwd().resolve() / "x").parents, here.parents[3]]
    for root in candidates:
        if (root / "bench" / "conftest.py").is_file() and (root / "conftest.py").is_file():
            return root
    raise ValueError("bench/ not found: run `adjointbench bench` inside a source checkout of adjointbench")


def commit_id(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    return out.stdout.strip() or "nogit"


def place(tmp: Path, folder: Path, stem: str) -> Path:
    """Link tmp to a new name in folder (never replacing one), then drop tmp."""
    for n in range(1000):
        target = folder / (f"{stem}.json" if n == 0 else f"{stem}-{n}.json")
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        tmp.unlink()
        os.chmod(target, 0o644)  # mkstemp made it private; results are meant to be shared
        return target
    raise ValueError(f"could not find a free result file name for {stem} in {folder}")


def pytest_command(root: Path, args: argparse.Namespace, json_path: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(root / "bench"), "--benchmark-only", f"--benchmark-json={json_path}",
           "-p", "no:cacheprovider", "-q", "--rootdir", str(root), "-c", str(root / "pyproject.toml")]
    for b in args.backend:
        cmd += ["--ab-backend", b]
    for d in args.device:
        cmd += ["--ab-device", d]
    for t in args.dtype:
        cmd += ["--ab-dtype", t]
    if args.quick:
        cmd.append("--ab-quick")
    if args.keyword:
        cmd += ["-k", args.keyword]
    return cmd


def run(args: argparse.Namespace) -> int:
    require(NAME, "bench", "pandas", "pytest", "pytest_benchmark")
    from .. import report
    from ..backends import backend

    for name in args.backend:
        backend(name)  # unknown name: ValueError -> one line, exit 2
    root = checkout_root()
    machine = report.machine_context_cached()["machine"]
    folder = Path(args.out) if args.out else root / "results" / machine
    folder.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{mode}_{commit_id(root)}"
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(pytest_command(root, args, tmp), cwd=root)
        if rc == 5:
            raise ValueError("no benchmark was collected (check --backend/--device/--dtype/-k)")
        nothing = "nothing was benchmarked: no available backend matches --backend/--device/--dtype here"
        if tmp.stat().st_size == 0:
            if rc == 0:
                raise ValueError(nothing)
            print(f"error: pytest exited with status {rc} and wrote no results", file=sys.stderr)
            return rc
        if not json.loads(tmp.read_text()).get("benchmarks"):
            raise ValueError(nothing)
        path = place(tmp, folder, stem)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"\nresults: {path}  ({mode} run, {time.perf_counter() - t0:.0f} s)\n")
    print(report.format_table(report.load([path], paper=False), args.format))
    if rc != 0:
        print(f"\nsome benchmarks failed or errored (pytest exit status {rc}); see above", file=sys.stderr)
        return 1
    return 0
