"""Memory worker of the ``scale`` group: one process per backend x device x dtype.

Protocol: started with a JSON spec (backend, device, dtype); reads one line per case, the
path of a pickle holding the problem (and the batch's controls), and answers one JSON line:
``rss_before`` (bytes resident after prepare() and a warm-up call), ``peak_rss`` (the kernel's
high-water mark during one more call, reset just before it), ``peak_bytes`` = their
difference, and the device's own account where the backend runs on an accelerator.
"""

from __future__ import annotations

import ctypes
import gc
import json
import pickle
import sys
from typing import Any


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


try:
    _trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: freed heap may stay resident (the peak is then lower)
    _trim = None


def settle() -> None:
    gc.collect()
    if _trim is not None:
        _trim(0)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def device_probe(backend: Any, device: str):
    """(reset, read) for the device's peak bytes, or None on the CPU."""
    if device == "cpu":
        return None
    if backend.name.startswith("torch"):
        import torch

        return torch.cuda.reset_peak_memory_stats, torch.cuda.max_memory_allocated
    if "jax" in backend.name:
        import jax

        dev = jax.devices({"gpu": "gpu", "tpu": "tpu"}.get(device, device))[0]

        def read() -> int:
            stats = dev.memory_stats() or {}
            return int(stats.get("peak_bytes_in_use", 0))

        return (lambda: None), read
    return None


def main() -> int:
    spec = json.loads(sys.argv[1])
    from adjointbench.backends import backend

    b = backend(spec["backend"])
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        try:
            with open(path, "rb") as f:
                case = pickle.load(f)
            problem, U = case["problem"], case["U"]
            if U is None:
                fn = b.prepare(problem, device=spec["device"], dtype=spec["dtype"])
                arg = problem.u0
            else:
                fn = b.prepare_batch(problem, device=spec["device"], dtype=spec["dtype"])
                arg = U
            out = fn(arg)  # warm-up: compiles, fills caches
            del out
            settle()
            probe = device_probe(b, spec["device"])
            if probe is not None:
                probe[0]()
                dev_before = probe[1]()
            before = _status_bytes("VmRSS")
            ok = reset_peak()
            out = fn(arg)
            peak = _status_bytes("VmHWM")
            res = {"rss_before": before, "peak_rss": peak, "peak_bytes": max(0, peak - before) if ok else None,
                   "hwm_reset": ok}
            if probe is not None:
                res["device_peak_bytes"] = max(0, probe[1]() - dev_before)
            del out, fn
            settle()
        except Exception as e:  # noqa: BLE001 - reported to the parent, which fails that case
            res = {"error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
