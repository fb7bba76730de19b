# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""adjointbench._enzyme: the Enzyme-differentiated Lorenz-63 kernel (kernels/lorenz63_enzyme.cpp).

The object file linked in (built by build_tools/ext_enzyme.py from the IR in
kernels/generated/) exports enzyme-ad's ``entry(void** outs, void** ins)`` ABI once per front
door.  ``Lorenz63Enzyme`` owns every buffer those pointers refer to, allocated once for a
problem, and checks every size before native code runs: the C++ side trusts them.
"""

import numpy as np

from libc.stdint cimport int32_t, INT32_MAX
from libc.math cimport isfinite

cdef extern from *:
    """
    void adjointbench_enzyme_lorenz63(void **outs, void **ins);
    """
    # lorenz63_entry of lorenz63_enzyme.cpp: sizes[2] == 0 -> value and gradient, else descent
    void adjointbench_enzyme_lorenz63(void **outs, void **ins) nogil


cdef class Lorenz63Enzyme:
    """One problem's buffers; ``vg`` and ``descent`` call the Enzyme gradient on them.

    ``params`` (sigma, r, beta) fill the control's parameter entries when ``n_control`` is 3.
    """

    cdef object _u, _reals, _sizes, _steps, _obs, _res, _u_final
    cdef double[::1] u_v, reals_v, res_v, u_final_v
    cdef int32_t[::1] sizes_v
    cdef object _no_costs
    cdef void *ins[5]
    cdef void *outs[3]
    cdef readonly int n_control

    def __init__(self, double dt, params, steps, obs, int n_control):
        if n_control not in (3, 6):
            raise ValueError(f"n_control must be 3 or 6, got {n_control}")
        if not (isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite number, got {dt!r}")
        p = np.ascontiguousarray(params, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"params must be 3 finite numbers (sigma, r, beta), got {params!r}")
        s = np.asarray(steps)
        if s.ndim != 1 or s.size < 1 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError("steps must be a non-empty 1-D integer array")
        if s[0] < 0 or s[s.size - 1] > INT32_MAX or np.any(np.diff(s) <= 0):
            raise ValueError(f"steps must be strictly increasing in 0..{INT32_MAX}")
        o = np.ascontiguousarray(obs, dtype=np.float64)
        if o.shape != (s.size, 3) or not np.all(np.isfinite(o)):
            raise ValueError(f"obs must be finite with shape ({s.size}, 3), got shape {o.shape}")
        self.n_control = n_control
        self._u = np.empty(6)
        self._u[3:] = p
        self._reals = np.array([dt, 0.0])
        self._sizes = np.array([s.size, n_control, 0], dtype=np.int32)
        self._steps = np.ascontiguousarray(s, dtype=np.int32)
        self._obs = o.copy()
        self._res = np.zeros(7)
        self._u_final = np.zeros(6)
        self._no_costs = np.zeros(1)
        self.u_v = self._u
        self.reals_v = self._reals
        self.sizes_v = self._sizes
        self.res_v = self._res
        self.u_final_v = self._u_final
        cdef int32_t[::1] steps_v = self._steps
        cdef double[::1] obs_v = self._obs.reshape(-1)
        self.ins[0] = &self.u_v[0]
        self.ins[1] = &self.reals_v[0]
        self.ins[2] = &self.sizes_v[0]
        self.ins[3] = &steps_v[0]
        self.ins[4] = &obs_v[0]
        cdef double[::1] no_costs_v = self._no_costs
        self.outs[0] = &self.res_v[0]
        self.outs[1] = &self.u_final_v[0]
        self.outs[2] = &no_costs_v[0]

    cdef int _load(self, const double[::1] u) except -1:
        cdef Py_ssize_t i
        if u.shape[0] != self.n_control:
            raise ValueError(f"control vector must have length {self.n_control}, got {u.shape[0]}")
        for i in range(self.n_control):
            if not isfinite(u[i]):
                raise ValueError("control vector must be finite")
            self.u_v[i] = u[i]
        return 0

    def vg(self, const double[::1] u):
        """(J, dJ/du) at the float64 control vector u (length n_control)."""
        self._load(u)
        self.sizes_v[2] = 0
        with nogil:
            adjointbench_enzyme_lorenz63(self.outs, self.ins)
        return self.res_v[0], self._res[1:1 + self.n_control].copy()

    def descent(self, const double[::1] u0, double step, double[::1] costs):
        """Steepest descent from u0, len(costs) evaluations; fills costs, returns the final u."""
        if costs.shape[0] < 1 or costs.shape[0] > INT32_MAX:
            raise ValueError("costs must have between 1 and 2**31-1 entries")
        if not isfinite(step):
            raise ValueError(f"step must be finite, got {step!r}")
        self._load(u0)
        self.reals_v[1] = step
        cdef void *no_costs = self.outs[2]
        self.sizes_v[2] = <int32_t>costs.shape[0]
        self.outs[2] = &costs[0]
        try:
            with nogil:
                adjointbench_enzyme_lorenz63(self.outs, self.ins)
        finally:
            self.outs[2] = no_costs
            self.sizes_v[2] = 0
        return self._u_final[:self.n_control].copy()
