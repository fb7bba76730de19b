# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The hand-written adjoint of paper List 1 in Cython (backend ``cython``).

The kernels mirror ``adjointbench/model.py`` (List 1) and ``adjointbench/hand_adjoint.py``
(List 2, in its order) line by line, so that the three versions give the same numbers: the
trajectory is integrated only to the last observation step, J and dJ/dw are taken there, and
the backward sweep adds the innovation when it reaches an observed step (eq. 18, first term)
and accumulates the parameter adjoints (eq. 19).  Unlike the Python source the Lagrange
multipliers are kept in three scalars, not stored for every step: only v_0 is needed for the
gradient.

Everything the time loops touch is allocated once, when a ``HandAdjoint`` is built for a
problem (in the backend's ``prepare``); the loops run without the GIL and without Python
objects (a call that finds the work arrays in use by another thread gets its own).  The
trajectory is stored flat, w[3n:3n+3] = w_n, in a 1-D typed memoryview: with a 2-D one the
compiler reloaded the row stride after every store, and the whole gradient took ~1.5x longer.
``HandCost`` is the forward sweep alone (List 1 on three doubles, nothing stored), by the same
step function and with J summed in the same order, so its J is the gradient's to the last bit.
``HandAdjointBatch`` runs the rows of a batch of controls on OpenMP threads (``prange``), each
thread with its own work arrays, allocated once.  Sizes are checked at the Python boundary, before any loop runs: a control vector
or observation array of the wrong size is a ValueError, never an out-of-bounds access.
"""

from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cython.parallel cimport prange, threadid
from libc.math cimport isfinite
from libc.string cimport memcpy, strcmp

import numpy as np

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define AB63_OPENMP 1
    #else
    #define AB63_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    const int AB63_OPENMP
    int omp_get_max_threads() noexcept nogil

#: whether ``HandAdjointBatch`` runs its rows on OpenMP threads (False: built without -fopenmp)
OPENMP = bool(AB63_OPENMP)


def max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return omp_get_max_threads()


cdef inline void advance(const double* s, double* out, double sigma, double r, double beta,
                         double dt) noexcept nogil:
    """One step of List 1, out[0:3] = w_{n+1} from s[0:3] = w_n; out may be s (read first)."""
    cdef double x = s[0], y = s[1], z = s[2]
    out[0] = x + dt * sigma * (-x + y)
    out[1] = y + dt * (-x * z + r * x - y)
    out[2] = z + dt * (x * y - beta * z)


cdef void forward(double[::1] w, double sigma, double r, double beta, double dt,
                  Py_ssize_t nlast) noexcept nogil:
    """List 1 in place on the trajectory stored flat, w[3n:3n+3] = w_n (model.forward)."""
    cdef Py_ssize_t n
    cdef double* s = &w[0]
    for n in range(nlast):
        advance(s + 3 * n, s + 3 * n + 3, sigma, r, beta, dt)


cdef double forward_cost(const long long[::1] steps, const double[:, ::1] obs, double x0, double y0,
                         double z0, double sigma, double r, double beta, double dt) noexcept nogil:
    """J alone (model.cost): List 1 on the current state only, nothing stored.

    The same ``advance`` as the gradient's forward sweep and J summed in the same order (over
    k, then x, y, z), so it equals the J of ``value_and_grad`` to the last bit.
    """
    cdef Py_ssize_t nobs = steps.shape[0]
    cdef Py_ssize_t nlast = steps[nobs - 1]
    cdef Py_ssize_t n = 0, k = 0, i
    cdef double s[3]
    cdef double J = 0.0, e
    s[0] = x0
    s[1] = y0
    s[2] = z0
    while True:
        if steps[k] == n:  # k < nobs: steps is strictly increasing and ends at nlast
            for i in range(3):
                e = s[i] - obs[k, i]
                J += 0.5 * e * e
            k += 1
        if n == nlast:
            break
        advance(s, s, sigma, r, beta, dt)
        n += 1
    return J


cdef double value_and_grad(double[::1] w, const long long[::1] steps, const double[:, ::1] obs,
                           double[:, ::1] d, double x0, double y0, double z0, double sigma,
                           double r, double beta, double dt, double* grad) noexcept nogil:
    """J and dJ/d(x0, y0, z0, sigma, r, beta) into grad[0:6] (hand_adjoint.value_and_grad)."""
    cdef Py_ssize_t nobs = steps.shape[0]
    cdef Py_ssize_t nlast = steps[nobs - 1]
    cdef Py_ssize_t n, k, i
    cdef double J = 0.0, e, x, y, z
    cdef double ax = 0.0, ay = 0.0, az = 0.0, as_ = 0.0, ar = 0.0, ab = 0.0, bx, by, bz
    w[0] = x0
    w[1] = y0
    w[2] = z0
    forward(w, sigma, r, beta, dt, nlast)
    for k in range(nobs):
        for i in range(3):
            e = w[3 * steps[k] + i] - obs[k, i]
            d[k, i] = e  # dJ/dw_{s_k}
            J += 0.5 * e * e
    k = nobs - 1
    n = nlast
    while True:  # List 2, the time loop reversed
        if k >= 0 and steps[k] == n:  # eq. (18), first term
            ax += d[k, 0]
            ay += d[k, 1]
            az += d[k, 2]
            k -= 1
        if n == 0:
            break
        x = w[3 * n - 3]
        y = w[3 * n - 2]
        z = w[3 * n - 1]
        ab = ab - dt * z * az
        bz = (1.0 - dt * beta) * az
        by = dt * x * az
        bx = dt * y * az
        ar = ar + dt * x * ay
        bz = bz - dt * x * ay
        by = by + (1.0 - dt) * ay
        bx = bx + dt * (-z + r) * ay
        as_ = as_ + dt * (-x + y) * ax
        by = by + sigma * dt * ax
        bx = bx + (1.0 - sigma * dt) * ax
        ax = bx
        ay = by
        az = bz
        n -= 1
    grad[0] = ax
    grad[1] = ay
    grad[2] = az
    grad[3] = as_
    grad[4] = ar
    grad[5] = ab
    return J


include "_buffers.pxi"


cdef class Work:
    """Work arrays of one evaluation: the trajectory (flat) and dJ/dw at the observed steps."""

    cdef double[::1] w
    cdef double[:, ::1] d

    def __cinit__(self, Py_ssize_t nstates, Py_ssize_t nobs):
        self.w = np.empty(3 * nstates)
        self.d = np.empty((nobs, 3))


cdef class Lorenz63Kernel:
    """A problem's data, validated, and its control reader: the base of ``HandAdjoint`` and ``HandCost``.

    Lorenz63Kernel(dt, steps, obs, params, n_control, check): steps (K,) strictly increasing
    integers >= 0, obs (K, 3), params (sigma, r, beta) used when n_control == 3, and
    ``check(u)`` the problem's validation (returns a float64 vector of length n_control or
    raises ValueError), called only for inputs the fast path does not accept.
    """

    cdef const long long[::1] steps
    cdef const double[:, ::1] obs
    cdef double sigma, r, beta, dt
    cdef Py_ssize_t n
    cdef object check
    cdef object empty

    def __cinit__(self, dt, steps, obs, params, n_control, check):
        # __cinit__, not __init__: no instance can exist unchecked (subclasses get the same arguments)
        steps_arr = np.asarray(steps)
        if steps_arr.ndim != 1 or steps_arr.shape[0] < 1 or steps_arr.dtype.kind not in "iu":
            raise ValueError(f"observation steps must be a non-empty 1-D integer array, got {steps_arr.dtype} {steps_arr.shape}")
        steps_arr = np.ascontiguousarray(steps_arr, dtype=np.int64)
        obs_arr = np.ascontiguousarray(obs, dtype=np.float64)
        p = np.asarray(params, dtype=np.float64)
        if obs_arr.shape != (steps_arr.shape[0], 3):
            raise ValueError(f"observation values must have shape ({steps_arr.shape[0]}, 3), got {obs_arr.shape}")
        if steps_arr[0] < 0 or np.any(np.diff(steps_arr) <= 0):
            raise ValueError("observation steps must be strictly increasing and >= 0")
        if p.shape != (3,):
            raise ValueError(f"params must be (sigma, r, beta), got shape {p.shape}")
        if n_control not in (3, 6):
            raise ValueError(f"n_control must be 3 or 6, got {n_control!r}")
        dt = float(dt)
        if not (np.isfinite(dt) and np.all(np.isfinite(obs_arr)) and np.all(np.isfinite(p))):
            raise ValueError("dt, observation values and params must be finite")
        if not callable(check):
            raise ValueError("check must be callable")
        self.steps = steps_arr
        self.obs = obs_arr
        self.sigma, self.r, self.beta = p
        self.dt = dt
        self.n = n_control
        self.check = check
        self.empty = np.empty

    cdef int read_control(self, object u, double* c) except -1:
        """c[0:6] = the full control (the fixed parameters appended for control 'state')."""
        cdef Py_ssize_t i
        if not read_doubles(u, self.n, c):
            if not read_doubles(self.check(u), self.n, c):
                raise ValueError(f"control vector must be a float64 vector of length {self.n}")
        for i in range(self.n):
            if not isfinite(c[i]):
                raise ValueError("control vector must be finite")
        if self.n == 3:
            c[3] = self.sigma
            c[4] = self.r
            c[5] = self.beta
        return 0


cdef class HandCost(Lorenz63Kernel):
    """Forward-only J for one problem (the denominator of the cheap-gradient ratio).

    HandCost(dt, steps, obs, params, n_control, check), the arguments of ``HandAdjoint``.  The
    state lives in three doubles on the stack: no trajectory, no work arrays, nothing shared
    between concurrent calls.
    """

    cpdef double cost(self, object u) except? -1.0:
        """J at control u, validated as ``HandAdjoint.value_and_grad`` validates it."""
        cdef double c[6]
        cdef double J
        self.read_control(u, c)
        with nogil:
            J = forward_cost(self.steps, self.obs, c[0], c[1], c[2], c[3], c[4], c[5], self.dt)
        return J


cdef class HandAdjoint(Lorenz63Kernel):
    """The hand adjoint for one problem, with its work arrays allocated once.

    HandAdjoint(dt, steps, obs, params, n_control, check): the arguments of ``Lorenz63Kernel``.
    """

    cdef Work work
    # set, with the GIL held, while a call runs its loops on w and d without the GIL
    cdef bint busy

    def __cinit__(self, *args, **kwargs):
        # the base class has checked the arguments; no instance exists with unset work arrays
        self.work = Work(self.steps[self.steps.shape[0] - 1] + 1, self.steps.shape[0])
        self.busy = False

    cdef Work claim(self):
        """The shared work arrays, or fresh ones if another thread's call is using them."""
        if self.busy:  # a concurrent call: correct, just not allocation-free
            return Work(self.work.w.shape[0] // 3, self.work.d.shape[0])
        self.busy = True
        return self.work

    cdef void release(self, Work work) noexcept:
        if work is self.work:
            self.busy = False

    cpdef tuple value_and_grad(self, object u):
        """(J, grad) at control u: grad a new float64 array of length n_control."""
        cdef double c[6]
        cdef double g[6]
        cdef double J
        self.read_control(u, c)
        cdef Work work = self.claim()
        with nogil:
            J = value_and_grad(work.w, self.steps, self.obs, work.d, c[0], c[1], c[2], c[3], c[4], c[5],
                               self.dt, g)
        self.release(work)
        return J, new_vector(self.empty, g, self.n)

    cpdef tuple descent(self, object u0, Py_ssize_t iterations, double step):
        """The Tbl. 3 loop compiled: u <- u - step * grad, ``iterations`` evaluations.

        Returns (final control, cost at each evaluated iterate), the iterates of
        ``python_descent`` with this object's value_and_grad.
        """
        cdef double c[6]
        cdef double g[6]
        cdef Py_ssize_t i, j
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not isfinite(step):
            raise ValueError(f"step must be finite, got {step}")
        self.read_control(u0, c)
        costs = np.empty(iterations)
        cdef double[::1] cv = costs
        cdef Work work = self.claim()
        with nogil:
            for i in range(iterations):
                cv[i] = value_and_grad(work.w, self.steps, self.obs, work.d, c[0], c[1], c[2], c[3], c[4], c[5],
                                       self.dt, g)
                for j in range(self.n):
                    c[j] = c[j] - step * g[j]
        self.release(work)
        return new_vector(self.empty, c, self.n), costs


cdef double batch_row(const double* u, Py_ssize_t nc, double sigma, double r, double beta, double dt,
                      double[::1] w, const long long[::1] steps, const double[:, ::1] obs,
                      double[:, ::1] d, double* grad) noexcept nogil:
    """One row of a batch: ``value_and_grad`` at u[0:nc] (the fixed parameters appended)."""
    cdef double g[6]
    cdef double J
    cdef Py_ssize_t i
    if nc == 6:
        J = value_and_grad(w, steps, obs, d, u[0], u[1], u[2], u[3], u[4], u[5], dt, g)
    else:
        J = value_and_grad(w, steps, obs, d, u[0], u[1], u[2], sigma, r, beta, dt, g)
    for i in range(nc):
        grad[i] = g[i]
    return J


cdef double cost_row(const double* u, Py_ssize_t nc, double sigma, double r, double beta, double dt,
                     const long long[::1] steps, const double[:, ::1] obs) noexcept nogil:
    """One row of a forward-only batch: ``forward_cost`` at u[0:nc] (the fixed parameters appended)."""
    if nc == 6:
        return forward_cost(steps, obs, u[0], u[1], u[2], u[3], u[4], u[5], dt)
    return forward_cost(steps, obs, u[0], u[1], u[2], sigma, r, beta, dt)


cdef class HandAdjointBatch:
    """Batched gradients of one ``HandAdjoint``: the rows of U on ``threads`` OpenMP threads.

    Each thread owns a trajectory and dJ/dw buffer, allocated here once; a row is exactly what
    ``HandAdjoint.value_and_grad`` gives for it (the same kernel).  Without OpenMP the rows
    run one after the other on the calling thread.
    """

    cdef HandAdjoint adj
    cdef double[:, ::1] w
    cdef double[:, :, ::1] d
    cdef Py_ssize_t nthreads
    cdef bint busy

    def __cinit__(self, HandAdjoint adjoint not None, threads):
        self.adj = adjoint
        self.nthreads = team_size(threads, AB63_OPENMP)
        self.w = np.empty((self.nthreads, adjoint.work.w.shape[0]))
        self.d = np.empty((self.nthreads, adjoint.work.d.shape[0], 3))
        self.busy = False

    @property
    def threads(self):
        return self.nthreads

    def value_and_grad(self, U):
        """(J[B], G[B, n_control]) for U of shape (B, n_control), C-contiguous finite float64."""
        cdef HandAdjoint h = self.adj
        cdef Py_ssize_t B, b, tid, nt, chunk, nc = h.n
        cdef const double[:, ::1] Uv
        cdef double[::1] Jv
        cdef double[:, ::1] Gv
        cdef double[:, ::1] w
        cdef double[:, :, ::1] d
        cdef bint own
        Ua = batch_controls(U, nc)
        Uv = Ua
        B = Ua.shape[0]
        J = np.empty(B)
        G = np.empty((B, nc))
        Jv = J
        Gv = G
        nt = min(self.nthreads, B)
        chunk = max(1, B // (8 * nt))
        own = not self.busy
        if own:
            self.busy = True
            w, d = self.w, self.d
        else:  # a concurrent call from another Python thread: its own work arrays
            w = np.empty((nt, self.w.shape[1]))
            d = np.empty((nt, self.d.shape[1], 3))
        try:
            # rows of a few microseconds: dynamic (a thread the OS preempts does not hold up its
            # share) in chunks of about an eighth of a thread's share (few atomic claims)
            for b in prange(B, nogil=True, num_threads=nt, schedule="dynamic", chunksize=chunk):
                tid = threadid()
                Jv[b] = batch_row(&Uv[b, 0], nc, h.sigma, h.r, h.beta, h.dt, w[tid], h.steps, h.obs, d[tid],
                                  &Gv[b, 0])
        finally:
            if own:
                self.busy = False
        return J, G


cdef class HandCostBatch:
    """Batched forward-only J of one ``HandCost``: the rows of U on ``threads`` OpenMP threads,
    as ``HandAdjointBatch`` runs the gradients (same idiom, same chunks: a like-by-like ratio).
    The state of a row lives on its thread's stack; a row is exactly ``HandCost.cost``.
    """

    cdef HandCost fwd
    cdef Py_ssize_t nthreads

    def __cinit__(self, HandCost cost not None, threads):
        self.fwd = cost
        self.nthreads = team_size(threads, AB63_OPENMP)

    @property
    def threads(self):
        return self.nthreads

    def cost(self, U):
        """J[B] for U of shape (B, n_control), C-contiguous finite float64."""
        cdef HandCost h = self.fwd
        cdef Py_ssize_t B, b, nt, chunk, nc = h.n
        cdef const double[:, ::1] Uv
        cdef double[::1] Jv
        Ua = batch_controls(U, nc)
        Uv = Ua
        B = Ua.shape[0]
        J = np.empty(B)
        Jv = J
        nt = min(self.nthreads, B)
        chunk = max(1, B // (8 * nt))
        for b in prange(B, nogil=True, num_threads=nt, schedule="dynamic", chunksize=chunk):
            Jv[b] = cost_row(&Uv[b, 0], nc, h.sigma, h.r, h.beta, h.dt, h.steps, h.obs)
        return J
