"""The paper's experiments, one module per table or figure (DAPPER style).

Each module defines ``NAME``, ``TITLE``, ``DEFAULT_BACKENDS`` and three functions with one job
each (computing, rendering, summarising), which :func:`run` joins with the one writer:

- ``compute(*, backends, quick, progress) -> dict``: runs the experiment and returns its JSON
  document (``experiment``, ``title``, ``skipped`` and whatever the renderer draws from);
- ``render(data) -> (markdown, figure or None)``: the table(s), with the paper's values beside
  ours, and the figure, from that document alone (it may evaluate the problem's own closed-form
  definition, such as a contour background, but never re-runs the experiment), so a committed
  ``NAME.json`` re-renders without recomputing (:func:`rerender`);
- ``summary(data)``: what ``adjointbench experiment NAME --json`` prints.

:func:`run` writes ``<outdir>/<NAME>.{json,md,png}`` (:func:`write`) and returns what it wrote,
so that ``adjointbench experiment NAME`` only prints it.  A backend that cannot run here is
skipped with its reason, recorded in the JSON and the markdown.
"""

from __future__ import annotations

import importlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonable import jsonable

#: experiment names in the order ``experiment all`` runs them
NAMES = ("table2", "fig5", "table4", "fig6", "fig1", "fig2", "fig3")
#: module that implements each experiment (Tbl. 4 and Fig. 6 share ``discontinuous.py``'s model)
MODULES = {name: name for name in NAMES}
#: the user's own folder (git-ignored in a checkout); results/experiments/ holds the committed
#: full runs and is written only when asked for (``--outdir results/experiments``)
DEFAULT_OUTDIR = Path("runs") / "experiments"


@dataclass
class Outcome:
    """What an experiment produced: ``data`` is its JSON document, ``markdown`` its table(s)
    with the paper's values beside ours, ``stdout_json`` what ``--json`` prints."""

    name: str
    data: dict[str, Any]
    markdown: str
    stdout_json: Any
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def module(name: str):
    if name not in MODULES:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(NAMES)}, all")
    return importlib.import_module(f"{__name__}.{MODULES[name]}")


def run(name: str, *, backends: list[str] | None = None, quick: bool = False,
        outdir: Path = DEFAULT_OUTDIR, progress: bool = True) -> Outcome:
    """Run experiment ``name`` and write its files under ``outdir`` (``outdir/quick/`` when
    ``quick``: a reduced run never replaces a full one)."""
    mod = module(name)
    outdir = Path(outdir) / "quick" if quick else Path(outdir)
    data = mod.compute(backends=backends, quick=quick, progress=progress)
    data.setdefault("environment", environment())
    markdown, fig = mod.render(data)
    outdir.mkdir(parents=True, exist_ok=True)
    files = write(outdir, name, data, markdown, fig)
    return Outcome(name, data, markdown, mod.summary(data), files, data.get("skipped", {}))


def rerender(path: Path, outdir: Path | None = None) -> Outcome:
    """Render a written ``NAME.json`` again (after a change to a renderer), without recomputing;
    ``outdir``: write the markdown and figure there (default: print-only, nothing written)."""
    try:
        data = json.loads(Path(path).read_text())
        name = data["experiment"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not an experiment's JSON ({type(e).__name__}: {e})") from None
    mod = module(name)
    markdown, fig = mod.render(data)
    files: list[Path] = []
    if outdir is not None:
        Path(outdir).mkdir(parents=True, exist_ok=True)
        files = write(Path(outdir), name, data, markdown, fig)
    elif fig is not None:
        pyplot().close(fig)
    return Outcome(name, data, markdown, mod.summary(data), files, data.get("skipped", {}))


def resolve_backends(requested: list[str] | None, default: list[str],
                     supported: Callable[[str], str | None] | None = None) -> tuple[list[str], dict[str, str]]:
    """Backends to use and those skipped with their reason.

    ``requested`` (from ``--backend``) must name registered backends (else ValueError);
    ``default`` may name backends that another installation does not register.
    ``supported(name)`` returns a reason when the experiment has no use for that backend.
    """
    from ..backends import backend, names

    known = names()
    chosen = list(requested) if requested else list(default)
    if requested:
        for n in requested:
            backend(n)  # unknown name: ValueError listing the known ones
    use: list[str] = []
    skipped: dict[str, str] = {}
    for n in chosen:
        if n in use or n in skipped:
            continue
        if n not in known:
            skipped[n] = "not registered in this installation"
            continue
        reason = supported(n) if supported else None
        if reason:
            skipped[n] = reason
            continue
        ok, why = backend(n).available()
        if not ok:
            skipped[n] = why
            continue
        use.append(n)
    return use, skipped


def environment() -> dict[str, Any]:
    """Where the numbers came from (recorded in every JSON)."""
    import numpy

    return {"python": platform.python_version(), "numpy": numpy.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}


def write(outdir: Path, name: str, data: dict[str, Any], markdown: str, fig=None) -> list[Path]:
    """Write <name>.json, <name>.md and, when ``fig`` is a matplotlib figure, <name>.png."""
    files = []
    p = outdir / f"{name}.json"
    p.write_text(json.dumps(jsonable(data), indent=1) + "\n")
    files.append(p)
    p = outdir / f"{name}.md"
    p.write_text(markdown.rstrip() + "\n")
    files.append(p)
    if fig is not None:
        import matplotlib.pyplot as plt

        p = outdir / f"{name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table (``tables.markdown``: pandas and tabulate)."""
    from .. import tables

    return tables.markdown(header, rows)


def skipped_md(skipped: dict[str, str]) -> str:
    if not skipped:
        return ""
    return "\nSkipped backends:\n" + "\n".join(f"- `{k}`: {v}" for k, v in skipped.items()) + "\n"


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
