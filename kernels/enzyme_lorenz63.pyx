# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""adjointbench._enzyme: the Enzyme-differentiated Lorenz-63 kernel (kernels/lorenz63_enzyme.cpp).

The object file linked in (built by build_tools/ext_enzyme.py from the IR in
kernels/generated/) exports the front door ``lorenz63_entry`` with enzyme-ad's
``entry(void** outs, void** ins)`` ABI as ``adjointbench_enzyme_lorenz63``.
``Lorenz63Enzyme`` holds one problem's observations, converted and checked once; every size
is checked before native code runs (the C++ side trusts them), and the few per-call buffers
live on the C stack (or in the arrays a batch returns).  Besides the gradient (``vg``, the
batch ``vgb``, the fused ``descent``) the front door computes J alone (``cost``, the batch ``costs``) by the primal
forward model that Enzyme differentiates, in the same object.
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
    # lorenz63_entry of lorenz63_enzyme.cpp; sizes[4] is the mode below
    void adjointbench_enzyme_lorenz63(void **outs, void **ins) nogil

# the front door's modes (enum Mode in kernels/lorenz63_enzyme.cpp)
cdef enum:
    GRADIENTS = 0
    DESCENT = 1
    COSTS = 2


include "_buffers.pxi"


cdef class Lorenz63Enzyme:
    """One problem's buffers; ``vg``, ``vgb``, ``descent`` and ``cost`` call the kernel on them.

    ``params`` (sigma, r, beta) complete the control in the C++ front door when ``n_control``
    is 3.  A control vector that is not already a contiguous float64 vector of length
    n_control is handed to ``check`` (the problem's ``check_control``: converts it or raises
    ValueError).
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
        """dst[0:n_control] = u, validated (length, dtype, finite)."""
        cdef Py_ssize_t i
        if not read_doubles(u, self.n_control, dst):
            if self.check is None or not read_doubles(self.check(u), self.n_control, dst):
                raise ValueError(f"control vector must be a float64 vector of length {self.n_control}")
        for i in range(self.n_control):
            if not isfinite(dst[i]):
                raise ValueError("control vector must be finite")
        return 0

    cdef void _call(self, const double *U, double *J, double *G, int32_t B, int32_t iterations,
                    double step, int32_t mode) noexcept nogil:
        """lorenz63_entry through enzyme-ad's entry(outs, ins) ABI."""
        cdef double reals[5]
        cdef int32_t sizes[5]
        cdef void *outs[2]
        cdef void *ins[5]
        reals[0] = self.dt
        reals[1] = step
        reals[2] = self.params[0]
        reals[3] = self.params[1]
        reals[4] = self.params[2]
        sizes[0] = self.nobs
        sizes[1] = self.n_control
        sizes[2] = B
        sizes[3] = iterations
        sizes[4] = mode
        outs[0] = J
        outs[1] = G
        ins[0] = <void *>U
        ins[1] = reals
        ins[2] = sizes
        ins[3] = <void *>self.steps
        ins[4] = <void *>self.obs
        adjointbench_enzyme_lorenz63(outs, ins)

    cpdef tuple vg(self, object u):
        """(J, dJ/du) at the control vector u (length n_control); dJ/du a new float64 array."""
        cdef double c[6]
        cdef double grad[6]
        cdef double J
        self._load(u, c)
        with nogil:
            self._call(c, &J, grad, 1, 0, 0.0, GRADIENTS)
        return J, new_vector(self.empty, grad, self.n_control)

    cpdef double cost(self, object u) except? -1.0:
        """J at the control vector u alone: the forward model, no tape, no adjoint."""
        cdef double c[6]
        cdef double J, unused
        self._load(u, c)
        with nogil:  # G is not written; a valid pointer all the same (the C++ takes a reference)
            self._call(c, &J, &unused, 1, 0, 0.0, COSTS)
        return J

    cpdef tuple vgb(self, object U):
        """(J[B], G[B, n_control]) for the rows of U (B x n_control), in one native call."""
        Ua = batch_controls32(U, self.n_control)
        cdef const double[:, ::1] Uv = Ua
        cdef int32_t B = <int32_t>Ua.shape[0]
        J = np.empty(B)
        G = np.empty((B, self.n_control))
        cdef double[::1] Jv = J
        cdef double[:, ::1] Gv = G
        with nogil:
            self._call(&Uv[0, 0], &Jv[0], &Gv[0, 0], B, 0, 0.0, GRADIENTS)
        return J, G

    cpdef object costs(self, object U):
        """J[B] for the rows of U (B x n_control), forward only, in one native call: the loop of
        ``vgb`` without the gradient (the batch's cheap-gradient denominator, like by like)."""
        Ua = batch_controls32(U, self.n_control)
        cdef const double[:, ::1] Uv = Ua
        cdef int32_t B = <int32_t>Ua.shape[0]
        J = np.empty(B)
        cdef double[::1] Jv = J
        cdef double unused
        with nogil:  # G is not written (COSTS); a valid pointer all the same
            self._call(&Uv[0, 0], &Jv[0], &unused, B, 0, 0.0, COSTS)
        return J

    cpdef tuple descent(self, object u0, Py_ssize_t iterations, double step):
        """(final control, cost at each iterate) of ``iterations`` steps of steepest descent."""
        cdef double c[6]
        cdef double u_final[6]
        if iterations < 1 or iterations > INT32_MAX:
            raise ValueError(f"iterations must be between 1 and {INT32_MAX}, got {iterations}")
        if not isfinite(step):
            raise ValueError(f"step must be finite, got {step!r}")
        self._load(u0, c)
        costs = np.empty(iterations)
        cdef double[::1] costs_v = costs
        with nogil:
            self._call(c, &costs_v[0], u_final, 1, <int32_t>iterations, step, DESCENT)
        return new_vector(self.empty, u_final, self.n_control), costs
