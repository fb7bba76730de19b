"""Import of the optional native extensions, with the reason when one is missing."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType


def build_status(module: str) -> str:
    """What the install recorded about building ``adjointbench.<module>`` ('' if nothing)."""
    path = Path(__file__).with_name("_native_build.json")
    try:
        status = json.loads(path.read_text()).get(f"adjointbench.{module}", {})
    except (OSError, ValueError):
        return ""
    return status.get("reason", "")


def load(module: str) -> tuple[ModuleType | None, str]:
    """(module, '') or (None, reason) for the extension ``adjointbench.<module>``."""
    try:
        return importlib.import_module(f"adjointbench.{module}"), ""
    except ImportError as e:
        why = build_status(module) or f"{e}"
        return None, f"native extension adjointbench.{module} is not built ({why}); reinstall with the build toolchain"


def kernel_source(relpath: str) -> Path:
    """A file of kernels/: shipped in the package (adjointbench/_kernels/) or in a source checkout.

    Raises FileNotFoundError naming both places when neither has it.
    """
    here = Path(__file__).resolve().parent
    candidates = (here / "_kernels" / relpath, here.parents[1] / "kernels" / relpath)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"kernel source {relpath} not found (looked in {', '.join(map(str, candidates))})")
