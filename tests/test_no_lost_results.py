"""A run never replaces or shadows committed results, and the README's commands run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from adjointbench import cli
from adjointbench.commands.bench import output_folder
from adjointbench.report import context

ROOT = Path(__file__).resolve().parents[1]


def test_runs_go_to_the_users_folder_unless_asked(tmp_path):
    assert output_folder(tmp_path, "m") == tmp_path / "runs" / "m"
    assert output_folder(tmp_path, "m", results=True) == tmp_path / "results" / "m"
    assert output_folder(tmp_path, "m", out=str(tmp_path / "x")) == tmp_path / "x"
    assert "/runs/" in (ROOT / ".gitignore").read_text()


def test_machine_names_tell_hosts_apart(monkeypatch):
    monkeypatch.delenv("ADJOINTBENCH_MACHINE", raising=False)
    here = context.machine_context()["machine"]
    monkeypatch.setattr("socket.gethostname", lambda: "another-host-of-the-same-model")
    other = context.machine_context()["machine"]
    assert here != other and here.rsplit("-", 1)[0] == other.rsplit("-", 1)[0]  # same CPU label, other host
    monkeypatch.setenv("ADJOINTBENCH_MACHINE", "my-box")
    assert context.machine_context()["machine"] == "my-box"


def test_problem_rows_never_shadow_the_paper_rows(tmp_path):
    pd = pytest.importorskip("pandas")
    from adjointbench import report
    from test_report import bench_entry, write_run

    paper = [bench_entry("gradient", "numpy", 4e-4), bench_entry("tbl3", "numpy", 4e-2)]
    write_run(tmp_path / "full.json", paper, mode="full", when="2026-01-01T00:00:00")
    other = bench_entry("gradient", "numpy", 9e-3)
    other["extra_info"].update(problem="lorenz96:n=40,nsteps=40", model="lorenz96", problem_label="l96", n_control=40)
    write_run(tmp_path / "newer.json", [other], mode="full", when="2026-01-02T00:00:00")
    results = report.load_results([tmp_path], latest=True)
    assert set(results["problem"]) == {"paper", "lorenz96:n=40,nsteps=40"}
    t = report.tbl3(results, paper=False)
    assert t.loc[t["driver"] == "python", "call_us"].iloc[0] == pytest.approx(400.0)  # the paper's call, not N = 40's
    g = report.gradient_table(results)
    assert isinstance(g, pd.DataFrame) and set(g["problem"]) == {"paper", "lorenz96:n=40,nsteps=40"}


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    cmds = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].split(" > ")[0].strip()  # comments and redirections are the shell's
            if line.startswith("adjointbench "):
                cmds.append(line)
    return cmds


def test_readme_commands_parse(tmp_path):
    """Every `adjointbench ...` line of the README is a valid command line (parsed, not run)."""
    cmds = _readme_commands()
    assert len(cmds) > 10
    parser = cli.build_parser()
    for line in cmds:
        argv = shlex.split(line.replace("<machine>", "m").replace("[--quick]", ""))[1:]
        try:
            parser.parse_args(argv)
        except cli.UsageError as e:  # pragma: no cover - the failure message is the point
            pytest.fail(f"README command does not parse: {line}: {e}")


def test_readme_regress_command_runs_as_written(capsys, monkeypatch):
    """The documented regression check, with its defaults (CI's), on the committed baseline."""
    pytest.importorskip("pandas")
    line = next(c for c in _readme_commands() if c.startswith("adjointbench regress"))
    assert "--threshold" not in line  # the defaults are CI's: nothing to add
    monkeypatch.chdir(ROOT)
    argv = shlex.split(line)[1:]
    argv[argv.index("--current") + 1] = "results/baseline"  # a run of one's own: the baseline itself
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "baseline:" in out and "current:" in out and "no regression" in out


def test_progress_lines_on_a_terminal_only(monkeypatch):
    """bench/: a line per case with elapsed and estimated time left on a terminal; none in CI."""
    import importlib.util
    import sys

    pytest.importorskip("pytest_benchmark")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_conftest", ROOT / "bench" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Reporter:
        def __init__(self):
            self.lines = []

        def write_line(self, line, **_):
            self.lines.append(line)

    r = Reporter()
    p = mod._Progress(r, total=3)
    for node in ("bench/a.py::test_x[numpy]", "bench/a.py::test_x[jax]", "bench/b.py::test_y[torch]"):
        p.start(node)
    assert r.lines[0].startswith("[1/3 0:00] test_x[numpy]")
    assert "left]" in r.lines[1] and r.lines[2].endswith("test_y[torch]")

    class Config:
        def getoption(self, name):
            return 0

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    assert mod._progress_wanted(Config())
    monkeypatch.setenv("CI", "true")
    assert not mod._progress_wanted(Config())
    sys.modules.pop("_bench", None)
