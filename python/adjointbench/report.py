"""Benchmark results: the machine context, loading pytest-benchmark JSON, the Tbl. 3 table.

A *run* is one pytest-benchmark JSON file written by ``adjointbench bench`` (or by plain
``pytest bench --benchmark-json=...``).  Each benchmark in it carries ``extra_info`` from
``bench/conftest.py``: backend, kind, device, dtype, driver, the iterations actually timed.
Runs from several machines merge into one table: the machine is named in ``machine_info``.

``load(paths)`` returns the paper's Tbl. 3 shape (gradient method x hardware -> time for the
workload of 101 value-and-gradient evaluations of steepest descent), with the per-call time,
the cold-start compile time and the ratio to the fastest backend of the same run, and the
paper's published rows beside ours (``source == "paper"``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .backends.base import TBL3_ITERATIONS

GROUPS = ("gradient", "tbl3", "compile")
STATS = ("min", "median", "mean")
FORMATS = ("md", "csv", "latex", "html")
#: distributions whose versions are recorded with every run (issue 6, item 3)
VERSIONED = (
    "numpy", "scipy", "numba", "llvmlite", "Cython", "jax", "jaxlib", "enzyme-ad", "torch",
    "pytest-benchmark", "pandas",
)

#: The paper's Tbl. 3 ("Benchmark for the initial state estimation with %timeit"), seconds for
#: the whole workload.  The two Enzyme rows: the text says "on the Mac, Enzyme is 5054x faster
#: than JAX with JIT", and 4.64 s (M1, JAX with JIT) / 918 us = 5054, so 918 us is the M1 and
#: 279 us the Ryzen 5 5600G (as DESIGN.md has it); the table's hardware cell is ambiguous.
PAPER_TBL3: tuple[dict[str, Any], ...] = (
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 92.5e-3},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 263.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 4.64},
    {"method": "Enzyme AD", "backend": "enzyme", "hardware": "M1 MacBook Pro 2021 32GB", "workload_s": 918e-6,
     "note": "hardware from the text: on the Mac Enzyme is 5054x JAX with JIT (4.64 s / 918 µs)"},
    {"method": "Enzyme AD", "backend": "enzyme", "hardware": "AMD Ryzen 5 5600G 32GB", "workload_s": 279e-6},
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "Colab T4", "workload_s": 1.09},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "Colab T4", "workload_s": 626.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "Colab T4", "workload_s": 117e-3},
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "Colab A100", "workload_s": 641e-3},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "Colab A100", "workload_s": 319.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "Colab A100", "workload_s": 44.8e-3},
    {"method": "hand-coded adjoint", "backend": "numpy", "hardware": "Colab v6e1 TPU", "workload_s": 162e-3},
    {"method": "JAX without JIT", "backend": "jax-nojit", "hardware": "Colab v6e1 TPU", "workload_s": 199.0},
    {"method": "JAX with JIT", "backend": "jax", "hardware": "Colab v6e1 TPU", "workload_s": 258e-3},
)

#: kind of the plain-C rows (bench/test_yardstick.py)
YARDSTICK = "yardstick"
#: columns of the Tbl. 3 frame returned by ``load``
TABLE_COLUMNS = (
    "source", "backend", "kind", "driver", "hardware", "device", "dtype", "workload_s", "call_us",
    "compile_s", "ratio", "measured", "machine", "run",
)


# ---- the machine a run comes from --------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores = set()
    phys = core = None
    for line in text.splitlines() + [""]:
        if line.startswith("physical id"):
            phys = line.split(":")[1].strip()
        elif line.startswith("core id"):
            core = line.split(":")[1].strip()
        elif not line.strip() and core is not None:
            cores.add((phys, core))
            phys = core = None
    return len(cores) or None


def gpu_names() -> list[str]:
    """NVIDIA GPUs visible through nvidia-smi (the other accelerators are named by backends)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _compiler() -> str:
    """The C compiler that builds the native kernels (setup.py uses sysconfig's CC)."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    exe = shutil.which(cc)
    if not exe:
        return f"{cc} (not found)"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return cc
    return (out.splitlines() or [cc])[0].strip()


def versions() -> dict[str, str]:
    """Installed versions (without importing the libraries: importing torch/jax costs seconds)."""
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "unknown"


def machine_context() -> dict[str, Any]:
    """What a result must carry to be compared across machines (issue 6, item 3)."""
    cpu = _cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpus = gpu_names()
    threads_env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "XLA_FLAGS", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    short_cpu = re.sub(r"\((R|TM)\)|CPU|Processor|\d+-Core", "", cpu)
    short_cpu = " ".join(short_cpu.replace("@", " @").split())
    name = os.environ.get("ADJOINTBENCH_MACHINE") or slug(
        f"{short_cpu.split(' @')[0]} {usable}t" + (f" {gpus[0]}" if gpus else ""))
    return {
        "machine": name,
        "cpu_model": cpu,
        "cpu_label": f"{short_cpu} ({usable} threads)",
        "cpu_logical": os.cpu_count(),
        "cpu_physical": _physical_cores(),
        "cpu_threads_usable": usable,
        "threads_env": threads_env,
        "gpu": gpus[0] if gpus else "none",
        "gpus": gpus,
        "os": platform.platform(),
        "compiler": _compiler(),
        "versions": versions(),
    }


@lru_cache(maxsize=1)
def machine_context_cached() -> dict[str, Any]:
    """``machine_context()`` once per process (it runs nvidia-smi and the compiler)."""
    return machine_context()


# ---- reading runs --------------------------------------------------------------------------

def result_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The JSON files named, or found (recursively) under the folders named, sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*.json") if not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"no such result file or folder: {p}")
    return files


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        return None
    return data


def run_records(path: Path, data: dict) -> list[dict[str, Any]]:
    """One record per benchmark of a pytest-benchmark JSON file (only adjointbench benchmarks)."""
    mi = data.get("machine_info") or {}
    ctx = mi.get("adjointbench") or {}
    machine = ctx.get("machine") or slug(str(mi.get("node", "unknown")))
    run_info = ctx.get("run") or {}
    out = []
    for b in data["benchmarks"]:
        extra = b.get("extra_info") or {}
        stats = b.get("stats") or {}
        if "backend" not in extra or extra.get("group", b.get("group")) not in GROUPS:
            continue
        rec = {
            "run": f"{machine}/{path.stem}",
            "path": str(path),
            "datetime": data.get("datetime", ""),
            "machine": machine,
            "mode": run_info.get("mode", "custom"),
            "group": extra.get("group", b.get("group")),
            "backend": extra["backend"],
            "kind": extra.get("kind", ""),
            "device": extra.get("device", "cpu"),
            "dtype": extra.get("dtype", "float64"),
            "driver": extra.get("driver", "python"),
            "hardware": extra.get("hardware") or ctx.get("cpu_label") or mi.get("cpu", {}).get("brand_raw", "unknown"),
            "iterations": extra.get("iterations", TBL3_ITERATIONS if extra.get("group") == "tbl3" else 1),
            "calls_per_round": stats.get("iterations", 1),
            "rounds": stats.get("rounds", 0),
            "probe_backend": extra.get("probe_backend", ""),
            "probe_s": float(extra["probe_s"]) if isinstance(extra.get("probe_s"), (int, float)) else math.nan,
        }
        for s in ("min", "max", "mean", "median", "stddev", "q1", "q3", "iqr"):
            v = stats.get(s)
            rec[s] = float(v) if isinstance(v, (int, float)) else math.nan
        if isinstance(extra.get("self_timed_s"), (int, float)):
            # the C yardstick times itself (min in C); pytest-benchmark saw the whole subprocess
            for s in ("min", "max", "mean", "median"):
                rec[s] = float(extra["self_timed_s"])
            rec["self_timed"] = True
        out.append(rec)
    return out


def load_results(paths: Iterable[str | os.PathLike], *, latest: bool = False) -> pd.DataFrame:
    """Every adjointbench benchmark in the files/folders, one row each (long form).

    Files that are not pytest-benchmark output are skipped when found in a folder and are an
    error when named.  ``latest`` keeps, per machine and backend x device x dtype, only the
    newest full run that measured it (or the newest run, when no full run did), so a folder of
    history gives one table, and a run restricted to some backends (a GPU-only run, say) adds
    its rows without hiding the machine's other ones.
    """
    paths = list(paths)
    recs: list[dict] = []
    named = {Path(p) for p in paths}
    for f in result_files(paths):
        try:
            data = _read_json(f)
        except ValueError:
            if f in named:
                raise
            continue  # other JSON in a results folder (e.g. results/experiments/)
        if data is None:
            if f in named:
                raise ValueError(f"{f}: not a pytest-benchmark result file (no 'benchmarks' list)")
            continue
        recs.extend(run_records(f, data))
    df = pd.DataFrame.from_records(recs)
    if df.empty:
        raise ValueError(f"no adjointbench benchmark results in {', '.join(map(str, paths)) or '(nothing)'}")
    if latest:
        row = ["machine", "backend", "device", "dtype"]
        runs = df[row + ["run", "datetime", "mode"]].drop_duplicates()
        # full runs first, then by time: the last of each group is the one to keep
        runs = runs.assign(full=runs["mode"] == "full").sort_values(["full", "datetime", "run"])
        pick = runs.groupby(row, sort=False).tail(1)[row + ["run"]]
        df = df.merge(pick, on=row + ["run"], how="inner")
    return df.reset_index(drop=True)


# ---- the Tbl. 3 table -------------------------------------------------------------------------

def _stat(rows: pd.DataFrame, stat: str) -> float:
    return float(rows[stat].min()) if not rows.empty else math.nan


def tbl3(results: pd.DataFrame, *, stat: str = "min", paper: bool = True) -> pd.DataFrame:
    """Tbl. 3 rows from long-form results: one row per run x backend x driver x device x dtype.

    workload_s: the 101-evaluation descent (scaled by 101/k when only k iterations were
    timed, which ``measured`` says); call_us: one value-and-gradient call (``gradient``
    group; Python-driven rows only); compile_s: cold start, prepare() + first call in a fresh
    process; ratio: workload_s over the smallest workload_s of a backend in the same run (the
    plain-C yardstick is not a backend, so its ratio may be below 1; a run that timed one
    backend row only has no ratio).
    """
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; expected one of {', '.join(STATS)}")
    rows = []
    keys = ["run", "machine", "backend", "kind", "device", "dtype", "hardware"]
    for key, g in results.groupby(keys, sort=False, dropna=False):
        base = dict(zip(keys, key))
        drivers = [d for d in ("python", "fused") if (g["driver"] == d).any()]
        for driver in drivers:
            t = g[(g["group"] == "tbl3") & (g["driver"] == driver)]
            c = g[(g["group"] == "compile") & (g["driver"] == driver)]
            v = g[(g["group"] == "gradient") & (g["driver"] == driver)]
            notes = []
            workload = math.nan
            if not t.empty:
                it = int(t["iterations"].iloc[0])
                workload = _stat(t, stat) * TBL3_ITERATIONS / it
                rounds = int(t["rounds"].iloc[0])
                if "self_timed" in t and t["self_timed"].eq(True).any():
                    notes.append("timed by the C program itself (min over repeats)")
                elif it == TBL3_ITERATIONS:
                    notes.append(f"{stat} of {rounds} round{'s' * (rounds != 1)}")
                else:
                    notes.append(f"{stat} of {rounds}, scaled from {it}/{TBL3_ITERATIONS} iterations")
            call_us = _stat(v, stat) * 1e6
            if not v.empty and t.empty:
                notes.append("no workload timed")
            rows.append({
                **base, "source": "measured", "driver": driver, "workload_s": workload, "call_us": call_us,
                "compile_s": _stat(c, stat), "measured": "; ".join(notes),
            })
    df = pd.DataFrame.from_records(rows, columns=[c for c in TABLE_COLUMNS if c != "ratio"])
    if not df.empty:
        # the C yardstick is a floor, not a backend: ratios are to the fastest backend of the run
        backend_t = df["workload_s"].where(~df["kind"].astype(str).str.startswith(YARDSTICK))
        fastest = backend_t.groupby(df["run"]).transform("min")
        # a run that timed a single backend row has nothing to compare it with: no ratio
        rows_in_run = backend_t.notna().groupby(df["run"]).transform("sum")
        df["ratio"] = (df["workload_s"] / fastest).where(rows_in_run > 1)
    else:
        df["ratio"] = pd.Series(dtype=float)
    if paper:
        df = pd.concat([df, paper_rows()], ignore_index=True) if not df.empty else paper_rows()
    return df[list(TABLE_COLUMNS)].reset_index(drop=True)


def paper_rows() -> pd.DataFrame:
    """The published Tbl. 3, ratio taken within each of the paper's hardware blocks."""
    df = pd.DataFrame.from_records([
        {"source": "paper", "backend": r["backend"], "kind": r["method"], "driver": "",  # the paper does not say how its loops were driven
         "hardware": r["hardware"], "device": "", "dtype": "",
         "workload_s": r["workload_s"], "call_us": math.nan, "compile_s": math.nan,
         "measured": "paper Tbl. 3 (%timeit)" + (f"; {r['note']}" if "note" in r else ""),
         "machine": "paper", "run": "paper Tbl. 3"}
        for r in PAPER_TBL3
    ])
    df["ratio"] = df["workload_s"] / df.groupby("hardware")["workload_s"].transform("min")
    return df


def load(paths: Iterable[str | os.PathLike], *, stat: str = "min", paper: bool = True,
         latest: bool = False) -> pd.DataFrame:
    """Result files/folders -> the Tbl. 3 table (measured rows, then the paper's)."""
    return tbl3(load_results(paths, latest=latest), stat=stat, paper=paper)


# ---- formatting ---------------------------------------------------------------------------

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
        "gradient": [b if s == "measured" else f"{k} [{b}]" for s, b, k in zip(df["source"], df["backend"], df["kind"])],
        "kind": [k if s == "measured" else "" for s, k in zip(df["source"], df["kind"])],
        "driver": df["driver"],
        "hardware": [h if not d else f"{h} [{d}]" for h, d in zip(df["hardware"], df["device"])],
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
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)) + "|"]
    for row in cells[1:]:
        lines.append("| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right)) + " |")
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


def format_table(df: pd.DataFrame, fmt: str = "md") -> str:
    """The Tbl. 3 frame as md, csv (raw numbers, seconds/µs), latex or html."""
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    shown = display_frame(df)
    if fmt == "md":
        return _markdown(shown)
    if fmt == "latex":
        return _latex(shown)
    if fmt == "html":
        return shown.to_html(index=False, border=0)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


# ---- regression tracking ----------------------------------------------------------------------

REGRESS_KEYS = ["group", "backend", "driver", "device", "dtype"]


def ratios(results: pd.DataFrame, reference: str, groups: Sequence[str] = ("gradient", "tbl3")) -> pd.DataFrame:
    """Each benchmark's min time (per workload iteration) over the reference backend's, same run.

    The reference time is the probe taken right beside each benchmark when the run has one for
    this reference (bench/ times the reference's gradient call before and after every
    benchmark, so the load of a shared machine at that moment cancels); otherwise the
    reference backend's own Python-driven float64 CPU row of the same group.  ``jitter`` =
    (median - min) / min, a per-row measure of how noisy the ratio is; ``rounds`` the rounds
    behind it.  Several runs: the median ratio of each row.
    """
    rows = []
    sel = results[results["group"].isin(list(groups))]
    for run, g in sel.groupby("run", sort=False):
        for group, gg in g.groupby("group", sort=False):
            probed = (gg["probe_backend"] == reference) & gg["probe_s"].notna()
            ref = gg[(gg["backend"] == reference) & (gg["driver"] == "python") & (gg["device"] == "cpu")
                     & (gg["dtype"] == "float64")]
            if ref.empty and not probed.all():
                raise ValueError(f"run {run}: reference backend {reference!r} has no {group} result")
            if not ref.empty:
                r = ref.iloc[0]
                ref_t, ref_j = r["min"] / r["iterations"], (r["median"] - r["min"]) / r["min"]
            for i, b in gg.iterrows():
                if probed[i]:
                    t, j, how = b["probe_s"], 0.0, "probe"
                else:
                    t, j, how = ref_t, ref_j, "row"
                rows.append({
                    **{k: b[k] for k in REGRESS_KEYS}, "run": run,
                    "ratio": (b["min"] / b["iterations"]) / t,
                    "jitter": (b["median"] - b["min"]) / b["min"] + j, "rounds": int(b["rounds"]), "by": how,
                })
    df = pd.DataFrame.from_records(rows, columns=REGRESS_KEYS + ["run", "ratio", "jitter", "rounds", "by"])
    if df.empty:
        return df
    # several runs (e.g. a baseline of three quick runs): the median run of each row
    agg = df.groupby(REGRESS_KEYS, sort=False).agg(
        run=("run", "first"), ratio=("ratio", "median"), jitter=("jitter", "median"), rounds=("rounds", "min"),
        by=("by", "first"))
    return agg.reset_index()


#: rows timed in fewer rounds than this (seconds-long calls such as JAX without JIT) have no
#: minimum worth the name on a shared machine: they get ``few_rounds_threshold`` instead
FEW_ROUNDS = 5
#: the jitter's extra room is capped, so that a noisy row still fails at threshold + 100%
JITTER_ROOM_MAX = 1.0


def regress(baseline: pd.DataFrame, current: pd.DataFrame, *, reference: str = "numpy",
            threshold: float = 0.25, jitter_weight: float = 1.0, few_rounds_threshold: float = 3.0,
            groups: Sequence[str] = ("gradient", "tbl3")) -> pd.DataFrame:
    """Compare current ratios with baseline ratios; verdict per benchmark.

    A row regresses when current/baseline - 1 exceeds ``threshold`` plus ``jitter_weight``
    times the rows' own jitter (current and baseline): rows whose rounds scatter widely,
    e.g. microsecond calls on a busy 2-core box, get room in proportion to that scatter.
    That extra room is at most JITTER_ROOM_MAX.  Rows with fewer than FEW_ROUNDS rounds on
    either side use ``few_rounds_threshold`` instead of ``threshold``.
    """
    for name, v in (("threshold", threshold), ("few_rounds_threshold", few_rounds_threshold),
                    ("jitter_weight", jitter_weight)):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {v!r}")
    b = ratios(baseline, reference, groups)
    c = ratios(current, reference, groups)
    m = b.merge(c, on=REGRESS_KEYS, how="outer", suffixes=("_base", "_cur"))
    m["change"] = m["ratio_cur"] / m["ratio_base"] - 1.0
    few = (m["rounds_base"].fillna(FEW_ROUNDS) < FEW_ROUNDS) | (m["rounds_cur"].fillna(FEW_ROUNDS) < FEW_ROUNDS)
    base = few.map({True: max(threshold, few_rounds_threshold), False: threshold})
    room = (jitter_weight * (m["jitter_base"].fillna(0) + m["jitter_cur"].fillna(0))).clip(upper=JITTER_ROOM_MAX)
    m["allowed"] = base + room

    def verdict(r: pd.Series) -> str:
        if r["backend"] == reference:
            return "reference"
        if math.isnan(r["ratio_base"]):
            return "new"
        if math.isnan(r["ratio_cur"]):
            return "missing"
        if r["change"] > r["allowed"]:
            return "REGRESSED"
        if r["ratio_base"] / r["ratio_cur"] - 1.0 > threshold:  # symmetric: 2x faster at threshold 1
            return "improved"
        return "ok"

    m["verdict"] = m.apply(verdict, axis=1) if not m.empty else pd.Series(dtype=str)
    return m[REGRESS_KEYS + ["ratio_base", "ratio_cur", "change", "allowed", "verdict"]]


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(machine_context(), indent=1))
    sys.exit(0)
