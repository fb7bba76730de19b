"""``jsonable(x)``: any result the project records as plain JSON, written once.

NumPy scalars and arrays become Python numbers and lists, mappings get string keys, paths
become strings, non-finite floats become null (strict JSON has no NaN), and anything else
that JSON cannot hold is recorded by its ``str`` rather than failing the run that made it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, Path):
        return str(x)
    return str(x)
