"""The machine a run comes from: CPU, threads, GPU, compiler, library versions.

Needs only the standard library, so bench/ records it and ``adjointbench bench`` names its
result folder without pandas.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sysconfig
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

#: distributions whose versions are recorded with every run
VERSIONED = (
    "numpy", "scipy", "numba", "llvmlite", "Cython", "jax", "jaxlib", "enzyme-ad", "torch",
    "pytest-benchmark", "pandas",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores = set()
    phys = core = None
    for line in text.splitlines() + [""]:
        if line.startswith("physical id"):
            phys = line.split(":")[1].strip()
        elif line.startswith("core id"):
            core = line.split(":")[1].strip()
        elif not line.strip() and core is not None:
            cores.add((phys, core))
            phys = core = None
    return len(cores) or None


def gpu_names() -> list[str]:
    """NVIDIA GPUs visible through nvidia-smi (the other accelerators are named by backends)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _compiler() -> str:
    """The C compiler that builds the native kernels (setup.py uses sysconfig's CC)."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    exe = shutil.which(cc)
    if not exe:
        return f"{cc} (not found)"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return cc
    return (out.splitlines() or [cc])[0].strip()


def versions() -> dict[str, str]:
    """Installed versions (without importing the libraries: importing torch/jax costs seconds)."""
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "unknown"


def host_id() -> str:
    """Six hex digits that tell two hosts of the same CPU model apart (machine-id, host name, MAC).

    Part of the default machine name, so that a run on another machine never lands in (and
    shadows) a folder of committed results; ``ADJOINTBENCH_MACHINE`` names a machine instead.
    """
    import hashlib
    import socket
    import uuid

    try:
        mid = Path("/etc/machine-id").read_text().strip()
    except OSError:
        mid = ""
    node = uuid.getnode()
    mac = "" if node >> 40 & 1 else str(node)  # uuid's fallback is random per process (multicast bit set)
    return hashlib.sha256(f"{mid}|{socket.gethostname()}|{mac}".encode()).hexdigest()[:6]


def machine_context() -> dict[str, Any]:
    """What a result must carry to be compared across machines."""
    cpu = _cpu_model()
    usable: int | None  # os.cpu_count() is None where the count cannot be determined
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpus = gpu_names()
    threads_env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "XLA_FLAGS", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    short_cpu = re.sub(r"\((R|TM)\)|CPU|Processor|\d+-Core", "", cpu)
    short_cpu = " ".join(short_cpu.replace("@", " @").split())
    name = os.environ.get("ADJOINTBENCH_MACHINE") or slug(
        f"{short_cpu.split(' @')[0]} {usable}t" + (f" {gpus[0]}" if gpus else "") + f" {host_id()}")
    return {
        "machine": name,
        "cpu_model": cpu,
        "cpu_label": f"{short_cpu} ({usable} threads)",
        "cpu_logical": os.cpu_count(),
        "cpu_physical": _physical_cores(),
        "cpu_threads_usable": usable,
        "threads_env": threads_env,
        "gpu": gpus[0] if gpus else "none",
        "gpus": gpus,
        "os": platform.platform(),
        "compiler": _compiler(),
        "versions": versions(),
    }


@lru_cache(maxsize=1)
def machine_context_cached() -> dict[str, Any]:
    """``machine_context()`` once per process (it runs nvidia-smi and the compiler)."""
    return machine_context()
