"""Peak memory of one call, measured in this process (the ``scale`` group).

Linux: ``/proc/self/status`` has the resident set (VmRSS) and its high-water mark (VmHWM);
writing 5 to ``/proc/self/clear_refs`` resets the mark to the current RSS (Linux >= 4.0), and
glibc's ``malloc_trim`` hands freed heap back to the kernel, so memory freed by earlier cases
neither hides nor inflates this one.  ``Peak.start()`` before ``prepare()``; after the timing,
``Peak.call(fn, arg)`` resets the mark and makes one more call (a case timed in one round of one
call is armed before that round instead, ``arm``/``read``: the same measurement, one call fewer): the peak above the RSS before
``prepare()`` is what holding and running this gradient takes (prepared state such as work
arrays and compiled code, plus the call's tape and temporaries); compilation's transient
memory is not in it, as the mark is reset after prepare and the first calls.  Measured in the
benchmark process rather than a fresh one per case, because a fresh process would compile
every case twice (the JAX and Enzyme-JAX compiles are most of a quick run's time).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any

try:
    _trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: freed heap may stay resident
    _trim = None


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def settle() -> None:
    gc.collect()
    if _trim is not None:
        _trim(0)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Peak:
    """Host (and device) peak memory of one call above the resident memory before prepare()."""

    def __init__(self, device: str = "cpu", backend: str = "") -> None:
        self.device, self.backend = device, backend
        self.before: int | None = None
        self._reset = False
        self._dev: Callable[[], int] | None = None

    def start(self) -> None:
        settle()
        self.before = _status_bytes("VmRSS")

    def call(self, fn: Callable[[Any], Any], arg: Any) -> dict[str, Any]:
        """Settle, reset the marks, make one call: its peak (``arm`` + the call + ``read``)."""
        self.arm()
        out = fn(arg)
        res = self.read()
        del out
        return res

    def arm(self) -> None:
        """Settle and reset the high-water marks; the next call's peak is what ``read`` gives.
        A single timed call between ``arm`` and ``read`` is measured exactly as ``call`` measures,
        so a case of seconds per call need not be run once more for its memory."""
        settle()
        self._reset = _reset_hwm()
        self._dev = self._device_reset()

    def read(self) -> dict[str, Any]:
        peak = _status_bytes("VmHWM")
        res: dict[str, Any] = {"rss_before": self.before, "peak_rss": peak}
        if self._reset and peak is not None and self.before is not None:
            res["peak_bytes"] = max(0, peak - self.before)
        if self._dev is not None:
            res["device_peak_bytes"] = self._dev()
        return res

    def _device_reset(self) -> Callable[[], int] | None:
        """A reader of the accelerator's peak bytes since now, or None on the CPU."""
        if self.device == "cpu":
            return None
        if self.backend.startswith("torch"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.max_memory_allocated
        if "jax" in self.backend:
            import jax

            dev = jax.devices({"gpu": "gpu", "tpu": "tpu"}.get(self.device, self.device))[0]
            in_use = (dev.memory_stats() or {}).get("bytes_in_use", 0)
            # JAX's peak counter cannot be reset: report the peak above what was in use now,
            # which is exact when no earlier case peaked higher
            return lambda: max(0, int((dev.memory_stats() or {}).get("peak_bytes_in_use", 0)) - int(in_use))
        return None
