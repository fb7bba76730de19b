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


def rows() -> list[dict]:
    out = []
    for b in all_backends():
        ok, reason = b.available()
        out.append({
            "name": b.name, "kind": b.kind, "available": ok, "reason": reason,
            "fused": b.fused, "devices": b.devices() if ok else [], "dtypes": list(b.dtypes),
            "description": b.description,
        })
    return out


def run(args: argparse.Namespace) -> int:
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
