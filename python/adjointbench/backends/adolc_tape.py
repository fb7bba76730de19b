"""Backends ``adolc`` and ``adolc-retape``: ADOL-C, AD by operator overloading in C++.

Both models' forward model and cost are written once in C++ as templates on the scalar type
(kernels/adolc/lorenz_adolc.cpp); instantiated on ADOL-C's ``adouble``, running them records
every operation on a tape (trace_on .. trace_off), which ADOL-C's drivers interpret:
zos_forward (values, keep = 1: the values the reverse sweep needs go to the Taylor stack)
then fos_reverse (one reverse sweep, the adjoint).  The extension ``adjointbench._adolc``
(build_tools/ext_adolc.py) wraps them; it holds the one lock around every ADOL-C call (ADOL-C
is not thread-safe), keeps every tape in memory (buffers sized from the problem, see its
docstring) and turns ADOL-C's C++ errors into ValueError.

``adolc`` (tape replay): the tape is recorded once, in ``prepare``, at u0, and every call
replays it at the new point.  This is valid while the control flow does not depend on the
values: true for both models (loops and indices depend on the problem's sizes only), and
checked at every call by ADOL-C's return code (3 here; -1 would mean a comparison recorded
on the tape now goes the other way: the wrapper then re-tapes at that point and counts it in
``Prepared.info`` of the kernel, ``branch_retapes``).

``adolc-retape`` (re-tape): trace_on/trace_off at every call, then ADOL-C's gradient()
driver on the fresh tape: what a code whose control flow depends on values must do; the
cost of recording is then part of every gradient.

Batches (``prepare_batch``, idiom "native loop (tape replay)"): one native call loops over the
members in C++, each a zos_forward + fos_reverse of the same tape: ``adolc``'s tape from
``prepare``; for ``adolc-retape`` a tape recorded afresh at the first member of every call.
ADOL-C's drivers are sequential on one tape (and the library is not thread-safe), so threads
are not an option.

Forward-only J (``prepare_cost``, the cheap-gradient ratio's denominator): ``adolc``: a
zos_forward of the tape with keep = 0 (the interpreter, no Taylor stack); ``adolc-retape``:
the plain double forward model (the same C++ template instantiated on double, no ADOL-C).
Their batches (``prepare_cost_batch``) run the same per member in one native loop, the idiom
of the gradient batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import native
from ..models import Lorenz96Problem
from ..models.lorenz96 import default_memory_budget
from ..problem import PARAM_NAMES, Lorenz63Problem
from .base import Backend, Prepared, PreparedBatch, check_controls

MODULE = "_adolc"
INSTALL = "apt-get install -y libadolc-dev (tools/system-deps.sh)"


def _module():
    mod, reason = native.load(MODULE)
    if mod is None:
        raise ValueError(reason)
    return mod


def _budget(problem: Any) -> int:
    budget = getattr(problem, "memory_budget", None)
    return int(budget) if budget is not None else default_memory_budget()


def make_tape(problem: Any):
    """The native tape object for this problem: data converted and checked, buffers sized."""
    mod = _module()
    if isinstance(problem, Lorenz96Problem):
        tape = mod.Lorenz96Tape(
            problem.n, problem.dt, problem.F, problem.obs_steps, problem.obs_indices, problem.obs_values,
            problem.sigma_o, problem.background, problem.sigma_b, problem.n_control, problem.check_control,
            _budget(problem),
        )
    else:
        tape = mod.Lorenz63Tape(
            problem.dt, [problem.params[k] for k in PARAM_NAMES], problem.obs_steps, problem.obs_values,
            problem.n_control, problem.check_control, _budget(problem),
        )
    tape.size_buffers()
    return tape


def _info(tape: Any, mode: str) -> dict[str, Any]:
    stats = tape.tapestats
    return {
        "adolc_version": _module().ADOLC_VERSION, "mode": mode,
        "tape_bytes": stats["tape_bytes"], "tape_ops": stats["operations"], "tape_locations": stats["locations"],
        "tape_values": stats["values"], "taylor_entries": stats["taylor_entries"],
        "buffer_bytes": stats["buffer_bytes"], "spilled_to_file": stats["spilled_to_file"],
    }


class _AdolcBase(Backend):
    models = ("lorenz63", "lorenz96")
    native_module = MODULE
    batch_idiom = "native loop (tape replay)"

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok and "libadolc-dev" not in reason:
            reason = f"{reason}; ADOL-C: {INSTALL}"
        return ok, reason

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        raise NotImplementedError

    def _prepare(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Prepared:
        return self._prepare_any(problem, device, dtype)

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        raise NotImplementedError

    def _prepare_cost(self, problem: Lorenz63Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)

    def _prepare_cost_lorenz96(self, problem: Lorenz96Problem, *, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        return self._prepare_cost_any(problem, device, dtype)


class AdolcBackend(_AdolcBase):
    name = "adolc"
    kind = "AD, operator overloading (tape replay)"
    description = "ADOL-C: C++ model on adouble taped once in prepare, replayed (zos_forward + fos_reverse) per gradient"

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        tape = make_tape(problem)
        compile_s = _timed_tape(tape, problem.u0)
        return Prepared(tape.vg, problem, device=device, dtype=dtype, compile_s=compile_s,
                        info=_info(tape, "taped once in prepare, replayed"))

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        """J by a zos_forward of the tape (keep = 0): ADOL-C's interpreter, no Taylor stack."""
        return _taped(problem).cost

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """J[B]: the tape's zos_forward (keep = 0) for every member, in the native loop of ``vgb``."""
        tape = _taped(problem)
        return lambda U: tape.costs(check_controls(problem, U))

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """The same tape replayed for every member, in one native loop (zos_forward + fos_reverse each)."""
        tape = make_tape(problem)
        compile_s = _timed_tape(tape, problem.u0)

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return tape.vgb(check_controls(problem, U))

        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=compile_s,
                             info=_info(tape, "taped once in prepare, replayed per member"))


class AdolcRetapeBackend(_AdolcBase):
    name = "adolc-retape"
    kind = "AD, operator overloading (re-tape)"
    description = "ADOL-C: C++ model on adouble re-taped (trace_on/trace_off) at every call, then gradient()"

    def _prepare_any(self, problem: Any, device: str, dtype: str) -> Prepared:
        tape = make_tape(problem)
        compile_s = _timed_tape(tape, problem.u0)  # sizes the buffers from this first tape's tapestats
        return Prepared(tape.retape_vg, problem, device=device, dtype=dtype, compile_s=compile_s,
                        info=_info(tape, "re-taped at every call"))

    def _prepare_cost_any(self, problem: Any, device: str, dtype: str) -> Callable[[np.ndarray], float]:
        """J by the plain double forward model: the C++ template on double, no ADOL-C involved."""
        return make_tape(problem).cost_double

    def _prepare_cost_batch(self, problem: Any, *, device: str, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
        """J[B] by the plain double forward model, one native loop over the members."""
        tape = make_tape(problem)
        return lambda U: tape.costs_double(check_controls(problem, U))

    def _prepare_batch(self, problem: Any, *, device: str, dtype: str) -> PreparedBatch:
        """One fresh tape per call (trace_on .. trace_off at the first member), replayed for
        every member in the native loop, as ``adolc`` does with its tape from ``prepare``."""
        tape = make_tape(problem)
        compile_s = _timed_tape(tape, problem.u0)

        def vgb(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return tape.retape_vgb(check_controls(problem, U))

        return PreparedBatch(vgb, problem, idiom=self.batch_idiom, device=device, dtype=dtype, compile_s=compile_s,
                             info=_info(tape, "re-taped at every call (first member), replayed per member"))


def _taped(problem: Any) -> Any:
    """The problem's tape, recorded at u0 (what the forward-only replays interpret)."""
    tape = make_tape(problem)
    tape.tape(problem.u0)
    return tape


def _timed_tape(tape: Any, u0: np.ndarray) -> float:
    import time

    t0 = time.perf_counter()
    tape.tape(u0)
    return time.perf_counter() - t0


BACKENDS = [AdolcBackend(), AdolcRetapeBackend()]
