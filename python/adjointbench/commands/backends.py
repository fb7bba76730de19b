"""``adjointbench backends``: list every backend with its kind and availability."""

from __future__ import annotations

import argparse
import json

from ..backends import all_backends

NAME = "backends"
HELP = "list the gradient backends, their kind and whether they can run here"
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--matrix", action="store_true",
                   help="print the declared support matrix (backend x model: gradient, fused, batch idiom, "
                        "forward-only) as markdown")


def rows() -> list[dict]:
    out = []
    for b in all_backends():
        ok, reason = b.available()
        out.append({
            "name": b.name, "kind": b.kind, "available": ok, "reason": reason,
            "fused": b.fused, "devices": b.devices() if ok else [], "dtypes": list(b.dtypes),
            "description": b.description, "models": list(b.models),
            "fused_models": [m for m in b.models if b.has_fused(m)],
            "cost_models": [m for m in b.models if b.has_cost(m)],
            "batch_idiom": b.batch_idiom if hasattr(b, "_prepare_batch") else "loop",
        })
    return out


def matrix() -> str:
    """The declared (backend, model) pairs as a markdown table: what exists in code, here or not."""
    from ..models import model_names

    models = model_names()
    head = ["backend", "kind", *models, "fused driver", "batch idiom", "forward-only J"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows():
        cells = [f"`{r['name']}`", r["kind"], *("yes" if m in r["models"] else "—" for m in models),
                 ", ".join(r["fused_models"]) or "—", r["batch_idiom"], ", ".join(r["cost_models"]) or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.matrix:
        print(matrix())
        return 0
    table = rows()
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    width = max(len(r["name"]) for r in table)
    kwidth = max(len(r["kind"]) for r in table)
    for r in table:
        status = "available" if r["available"] else f"unavailable: {r['reason']}"
        fused = ", fused driver" if r["fused"] else ""
        print(f"{r['name']:<{width}}  {r['kind']:<{kwidth}}  {status}{fused}")
    return 0
