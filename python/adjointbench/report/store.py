"""Reading runs: pytest-benchmark JSON files -> one long-form row per adjointbench benchmark.

A *run* is one pytest-benchmark JSON file written by ``adjointbench bench`` (or by plain
``pytest bench --benchmark-json=...``).  Each benchmark in it carries ``extra_info`` from
``bench/conftest.py``: backend, kind, device, dtype, driver, the iterations actually timed.
Runs from several machines merge: the machine is named in ``machine_info``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .constants import GROUPS, TBL3_ITERATIONS
from .context import slug


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


def is_yardstick(extra: dict[str, Any]) -> bool:
    """Whether a benchmark is the plain-C yardstick (a floor, not a backend: bench/test_yardstick.py).

    An explicit ``extra_info["yardstick"]`` decides; result files without it are read by the
    field only the yardstick writes, ``self_timed_s`` (the C program times itself).
    """
    flag = extra.get("yardstick")
    if isinstance(flag, bool):
        return flag
    return "self_timed_s" in extra


#: extra_info fields of the ``scale`` group kept as columns (NaN / "" for other groups)
SCALE_FIELDS = ("axis", "n", "nsteps", "batch", "cost_s", "prepare_s", "first_call_s", "trajectory_bytes",
                "peak_bytes", "device_peak_bytes", "batch_idiom", "cost_idiom")
#: of those, the text fields ("" where absent)
SCALE_TEXT_FIELDS = ("axis", "batch_idiom", "cost_idiom")


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
            "yardstick": is_yardstick(extra),
            # runs before the problem dimension timed the paper's problem only
            "problem": extra.get("problem", "paper"),
            "model": extra.get("model", "lorenz63"),
            "problem_label": extra.get("problem_label", "lorenz63 paper (Tbl. 3)"),
            "n_control": extra.get("n_control", 3),
            # devices one call ran on (jax-sharded's mesh size; every other backend uses one)
            "devices": int(extra["info_devices"]) if isinstance(extra.get("info_devices"), int)
            and not isinstance(extra.get("info_devices"), bool) else 1,
        }
        for k in SCALE_FIELDS:  # the scaling study's measurements (bench/test_scale.py)
            v = extra.get(k)
            ok = isinstance(v, (int, float, str)) and not isinstance(v, bool)
            rec[k] = v if ok else ("" if k in SCALE_TEXT_FIELDS else math.nan)
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
        row = ["machine", "backend", "device", "devices", "dtype", "problem"]
        runs = df[row + ["run", "datetime", "mode"]].drop_duplicates()
        # full runs first, then by time: the last of each group is the one to keep
        runs = runs.assign(full=runs["mode"] == "full").sort_values(["full", "datetime", "run"])
        pick = runs.groupby(row, sort=False).tail(1)[row + ["run"]]
        df = df.merge(pick, on=row + ["run"], how="inner")
    return df.reset_index(drop=True)
