# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""adjointbench._enzyme: the Enzyme-differentiated Lorenz-63 kernel (kernels/lorenz63_enzyme.cpp).

The object file linked in (built by build_tools/ext_enzyme.py from the IR in
kernels/generated/) exports enzyme-ad's ``entry(void** outs, void** ins)`` ABI once per front
door.  ``Lorenz63Enzyme`` owns every buffer those pointers refer to, allocated once for a
problem, and checks every size before native code runs: the C++ side trusts them.
"""

import numpy as np

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from libc.math cimport isfinite
from libc.stdint cimport int32_t, INT32_MAX
from libc.string cimport memcpy, strcmp

cdef extern from *:
    """
    void adjointbench_enzyme_lorenz63(void **outs, void **ins);
    """
    # lorenz63_entry of lorenz63_enzyme.cpp: sizes[2] == 0 -> value and gradient, else descent
    void adjointbench_enzyme_lorenz63(void **outs, void **ins) nogil


cdef bint read_doubles(object u, Py_ssize_t n, double *out) except -1:
    """Copy u into out if it exposes exactly n contiguous native doubles; else return False."""
    cdef Py_buffer view
    cdef bint ok
    if not PyObject_CheckBuffer(u):
        return False
    try:
        PyObject_GetBuffer(u, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
    except Exception:  # e.g. strided: not an error yet, the problem's own check decides
        return False
    ok = (view.ndim == 1 and view.shape[0] == n and view.itemsize == 8
          and view.format != NULL and strcmp(view.format, b"d") == 0)
    if ok:
        memcpy(out, view.buf, n * sizeof(double))
    PyBuffer_Release(&view)
    return ok


cdef object new_vector(object empty, const double *src, Py_ssize_t n):
    """A fresh float64 ndarray holding src[0:n]."""
    cdef Py_buffer view
    out = empty(n)
    PyObject_GetBuffer(out, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    memcpy(view.buf, src, n * sizeof(double))
    PyBuffer_Release(&view)
    return out


cdef class Lorenz63Enzyme:
    """One problem's buffers; ``vg`` and ``descent`` call the Enzyme gradient on them.

    ``params`` (sigma, r, beta) fill the control's parameter entries when ``n_control`` is 3.
    A control vector that is not already a contiguous float64 vector of length n_control is
    handed to ``check`` (the problem's ``check_control``: converts it or raises ValueError).
    """

    cdef object _u, _reals, _sizes, _steps, _obs, _res, _u_final
    cdef double[::1] u_v, reals_v, res_v, u_final_v
    cdef int32_t[::1] sizes_v
    cdef object _no_costs, check, empty
    cdef void *ins[5]
    cdef void *outs[3]
    cdef readonly int n_control

    def __init__(self, double dt, params, steps, obs, int n_control, check=None):
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
        if check is not None and not callable(check):
            raise ValueError("check must be callable")
        self.n_control = n_control
        self.check = check
        self.empty = np.empty
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

    cdef int _load(self, object u) except -1:
        """u (validated) into the first n_control entries of the u buffer."""
        cdef Py_ssize_t i
        cdef double *dst = &self.u_v[0]
        if not read_doubles(u, self.n_control, dst):
            if self.check is None or not read_doubles(self.check(u), self.n_control, dst):
                raise ValueError(f"control vector must be a float64 vector of length {self.n_control}")
        for i in range(self.n_control):
            if not isfinite(dst[i]):
                raise ValueError("control vector must be finite")
        return 0

    cpdef tuple vg(self, object u):
        """(J, dJ/du) at the control vector u (length n_control); dJ/du a new float64 array."""
        self._load(u)
        self.sizes_v[2] = 0
        with nogil:
            adjointbench_enzyme_lorenz63(self.outs, self.ins)
        return self.res_v[0], new_vector(self.empty, &self.res_v[1], self.n_control)

    def descent(self, object u0, double step, double[::1] costs):
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
