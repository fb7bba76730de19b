"""The paper's experiments, one module per table or figure (DAPPER style).

Each module defines ``NAME``, ``TITLE``, ``DEFAULT_BACKENDS`` and
``run(*, backends, quick, outdir, progress) -> Outcome``; ``run`` writes
``<outdir>/<NAME>.{json,md,png}`` and returns what it wrote, so that
``adjointbench experiment NAME`` only prints it.  A backend that cannot run here is skipped with
its reason, recorded in the JSON and the markdown.
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
#: module that implements each experiment (Fig. 6 lives with Tbl. 4: same model)
MODULES = {"table2": "table2", "fig5": "fig5", "table4": "table4", "fig6": "table4",
           "fig1": "fig1", "fig2": "fig2", "fig3": "fig3"}
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
    outdir.mkdir(parents=True, exist_ok=True)
    return mod.run(name=name, backends=backends, quick=quick, outdir=outdir, progress=progress)


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
    data = dict(data)
    data.setdefault("environment", environment())
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
