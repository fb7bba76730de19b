"""The report code (adjointbench.report, table/regress/bench commands) on synthetic result files.

Result files are written here in pytest-benchmark's JSON layout with made-up times: the
numbers test the arithmetic of the table and the regression verdicts, not any backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from adjointbench import cli, report
from adjointbench.commands.bench import place

GRAD, TBL3, COMPILE = "gradient", "tbl3", "compile"


def bench_entry(group, backend, t_min, *, driver="python", median=None, iterations=None, device="cpu",
                dtype="float64", rounds=10, kind="hand adjoint", hardware="Test CPU (2 threads)"):
    median = t_min * 1.05 if median is None else median
    if iterations is None:
        iterations = 101 if group == TBL3 else 1
    return {
        "group": group, "name": f"test_{group}[{backend}]", "fullname": f"bench/x.py::test_{group}[{backend}]",
        "params": {}, "param": backend,
        "extra_info": {"group": group, "backend": backend, "kind": kind, "device": device, "dtype": dtype,
                       "driver": driver, "hardware": hardware, "iterations": iterations},
        "stats": {"min": t_min, "max": 2 * median, "mean": median, "stddev": 0.1 * t_min, "median": median,
                  "q1": t_min, "q3": median, "iqr": median - t_min, "rounds": rounds, "iterations": 1},
    }


def write_run(path: Path, entries, *, machine="box-a", mode="quick", when="2026-01-01T00:00:00"):
    data = {
        "machine_info": {"node": "n", "adjointbench": {"machine": machine, "cpu_label": f"{machine} CPU",
                                                        "run": {"mode": mode}}},
        "commit_info": {}, "datetime": when, "version": "5.0",
        "benchmarks": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def standard_run(path, scale=1.0, slow=None, **kw):
    """numpy / fastb (python + fused) with times x scale; backends in ``slow`` get x their factor."""
    slow = slow or {}
    t = {"numpy": 4e-4, "fastb": 5e-6}
    e = []
    for b, v in t.items():
        f = scale * slow.get(b, 1.0)
        e += [bench_entry(GRAD, b, v * f), bench_entry(TBL3, b, 101 * v * f), bench_entry(COMPILE, b, 0.1 * f)]
    e.append(bench_entry(TBL3, "fastb", 2e-4 * scale * slow.get("fastb", 1.0), driver="fused"))
    return write_run(path, e, **kw)


def test_load_tbl3_shape_values_and_ratio(tmp_path):
    f = standard_run(tmp_path / "a.json")
    df = report.load([f])
    assert set(["backend", "hardware", "driver", "workload_s", "call_us", "compile_s", "ratio"]) <= set(df.columns)
    ours = df[df["source"] == "measured"].set_index(["backend", "driver"])
    assert ours.loc[("numpy", "python"), "workload_s"] == pytest.approx(101 * 4e-4)
    assert ours.loc[("numpy", "python"), "call_us"] == pytest.approx(400.0)
    assert ours.loc[("numpy", "python"), "compile_s"] == pytest.approx(0.1)
    assert math.isnan(ours.loc[("fastb", "fused"), "call_us"])  # no per-call time inside a fused loop
    # ratio: to the fastest row of the same run (fastb fused, 2e-4 s)
    assert ours.loc[("fastb", "fused"), "ratio"] == pytest.approx(1.0)
    assert ours.loc[("numpy", "python"), "ratio"] == pytest.approx(101 * 4e-4 / 2e-4)
    assert (ours["hardware"] == "Test CPU (2 threads)").all()


def test_paper_rows_are_labelled_and_complete(tmp_path):
    df = report.load([standard_run(tmp_path / "a.json")])
    paper = df[df["source"] == "paper"]
    assert len(paper) == 14 and (paper["measured"].str.startswith("paper Tbl. 3")).all()
    m1 = paper[paper["hardware"].str.startswith("M1")].set_index("kind")["workload_s"]
    assert m1["hand-coded adjoint"] == pytest.approx(92.5e-3)
    assert m1["JAX with JIT"] == pytest.approx(4.64) and m1["JAX without JIT"] == pytest.approx(263.0)
    enz = paper[paper["backend"] == "enzyme"]["workload_s"].tolist()
    assert enz == pytest.approx([918e-6, 279e-6])
    assert report.load([standard_run(tmp_path / "b.json")], paper=False)["source"].eq("measured").all()


def test_truncated_workload_is_scaled_and_says_so(tmp_path):
    f = write_run(tmp_path / "t.json", [bench_entry(TBL3, "slowb", 2 * 2.5, iterations=2, rounds=1),
                                        bench_entry(GRAD, "slowb", 2.5)])
    row = report.load([f], paper=False).iloc[0]
    assert row["workload_s"] == pytest.approx(101 * 2.5)
    assert "scaled from 2/101" in row["measured"]


def test_merging_machines_and_latest_run(tmp_path):
    standard_run(tmp_path / "box-a" / "1.json", machine="box-a", when="2026-01-01T00:00:00")
    standard_run(tmp_path / "box-a" / "2.json", machine="box-a", scale=2.0, when="2026-01-02T00:00:00")
    standard_run(tmp_path / "box-b" / "1.json", machine="box-b", scale=0.5, mode="full")
    (tmp_path / "notes.json").write_text('{"not": "a result"}')  # skipped inside a folder
    (tmp_path / "broken.json").write_text("{")  # also skipped there (an error only when named)
    all_runs = report.load_results([tmp_path])
    assert set(all_runs["run"]) == {"box-a/1", "box-a/2", "box-b/1"}
    latest = report.load([tmp_path], paper=False, latest=True)
    numpy = latest[(latest["backend"] == "numpy")].set_index("machine")["workload_s"]
    assert numpy["box-a"] == pytest.approx(2 * 101 * 4e-4)  # the newer run of box-a
    assert numpy["box-b"] == pytest.approx(0.5 * 101 * 4e-4)
    # ratios are taken within each run, so both machines' numpy rows have the same ratio
    r = latest[latest["backend"] == "numpy"]["ratio"].tolist()
    assert r[0] == pytest.approx(r[1])


def test_latest_keeps_each_rows_newest_run_full_first(tmp_path):
    """A run restricted to some backends (a GPU-only run) adds rows without hiding the others."""
    standard_run(tmp_path / "full.json", mode="full", when="2026-01-01T00:00:00")
    standard_run(tmp_path / "quick.json", scale=3.0, when="2026-01-03T00:00:00")  # newer, but quick
    write_run(tmp_path / "gpu.json", [bench_entry(TBL3, "numpy", 9e-3, device="gpu"),
                                      bench_entry(TBL3, "fastb", 1e-3, device="gpu")],
              mode="full", when="2026-01-02T00:00:00")
    write_run(tmp_path / "solo.json", [bench_entry(TBL3, "slowb", 7.0)], when="2026-01-04T00:00:00")
    df = report.load([tmp_path], paper=False, latest=True).set_index(["backend", "device", "driver"])
    assert df.loc[("numpy", "cpu", "python"), "workload_s"] == pytest.approx(101 * 4e-4)  # full beats newer quick
    assert df.loc[("numpy", "gpu", "python"), "workload_s"] == pytest.approx(9e-3)
    assert df.loc[("fastb", "gpu", "python"), "ratio"] == pytest.approx(1.0)  # within the GPU run
    assert df.loc[("slowb", "cpu", "python"), "workload_s"] == pytest.approx(7.0)
    assert math.isnan(df.loc[("slowb", "cpu", "python"), "ratio"])  # alone in its run: nothing to compare
    assert len(df) == 6  # numpy, fastb x2 drivers on cpu; numpy, fastb on gpu; slowb


def test_regress_ignores_machine_speed_but_catches_relative_slowdown(tmp_path):
    base = report.load_results([standard_run(tmp_path / "base.json")])
    twice_as_slow_machine = report.load_results([standard_run(tmp_path / "c1.json", scale=2.0)])
    v = report.regress(base, twice_as_slow_machine, reference="numpy", threshold=0.25)
    assert set(v["verdict"]) == {"ok", "reference"}
    fastb_slower = report.load_results([standard_run(tmp_path / "c2.json", slow={"fastb": 2.0})])
    v = report.regress(base, fastb_slower, reference="numpy", threshold=0.25)
    bad = v[v["verdict"] == "REGRESSED"]
    assert set(bad["backend"]) == {"fastb"} and len(bad) == 3  # gradient, tbl3 python, tbl3 fused
    fastb_faster = report.load_results([standard_run(tmp_path / "c3.json", slow={"fastb": 0.5})])
    v = report.regress(base, fastb_faster, reference="numpy", threshold=0.25)
    assert set(v[v["backend"] == "fastb"]["verdict"]) == {"improved"}


def test_regress_jitter_gives_noisy_rows_room(tmp_path):
    base = report.load_results([standard_run(tmp_path / "base.json")])
    e = [bench_entry(GRAD, "numpy", 4e-4), bench_entry(GRAD, "fastb", 7e-6, median=14e-6)]  # +40%, very noisy
    cur = report.load_results([write_run(tmp_path / "c.json", e)])
    noisy = report.regress(base, cur, reference="numpy", threshold=0.25, groups=[GRAD])
    assert noisy.set_index("backend").loc["fastb", "verdict"] == "ok"
    strict = report.regress(base, cur, reference="numpy", threshold=0.25, jitter_weight=0.0, groups=[GRAD])
    assert strict.set_index("backend").loc["fastb", "verdict"] == "REGRESSED"


def test_regress_cli_exit_status(tmp_path, capsys):
    base = standard_run(tmp_path / "base.json")
    same = standard_run(tmp_path / "same.json", scale=1.5)
    worse = standard_run(tmp_path / "worse.json", slow={"fastb": 3.0})
    assert cli.main(["regress", "--baseline", str(base), "--current", str(same)]) == 0
    assert cli.main(["regress", "--baseline", str(base), "--current", str(worse)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "fastb" in out
    assert cli.main(["regress", "--baseline", str(base), "--current", str(same), "--reference", "nope"]) == 2
    assert "reference backend 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "html"])
def test_table_cli_formats(tmp_path, capsys, fmt):
    f = standard_run(tmp_path / "a.json")
    assert cli.main(["table", str(f), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "Colab A100" in out
    if fmt == "csv":
        from io import StringIO

        df = pd.read_csv(StringIO(out))
        assert {"backend", "hardware", "driver", "workload_s", "call_us", "compile_s"} <= set(df.columns)


def test_table_cli_bad_input(tmp_path, capsys):
    assert cli.main(["table", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "x.json"
    bad.write_text('{"a": 1}')
    assert cli.main(["table", str(bad)]) == 2
    bad.write_text("not json")
    assert cli.main(["table", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3


def test_place_never_overwrites(tmp_path):
    names = []
    for i in range(3):
        tmp = tmp_path / f".partial-{i}"
        tmp.write_text(str(i))
        names.append(place(tmp, tmp_path, "run"))
    assert [p.name for p in names] == ["run.json", "run-1.json", "run-2.json"]
    assert [p.read_text() for p in names] == ["0", "1", "2"]
    assert not list(tmp_path.glob(".partial-*"))


def test_bench_quick_numpy_end_to_end(tmp_path, capsys):
    """`adjointbench bench --quick --backend numpy --out DIR`, then `table DIR --format csv`."""
    pytest.importorskip("pytest_benchmark")
    out = tmp_path / "res"
    assert cli.main(["bench", "--quick", "--backend", "numpy", "--out", str(out)]) == 0
    files = list(out.glob("*.json"))
    assert len(files) == 1 and "_quick_" in files[0].name
    capsys.readouterr()
    assert cli.main(["table", str(out), "--format", "csv", "--no-paper"]) == 0
    from io import StringIO

    df = pd.read_csv(StringIO(capsys.readouterr().out))
    row = df[(df["backend"] == "numpy") & (df["driver"] == "python")].iloc[0]
    for col in ("workload_s", "call_us", "compile_s"):
        assert math.isfinite(row[col]) and row[col] > 0
    info = json.loads(files[0].read_text())["machine_info"]["adjointbench"]
    assert {"cpu_model", "cpu_threads_usable", "gpu", "compiler", "versions"} <= set(info)
    assert {"python", "numpy", "numba", "Cython", "jax", "jaxlib", "enzyme-ad", "torch"} <= set(info["versions"])


def test_bench_rejects_unknown_backend(capsys):
    assert cli.main(["bench", "--quick", "--backend", "no-such-backend"]) == 2
    assert "unknown backend" in capsys.readouterr().err


# ---- the benchmark's correctness gate (bench/_bench.py), on deliberately wrong backends ----------

@pytest.fixture
def bench_helpers(monkeypatch):
    import sys

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "bench"))
    import _bench

    monkeypatch.setattr(_bench, "_GATED", {})
    monkeypatch.setattr(_bench, "_FUSED", {})
    yield _bench
    sys.modules.pop("_bench", None)


def _wrong_backend(scale_grad=1.0, fused_shift=0.0):
    import numpy as np

    from adjointbench.backends import Backend, DescentResult, Prepared, backend, python_descent

    numpy_backend = backend("numpy")  # before the tests patch the registry lookup

    class Wrong(Backend):
        name, kind, fused = "wrong", "test", True

        def _prepare(self, problem, *, device, dtype):
            good = numpy_backend.prepare(problem)

            def vg(u):
                J, g = good(u)
                return J, g * scale_grad

            return Prepared(vg, problem, device=device, dtype=dtype)

        def _prepare_descent(self, problem, *, iterations, step, device, dtype):
            vg = self._prepare(problem, device=device, dtype=dtype)

            def run(u0):
                r = python_descent(vg, u0, iterations, step)
                return DescentResult(r.u, r.costs + fused_shift * np.arange(iterations))

            return run

    return Wrong()


def test_gate_refuses_a_wrong_gradient(bench_helpers, monkeypatch):
    import adjointbench.backends as backends

    wrong = _wrong_backend(scale_grad=1 + 1e-6)
    monkeypatch.setattr(backends, "backend", lambda name: wrong)
    with pytest.raises(pytest.fail.Exception, match="differs from complex step"):
        bench_helpers.gated(bench_helpers.Case("wrong", "cpu", "float64"))


def test_gate_refuses_a_fused_driver_that_strays(bench_helpers, monkeypatch):
    import adjointbench.backends as backends

    wrong = _wrong_backend(fused_shift=1e-6)
    monkeypatch.setattr(backends, "backend", lambda name: wrong)
    g = bench_helpers.gated(bench_helpers.Case("wrong", "cpu", "float64"))  # the gradient itself is right
    with pytest.raises(pytest.fail.Exception, match="fused driver differs"):
        bench_helpers.fused_driver(g)


def test_plot_writes_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    f = standard_run(tmp_path / "a.json")
    out = tmp_path / "figs"
    assert cli.main(["plot", str(f), "--out", str(out)]) == 0
    for name in ("tbl3.png", "call_vs_compile.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _collect(*args: str) -> str:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=root, capture_output=True, text=True, timeout=300)
    return proc.stdout


def test_root_benchmark_only_runs_bench_and_plain_runs_never_do():
    pytest.importorskip("pytest_benchmark")
    routed = _collect("--benchmark-only", "--ab-backend", "numpy")
    assert "bench/test_gradient.py::test_gradient[numpy-cpu-float64]" in routed
    assert "tests/" not in routed
    # `pytest .` must not start the benchmark by accident (tests/ left out here only for speed)
    assert "bench/" not in _collect(".", "--ignore=tests")


# ---- the scaling study's table (report/scale.py) on synthetic scale entries -------------------

def scale_entry(backend, t_min, *, axis="state", n=4000, nsteps=40, batch=0, cost_s=None, batch_idiom=None,
                cost_idiom=None, devices=None, yardstick=False, kind="AD", peak_bytes=2**20):
    e = bench_entry("scale", backend, t_min, kind="yardstick (plain C, timed in C)" if yardstick else kind)
    key = f"scale:{axis}:lorenz96:n={n},nsteps={nsteps}" + (f",B={batch}" if batch else "")
    e["extra_info"].update({
        "problem": key, "model": "lorenz96", "axis": axis, "n": n, "nsteps": nsteps, "batch": batch,
        "cost_s": cost_s, "cost_idiom": cost_idiom, "batch_idiom": batch_idiom, "prepare_s": 0.5,
        "first_call_s": 0.25, "trajectory_bytes": 8 * n * (nsteps + 1) * max(1, batch), "peak_bytes": peak_bytes,
    })
    if devices is not None:
        e["extra_info"]["info_devices"] = devices
    if yardstick:
        e["extra_info"].update({"yardstick": True, "self_timed_s": t_min})
    return e


def test_scale_table_ratios_like_by_like_and_devices(tmp_path, capsys):
    path = write_run(tmp_path / "s.json", [
        scale_entry("C gcc -O3", 1e-3, cost_s=4e-4, yardstick=True),
        scale_entry("jaxish", 3e-3, cost_s=1e-3),
        scale_entry("sharded", 2e-3, axis="shard", devices=4, cost_s=1e-3),
        # an ensemble: batched gradient over batched forward by the same idiom -> a ratio
        scale_entry("jaxish", 6.4e-2, axis="ensemble", n=40, batch=64, cost_s=1.6e-2, batch_idiom="vmap", cost_idiom="vmap"),
        # threads over a forward loop: no ratio (it would divide unlike things)
        scale_entry("threaded", 1e-2, axis="ensemble", n=40, batch=64, cost_s=4e-2, batch_idiom="threads", cost_idiom="loop"),
    ])
    df = report.scale_table(report.load_results([path]))
    row = {(r.backend, r.axis): r for r in df.itertuples()}
    assert row[("jaxish", "state")].ratio == pytest.approx(3.0)
    assert row[("jaxish", "state")].x_c == pytest.approx(3.0)
    assert row[("jaxish", "ensemble")].ratio == pytest.approx(4.0)
    assert row[("jaxish", "ensemble")].throughput == pytest.approx(1000.0)
    assert math.isnan(row[("threaded", "ensemble")].ratio)
    assert row[("sharded", "shard")].devices == 4 and row[("jaxish", "state")].devices == 1
    shown = report.scale_display_frame(df)
    assert shown["hardware"].str.contains("×4 devices").sum() == 1
    assert cli.main(["table", str(path), "--scale", "--format", "md"]) == 0
    assert "×4 devices" in capsys.readouterr().out
    assert cli.main(["table", str(path), "--scale", "--format", "csv"]) == 0
    assert ",devices," in capsys.readouterr().out.splitlines()[0]


def test_scale_targets_read_every_large_cpu_case(tmp_path, capsys, rng):
    """time / C, gradient / forward and memory / trajectory against their bounds at N >= 4e4 only:
    a backend meeting a bound at one size and not the other says at which."""
    from adjointbench.report.scale import RATIO_TARGET, X_C_TARGETS

    bound = X_C_TARGETS["numba"]
    c = rng.uniform(1e-3, 1e-2, 3)
    under, over = bound * rng.uniform(0.5, 0.95), bound * rng.uniform(1.05, 2.0)
    entries = []
    for t, n in zip(c, (4000, 40_000, 400_000), strict=True):
        entries.append(scale_entry("C gcc -O3", t, n=n, cost_s=t / 3, yardstick=True))
        # numba: far over the bound at N = 4000 (not read), under it at 4e4, over at 4e5
        f = {4000: 10 * bound, 40_000: under, 400_000: over}[n]
        entries.append(scale_entry("numba", f * t, n=n, cost_s=f * t / (RATIO_TARGET + 1), kind="hand adjoint",
                                   peak_bytes=int(1.2 * 8 * n * 41)))
        entries.append(scale_entry("numpy", 3 * t, n=n, cost_s=t, kind="hand adjoint", peak_bytes=int(2.0 * 8 * n * 41)))
    path = write_run(tmp_path / "s.json", entries)
    t = report.scale_targets(report.scale_table(report.load_results([path])))
    row = {(r["target"], r["backend"]): r for r in t.to_dict("records")}
    assert row[("time / C", "numba")]["met"] == "at N = 4e4"
    assert row[("time / C", "numba")]["measured"] == f"{under:.3g}–{over:.3g}"
    assert row[("time / C", "numpy")]["met"] == "yes" and row[("time / C", "numpy")]["at N"] == "4e4, 4e5"
    # numba is compiled: its ratio (RATIO_TARGET + 1) misses; numpy is not held to it
    assert row[("gradient / forward", "numba")]["met"] == "no" and ("gradient / forward", "numpy") not in row
    assert row[("peak memory / trajectory", "numba")]["met"] == "yes"
    assert row[("peak memory / trajectory", "numpy")]["met"] == "no"
    assert cli.main(["table", str(path), "--scale", "--targets", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(report.scale.TARGET_COLUMNS)
    assert cli.main(["table", str(path), "--targets"]) == 2
    assert "--targets reads the scaling study" in capsys.readouterr().err


def test_bench_cpu_devices_sets_xla_flags_and_refuses_nonsense(capsys, monkeypatch):
    from argparse import Namespace

    from adjointbench.commands.bench import suite_env

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8")
    env = suite_env(Namespace(cpu_devices=4))
    assert env["XLA_FLAGS"].split() == ["--xla_cpu_foo=1", "--xla_force_host_platform_device_count=4"]
    assert suite_env(Namespace(cpu_devices=None))["XLA_FLAGS"].endswith("=8")
    assert cli.main(["bench", "--scale", "--cpu-devices", "0", "--backend", "jax-sharded"]) == 2
    err = capsys.readouterr().err
    assert "--cpu-devices must be a positive integer" in err and len(err.strip().splitlines()) == 1


def test_latex_and_markdown_escape_every_special_character():
    from adjointbench import tables

    nasty = r"a\b~c^d_e%f&g$h#i{j}k|l"
    tex = tables.latex(["name_1", "time"], [[nasty, "3 µs × 2 —"]])
    body = tex.split(r"\midrule")[1]
    for raw, escaped in (("\\", r"\textbackslash"), ("~", r"\textasciitilde"), ("^", r"\textasciicircum"),
                         ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("$", r"\$"), ("#", r"\#"), ("{", r"\{")):
        assert escaped in body, raw
    assert r"name\_1" in tex and r"\textmu{}" in tex and r"\texttimes{}" in tex and "--" in tex
    # one column separator per row: no stray & from the data
    assert body.count("&") - body.count(r"\&") == 1
    md = tables.markdown(["a", "b"], [[nasty, None]], right=[False, True])
    assert r"k\|l" in md and md.splitlines()[1].endswith(":|")
    assert len(md.splitlines()[2].split(" | ")) == 2
