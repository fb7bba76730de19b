# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""adjointbench._enzyme: the Enzyme-differentiated Lorenz-63 kernel (kernels/lorenz63_enzyme.cpp).

The object file linked in (built by build_tools/ext_enzyme.py from the IR in
kernels/generated/) exports the front door ``lorenz63_entry`` with enzyme-ad's
``entry(void** outs, void** ins)`` ABI as ``adjointbench_enzyme_lorenz63``.
``Lorenz63Enzyme`` holds one problem's observations, converted and checked once; every size
is checked before native code runs (the C++ side trusts them), and the few per-call buffers
live on the C stack.
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


include "_buffers.pxi"


cdef class Lorenz63Enzyme:
    """One problem's buffers; ``vg`` and ``descent`` call the Enzyme gradient on them.

    ``params`` (sigma, r, beta) fill the control's parameter entries when ``n_control`` is 3.
    A control vector that is not already a contiguous float64 vector of length n_control is
    handed to ``check`` (the problem's ``check_control``: converts it or raises ValueError).
    """

    cdef object _steps, _obs, check, empty
    cdef const int32_t *steps
    cdef const double *obs
    cdef double params[3]
    cdef double dt
    cdef int32_t nobs
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
        self.dt = dt
        self.params[0], self.params[1], self.params[2] = p
        self.nobs = <int32_t>s.size
        # read-only after this; the per-call buffers live on the C stack of each call, so
        # calls from several threads (the kernel runs without the GIL) do not share them
        self._steps = np.ascontiguousarray(s, dtype=np.int32)
        self._obs = o.copy()
        cdef const int32_t[::1] steps_v = self._steps
        cdef const double[::1] obs_v = self._obs.reshape(-1)
        self.steps = &steps_v[0]
        self.obs = &obs_v[0]

    cdef int _load(self, object u, double *dst) except -1:
        """dst[0:6] = the full control: u validated, then the fixed parameters for 'state'."""
        cdef Py_ssize_t i
        if not read_doubles(u, self.n_control, dst):
            if self.check is None or not read_doubles(self.check(u), self.n_control, dst):
                raise ValueError(f"control vector must be a float64 vector of length {self.n_control}")
        for i in range(self.n_control):
            if not isfinite(dst[i]):
                raise ValueError("control vector must be finite")
        if self.n_control == 3:
            dst[3] = self.params[0]
            dst[4] = self.params[1]
            dst[5] = self.params[2]
        return 0

    cdef void _call(self, double *u, double *res, double *u_final, double *costs,
                    double step, int32_t iterations) noexcept nogil:
        """lorenz63_entry through enzyme-ad's entry(outs, ins) ABI."""
        cdef double reals[2]
        cdef int32_t sizes[3]
        cdef void *outs[3]
        cdef void *ins[5]
        reals[0] = self.dt
        reals[1] = step
        sizes[0] = self.nobs
        sizes[1] = self.n_control
        sizes[2] = iterations
        outs[0] = res
        outs[1] = u_final
        outs[2] = costs
        ins[0] = u
        ins[1] = reals
        ins[2] = sizes
        ins[3] = <void *>self.steps
        ins[4] = <void *>self.obs
        adjointbench_enzyme_lorenz63(outs, ins)

    cpdef tuple vg(self, object u):
        """(J, dJ/du) at the control vector u (length n_control); dJ/du a new float64 array."""
        cdef double c[6]
        cdef double res[7]
        cdef double unused[6]
        self._load(u, c)
        with nogil:
            self._call(c, res, unused, unused, 0.0, 0)
        return res[0], new_vector(self.empty, &res[1], self.n_control)

    cpdef tuple descent(self, object u0, Py_ssize_t iterations, double step):
        """(final control, cost at each iterate) of ``iterations`` steps of steepest descent."""
        cdef double c[6]
        cdef double u_final[6]
        cdef double res[7]
        if iterations < 1 or iterations > INT32_MAX:
            raise ValueError(f"iterations must be between 1 and {INT32_MAX}, got {iterations}")
        if not isfinite(step):
            raise ValueError(f"step must be finite, got {step!r}")
        self._load(u0, c)
        costs = np.empty(iterations)
        cdef double[::1] costs_v = costs
        with nogil:
            self._call(c, res, u_final, &costs_v[0], step, <int32_t>iterations)
        return new_vector(self.empty, u_final, self.n_control), costs
