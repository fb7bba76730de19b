"""``adjointbench bench``: run the pytest-benchmark suite, store its JSON, print the Tbl. 3 table.

The suite is bench/ of the source checkout (found next to the installed package, or from the
current folder upwards).  Every run writes a new file ``<UTC time>_<mode>_<commit>.json`` in
``runs/<machine>/`` of the checkout (the user's own, git-ignored), in ``results/<machine>/``
(the committed store) with ``--results``, or in ``--out DIR``: written to a temporary name,
then linked into place, so a run never overwrites another and a half-written file never
appears under a result name.  ``<machine>`` names the CPU, threads, GPU and a short host id
(``ADJOINTBENCH_MACHINE`` or ``--machine`` name it instead), so a run on another machine never
lands in a folder of committed results.
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
    p.add_argument("--scale", action="store_true",
                   help="the scaling study alone: time, memory, gradient/forward ratio vs N, window, ensemble size")
    p.add_argument("--large", action="store_true",
                   help="with --scale: also the accelerator cases (Lorenz-96 N = 4e7, ensembles of 65536 and 1e6)")
    p.add_argument("--problem", action="append", default=[], metavar="FILE",
                   help="time the gradient on this problem file, any model (repeatable; Tbl. 3 groups are then skipped)")
    p.add_argument("--model", choices=["lorenz63", "lorenz96"], default=None,
                   help="time the gradient on this model's problem: lorenz63 = the paper's (with Tbl. 3), "
                        "lorenz96 = the standard set-up with --n/--nsteps")
    p.add_argument("--n", type=int, default=40, help="with --model lorenz96: number of variables (default 40)")
    p.add_argument("--nsteps", type=int, default=40, help="with --model lorenz96: steps in the window (default 40)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="folder for the result JSON (default: runs/<machine>/ of the checkout)")
    where.add_argument("--results", action="store_true",
                       help="store the run in results/<machine>/ of the checkout, the committed results")
    p.add_argument("--machine", metavar="NAME", help="name of this machine in results (default: derived; ADJOINTBENCH_MACHINE)")
    p.add_argument("--format", choices=FORMATS, default="md", help="format of the printed table")
    p.add_argument("--cpu-devices", type=int, metavar="K",
                   help="split the host CPU into K JAX devices for the run (XLA_FLAGS "
                        "--xla_force_host_platform_device_count=K): jax-sharded's device axis, e.g. "
                        "`--scale --backend jax-sharded -k shard-lorenz96 --cpu-devices 4`")
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


def output_folder(root: Path, machine: str, *, out: str | None = None, results: bool = False) -> Path:
    """Where a run is saved: --out, else results/<machine>/ (--results), else runs/<machine>/."""
    if out:
        return Path(out)
    return root / ("results" if results else "runs") / machine


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
    if args.scale:
        cmd.append("--ab-scale")
    if args.large:
        if not args.scale:
            raise ValueError("--large adds cases to the scaling study: use it with --scale")
        cmd.append("--ab-large")
    for spec in problem_specs(args):
        cmd += ["--ab-problem", spec]
    if args.keyword:
        cmd += ["-k", args.keyword]
    return cmd


#: the XLA flag that splits the host CPU into several JAX devices (read when JAX starts)
CPU_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def suite_env(args: argparse.Namespace) -> dict[str, str]:
    """The suite's environment: this one, with ``--cpu-devices`` K as XLA's host device count."""
    env = dict(os.environ)
    k = args.cpu_devices
    if k is None:
        return env
    if k < 1:
        raise ValueError(f"--cpu-devices must be a positive integer, got {k}")
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(CPU_DEVICES_FLAG)]
    env["XLA_FLAGS"] = " ".join(flags + [f"{CPU_DEVICES_FLAG}={k}"])
    return env


def problem_specs(args: argparse.Namespace) -> list[str]:
    """--ab-problem values for --problem / --model (none: the suite's defaults)."""
    from ..models import load_problem
    from ..models.lorenz96 import Lorenz96Problem

    specs = []
    for path in args.problem:
        load_problem(path)  # a bad file is one line and exit 2 here, before pytest starts
        specs.append(str(Path(path).resolve()))
    if args.model == "lorenz63":
        specs.append("paper")
    elif args.model == "lorenz96":
        Lorenz96Problem.standard(n=args.n, nsteps=args.nsteps, spinup=0)  # validates n, nsteps, the budget
        specs.append(f"lorenz96:n={args.n},nsteps={args.nsteps}")
    return specs


def run(args: argparse.Namespace) -> int:
    require(NAME, "bench", "pandas", "pytest", "pytest_benchmark")
    from .. import report
    from ..backends import backend

    for name in args.backend:
        backend(name)  # unknown name: ValueError -> one line, exit 2
    if args.machine:
        os.environ["ADJOINTBENCH_MACHINE"] = report.slug(args.machine)  # this process and the suite's
        report.machine_context_cached.cache_clear()
    problem_specs(args)
    suite_env(args)  # a bad --cpu-devices is one line and exit 2, before pytest starts
    root = checkout_root()
    machine = report.machine_context_cached()["machine"]
    folder = output_folder(root, machine, out=args.out, results=args.results)
    folder.mkdir(parents=True, exist_ok=True)
    mode = ("scale-" if args.scale else "") + ("quick" if args.quick else "full")
    stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{mode}_{commit_id(root)}"
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(pytest_command(root, args, tmp), cwd=root, env=suite_env(args))
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
    results = report.load_results([path])
    if args.scale:
        print(report.format_table(report.scale_table(results), args.format, report.scale_display_frame))
    elif (results["problem"] == "paper").any():
        print(report.format_table(report.tbl3(results, paper=False), args.format))
    others = report.gradient_table(results, problems=sorted(set(results["problem"]) - {"paper"}))
    if not others.empty:
        print("\nvalue-and-gradient call per problem:\n")
        print(report.format_table(others, args.format, report.gradient_display_frame))
    if rc != 0:
        print(f"\nsome benchmarks failed or errored (pytest exit status {rc}); see above", file=sys.stderr)
        return 1
    return 0
