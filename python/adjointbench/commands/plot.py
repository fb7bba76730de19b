"""``adjointbench plot``: the Tbl. 3 table as figures (PNG) in runs/figures/ (``--out DIR``;
``--out results/figures`` regenerates the committed ones).

``tbl3.png``: time of the 101-evaluation workload per backend x hardware, log scale, the
paper's published rows hatched beside ours.  ``call_vs_compile.png``: per-call time against
cold-start compile time, one point per backend x hardware (where to break even).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..cli import require
from ..report.constants import STATS, TBL3_ITERATIONS

NAME = "plot"
HELP = "draw the Tbl. 3 table (log-scale bars) and per-call vs compile time as PNGs in runs/figures/"
ORDER = 62


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="result files/folders (default: results/ of the checkout)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/figures/ of the checkout; "
                                                "results/figures regenerates the committed figures)")
    p.add_argument("--stat", choices=STATS, default="min")
    p.add_argument("--no-paper", action="store_true", help="leave out the paper's published rows")
    p.add_argument("--scale", action="store_true", help="the scaling study's figure (scale.png) instead of Tbl. 3's")
    p.add_argument("--all-runs", action="store_true",
                   help="every run found (default: per machine and backend x device x dtype, the newest full run, "
                        "else the newest run)")


def _label(row) -> str:
    name = row.backend if row.source == "measured" else f"paper: {row.kind}"
    drv = " (fused)" if row.driver == "fused" and row.source == "measured" else ""
    dev = f" [{row.device}]" if row.device and row.device != "cpu" else ""
    prec = f" {row.dtype}" if row.dtype and row.dtype != "float64" else ""
    return f"{name}{drv}{prec}{dev} — {row.hardware}"


def tbl3_figure(df, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = df[df["workload_s"].map(lambda v: isinstance(v, float) and math.isfinite(v) and v > 0)]
    d = d.iloc[::-1]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(d) + 1.5))
    colors = ["#bbbbbb" if s == "paper" else ("#1f77b4" if drv == "python" else "#ff7f0e")
              for s, drv in zip(d["source"], d["driver"], strict=True)]
    bars = ax.barh(range(len(d)), d["workload_s"], color=colors)
    for bar, s in zip(bars, d["source"], strict=True):
        if s == "paper":
            bar.set_hatch("//")
    ax.set_yticks(range(len(d)), [_label(r) for r in d.itertuples()], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"time for the Tbl. 3 workload ({TBL3_ITERATIONS} value-and-gradient evaluations), s")
    from ..report import fmt_time

    for i, v in enumerate(d["workload_s"]):
        ax.text(v, i, " " + fmt_time(v), va="center", fontsize=6)
    ax.set_title("Tbl. 3: blue = Python-driven loop, orange = fused driver, hatched grey = paper", fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def call_compile_figure(df, path: Path) -> Path:
    """Per-call time vs cold-start compile: colour = backend, marker = machine and device,
    hollow = float32; two legends instead of labels on the points (which collide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    d = df[(df["source"] == "measured") & df["call_us"].notna() & df["compile_s"].notna()]
    backends = list(dict.fromkeys(d["backend"]))
    d = d.assign(device=d["device"].replace({"cuda": "gpu"}))  # runs before one device vocabulary said cuda
    places = list(dict.fromkeys(f"{h} [{dev}]" for h, dev in zip(d["hardware"], d["device"], strict=True)))
    colors = plt.get_cmap("tab10" if len(backends) <= 10 else "tab20")
    markers = "osD^vP*X<>"
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    for r in d.itertuples():
        c = colors(backends.index(r.backend) % colors.N)
        m = markers[places.index(f"{r.hardware} [{r.device}]") % len(markers)]
        hollow = r.dtype == "float32"
        ax.scatter(r.call_us * 1e-6, r.compile_s, s=40, marker=m, facecolors="none" if hollow else c,
                   edgecolors=c, linewidths=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("one value-and-gradient call at the paper problem, s")
    ax.set_ylabel("cold start: prepare() + first call, s")
    ax.set_title("per-call time vs compile time (filled: float64, hollow: float32)", fontsize=9)
    ax.grid(which="both", alpha=0.3)
    by_backend = [Line2D([], [], ls="", marker="o", color=colors(i % colors.N), label=b) for i, b in enumerate(backends)]
    by_place = [Line2D([], [], ls="", marker=markers[i % len(markers)], color="0.3", label=p)
                for i, p in enumerate(places)]
    first = ax.legend(handles=by_backend, title="backend", fontsize=7, title_fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.add_artist(first)
    ax.legend(handles=by_place, title="machine [device]", fontsize=7, title_fontsize=8, loc="lower left",
              bbox_to_anchor=(1.01, 0.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def scale_figure(df, path: Path) -> Path:
    """The scaling study in four panels, one legend: colour = backend, solid = CPU, dashed
    black = the C yardstick, dotted = an accelerator; one line per machine x device x dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    (ax_t, ax_r), (ax_m, ax_b) = axes
    yardsticks = {b for b, k in zip(df["backend"], df["kind"], strict=True) if str(k).startswith("yardstick")}
    backends = [b for b in dict.fromkeys(df["backend"]) if b not in yardsticks]
    cmap = plt.get_cmap("tab10" if len(backends) <= 10 else "tab20")
    color = {b: cmap(i % cmap.N) for i, b in enumerate(backends)}

    def style(backend: str, kind: str, device: str) -> dict:
        if kind.startswith("yardstick"):
            return {"color": "black", "ls": "--", "lw": 2.0}
        return {"color": color[backend], "ls": ":" if device != "cpu" else "-", "lw": 1.4, "marker": "o", "ms": 3}

    # the shard axis (one backend over 1, 2, 4 devices) is a table of its own, not a line here
    single = df[(df["batch"] == 0) & (df["model"] == "lorenz96") & (df["axis"] != "shard")]
    state = single[single["axis"] == "state"]
    keys = ["machine", "backend", "kind", "device", "dtype"]
    for key, g in state.groupby(keys, sort=False):
        g = g.sort_values("n")
        st = style(key[1], key[2], key[3])
        ax_t.plot(g["n"], g["grad_s"], **st)
        if g["ratio"].notna().any() and not key[2].startswith("yardstick"):
            ax_r.plot(g["n"], g["ratio"], **st)
    for key, g in single.groupby(keys, sort=False):
        g = g.assign(work=g["n"] * g["nsteps"]).sort_values("work")
        if g["peak_bytes"].notna().any():  # points: a state and a window case may share N x steps
            ax_m.plot(g["work"], g["peak_bytes"] / 2**20, **{**style(key[1], key[2], key[3]), "ls": "none"})
    ens = df[(df["batch"] > 0) & (df["model"] == "lorenz96")]
    for key, g in ens.groupby(keys, sort=False):
        g = g.sort_values("batch")
        ax_b.plot(g["batch"], g["throughput"], **style(key[1], key[2], key[3]))
    for ax, xl, yl, title in (
        (ax_t, "N (Lorenz-96 variables), 40 RK4 steps", "time per gradient, s", "time vs state size"),
        (ax_r, "N", "gradient time / forward-only time", "cheap-gradient ratio"),
        (ax_m, "N x steps (state and window cases)", "peak memory of one gradient, MiB", "memory vs N x window"),
        (ax_b, "ensemble size B (Lorenz-96, N = 40)", "gradients per second", "throughput vs ensemble size"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title, fontsize=10)
        ax.grid(which="both", alpha=0.3)
    # log: re-taping ADOL-C (~100) would otherwise flatten the 2-10 where the other tools sit
    ax_r.set_yscale("log")
    ax_r.axhspan(3, 5, color="0.85", alpha=0.5, zorder=0)
    ax_r.text(0.02, 0.97, "grey band: the cheap-gradient bound (3-5)", transform=ax_r.transAxes, fontsize=7, va="top")
    handles = [Line2D([], [], color=color[b], lw=1.4, marker="o", ms=3, label=b) for b in backends]
    handles.append(Line2D([], [], color="black", ls="--", lw=2.0, label="C gcc -O3 (yardstick)"))
    if (df["device"] != "cpu").any():
        handles.append(Line2D([], [], color="0.3", ls=":", label="dotted: accelerator"))
    machines = ", ".join(dict.fromkeys(df["hardware"]))
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(f"Lorenz-96 4D-Var gradient: scaling ({machines})", fontsize=11)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))  # room for the legend below the x labels
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    require(NAME, "bench", "pandas", "matplotlib")
    from .. import report
    from .bench import checkout_root

    paths = args.paths
    if not paths or not args.out:
        root = checkout_root()
        paths = paths or [str(p) for p in sorted((root / "results").iterdir())
                          if p.is_dir() and p.name not in ("figures", "baseline")]
    out = Path(args.out) if args.out else root / "runs" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    if args.scale:
        results = report.load_results(paths, latest=not args.all_runs)
        print(scale_figure(report.scale_table(results, stat=args.stat), out / "scale.png"))
        return 0
    df = report.load(paths, stat=args.stat, paper=not args.no_paper, latest=not args.all_runs)
    for f in (tbl3_figure(df, out / "tbl3.png"), call_compile_figure(df, out / "call_vs_compile.png")):
        print(f)
    return 0
