# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The hand adjoint of Lorenz-96 with RK4 in Cython (backend ``cython``, model ``lorenz96``).

The arithmetic is that of ``adjointbench/models/lorenz96_equations.py``, the recipe of §2.2
(eqs. 16-19): the forward sweep stores the states x_0..x_{s_K} only; the backward sweep
recomputes the RK4 stage inputs x2 = x + dt/2 k1, x3 = x + dt/2 k2, x4 = x + dt k3 of step n
from x_n and walks the step's lines backwards:

    b4 = dt/6 a            g4 = (df/dx)^T(x4) b4
    b3 = dt/3 a + dt g4    g3 = (df/dx)^T(x3) b3
    b2 = dt/3 a + dt/2 g3  g2 = (df/dx)^T(x2) b2
    b1 = dt/6 a + dt/2 g2  g1 = (df/dx)^T(x)  b1
    a <- a + g1 + g2 + g3 + g4,    F-bar += sum_i (b1 + b2 + b3 + b4)_i

with ((df/dx)^T b)_j = b_{j-1} x_{j-2} - b_{j+2} x_{j+1} + b_{j+1} (x_{j+2} - x_{j-1}) - b_j.
The forward sweep is the NumPy one to the bit (the same operations in the same order); the
backward sweep sums g4 + g3 + g2 before adding a + g1, and collects F-bar entry-wise over the
whole sweep and sums it once at the end (a scalar running sum is a loop-carried dependency
that keeps the compiler from vectorising), so it differs from NumPy by rounding only.

Every loop over the ring is a typed loop without modulo: the entries whose stencil wraps
around (i = 0, 1, N-1 for f; j = 0, 1, N-2, N-1 for its transpose) are peeled off and the
interior runs on plain offsets.  The stage and sweep loops are one ``static inline`` function
each, with a constant ``mode`` argument that the C compiler folds after inlining.

Work arrays are allocated once per kernel object (``Lorenz96Adjoint``, one per prepare) and per
worker thread (``Lorenz96Batch``); the loops run without the GIL.  ``Lorenz96Cost`` is J alone:
the gradient's forward sweep (the same ``sweep`` function, J summed in the same order) keeping
only the current state, so its J is the gradient's to the last bit.  Every size is checked at the
Python boundary: a control of the wrong length is a ValueError, never an out-of-bounds access.
The batch runs its members with OpenMP (``prange``) when the extension was compiled with
``-fopenmp``, otherwise serially (``OPENMP`` says which).
"""

from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cython.parallel cimport prange, threadid
from libc.math cimport isfinite
from libc.string cimport memcpy, memset, strcmp

import numpy as np

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define AB96_OPENMP 1
    #else
    #define AB96_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    const int AB96_OPENMP
    int omp_get_max_threads() noexcept nogil

#: whether the batch loop runs on OpenMP threads (False: compiled without -fopenmp, serial)
OPENMP = bool(AB96_OPENMP)


def max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return omp_get_max_threads()


# ---- the model -----------------------------------------------------------------------------

ctypedef struct problem96:
    Py_ssize_t N          # variables on the ring
    Py_ssize_t nlast      # last observation step: integrate x_0..x_nlast
    Py_ssize_t nobs       # K observation steps
    Py_ssize_t nidx       # M observed indices
    const long long* steps
    const long long* idx
    const double* obs     # K x M, row-major
    const double* xb      # background (N), NULL for none
    double sigma_b
    double inv_o2         # 1 / sigma_o^2
    double dt
    double F              # the forcing when it is not a control
    bint params           # control "state+params": F = u[N], dJ/dF = grad[N]


cdef enum:
    # stage modes (forward RK4 and the backward sweep's recomputation)
    FIRST = 0   # acc = k;        out = x + c k
    MID = 1     # acc = acc + 2k; out = x + c k
    LAST = 2    # out = x + c (acc + k)
    INPUT = 3   # out = x + c k   (a stage input only, no accumulator)
    # adjoint-pass modes
    ADJ4 = 4    # b = dt/6 a (on the fly); T = g;     bout = ca a + cg g
    ADJ32 = 5   #                          T = T + g; bout = ca a + cg g
    ADJ1 = 6    #                          a = a + g + T
    # vectors of length N besides the trajectory: a, x2, x3, x4, bA, bB, T, and S (F-bar)
    NWORK = 8


cdef inline double tend(double xp1, double xm2, double xm1, double x, double F) noexcept nogil:
    """f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F."""
    return (xp1 - xm2) * xm1 - x + F


cdef inline void put(int mode, Py_ssize_t i, double k, const double* x, double* acc, double* out,
                     double c) noexcept nogil:
    if mode == FIRST:
        acc[i] = k
        out[i] = x[i] + c * k
    elif mode == MID:
        acc[i] = acc[i] + 2.0 * k
        out[i] = x[i] + c * k
    elif mode == LAST:
        out[i] = x[i] + c * (acc[i] + k)
    else:
        out[i] = x[i] + c * k


cdef inline void stage(int mode, const double* y, const double* x, double* acc, double* out,
                       Py_ssize_t N, double F, double c) noexcept nogil:
    """k = f(y), then ``put``; out must not alias y (it is read at the neighbours)."""
    cdef Py_ssize_t i
    put(mode, 0, tend(y[1], y[N - 2], y[N - 1], y[0], F), x, acc, out, c)
    put(mode, 1, tend(y[2], y[N - 1], y[0], y[1], F), x, acc, out, c)
    for i in range(2, N - 1):
        put(mode, i, tend(y[i + 1], y[i - 2], y[i - 1], y[i], F), x, acc, out, c)
    put(mode, N - 1, tend(y[0], y[N - 3], y[N - 2], y[N - 1], F), x, acc, out, c)


cdef inline void rk4(const double* x, double* xnext, double* acc, double* ya, double* yb,
                     Py_ssize_t N, double F, double dt) noexcept nogil:
    """x_{n+1} = x + dt/6 (k1 + 2 k2 + 2 k3 + k4), as ``lorenz96_equations.step``."""
    cdef double h = 0.5 * dt
    stage(FIRST, x, x, acc, ya, N, F, h)
    stage(MID, ya, x, acc, yb, N, F, h)
    stage(MID, yb, x, acc, ya, N, F, dt)
    stage(LAST, ya, x, acc, xnext, N, F, dt / 6.0)


cdef inline double adj(double bm1, double bp2, double bp1, double b0,
                       double xm2, double xp1, double xp2, double xm1) noexcept nogil:
    """((df/dx)^T b)_j from b_{j-1}, b_{j+2}, b_{j+1}, b_j and x_{j-2}, x_{j+1}, x_{j+2}, x_{j-1}."""
    return bm1 * xm2 - bp2 * xp1 + bp1 * (xp2 - xm1) - b0


cdef inline void adj_put(int mode, Py_ssize_t j, double g, double* a, double* T, double* bout,
                         double* S, double ca, double cg, double c6) noexcept nogil:
    cdef double b
    if mode == ADJ1:
        a[j] = a[j] + g + T[j]
        return
    if mode == ADJ4:
        T[j] = g
    else:
        T[j] = T[j] + g
    b = ca * a[j] + cg * g
    bout[j] = b
    if S != NULL:  # F-bar, entry-wise (loop unswitched by the compiler)
        if mode == ADJ4:
            S[j] = S[j] + c6 * a[j] + b
        else:
            S[j] = S[j] + b


cdef inline void adj_at(int mode, Py_ssize_t j, Py_ssize_t N, const double* x, const double* b,
                        double sb, double* a, double* T, double* bout, double* S, double ca, double cg,
                        double c6) noexcept nogil:
    """One entry whose stencil wraps around the ring (j = 0, 1, N-2, N-1)."""
    cdef Py_ssize_t m2 = j - 2 + N if j < 2 else j - 2
    cdef Py_ssize_t m1 = j - 1 + N if j < 1 else j - 1
    cdef Py_ssize_t p1 = j + 1 - N if j + 1 >= N else j + 1
    cdef Py_ssize_t p2 = j + 2 - N if j + 2 >= N else j + 2
    adj_put(mode, j, adj(sb * b[m1], sb * b[p2], sb * b[p1], sb * b[j], x[m2], x[p1], x[p2], x[m1]),
            a, T, bout, S, ca, cg, c6)


cdef inline void adj_pass(int mode, const double* x, const double* b, double sb, double* a, double* T,
                          double* bout, double* S, Py_ssize_t N, double ca, double cg,
                          double c6) noexcept nogil:
    """g = (df/dx)^T(x) (sb b), then ``adj_put``; bout must not alias b."""
    cdef Py_ssize_t j
    adj_at(mode, 0, N, x, b, sb, a, T, bout, S, ca, cg, c6)
    adj_at(mode, 1, N, x, b, sb, a, T, bout, S, ca, cg, c6)
    for j in range(2, N - 2):
        adj_put(mode, j, adj(sb * b[j - 1], sb * b[j + 2], sb * b[j + 1], sb * b[j],
                             x[j - 2], x[j + 1], x[j + 2], x[j - 1]), a, T, bout, S, ca, cg, c6)
    adj_at(mode, N - 2, N, x, b, sb, a, T, bout, S, ca, cg, c6)
    adj_at(mode, N - 1, N, x, b, sb, a, T, bout, S, ca, cg, c6)


cdef inline double sweep(const problem96* p, const double* u, double* X, double* acc, double* ya,
                         double* yb, bint store) noexcept nogil:
    """The forward sweep from x_0 = u[0:N] to x_nlast; returns sum_k sum_j e_kj^2 (forward order).

    e_kj = x_{s_k}[idx_j] - y_kj.  store: state n at X + n N (the trajectory, (nlast + 1) N
    doubles); else only the current state is kept, the states alternating in X[0:2N].  acc,
    ya, yb: N doubles each (rk4's stages).  ``store`` is a constant at both call sites.
    """
    cdef Py_ssize_t N = p.N, M = p.nidx, n = 0, j, k = 0
    cdef double F = u[N] if p.params else p.F
    cdef double* x = X
    cdef double* xn
    cdef double Jo = 0.0, e
    memcpy(X, u, N * sizeof(double))
    while True:
        if k < p.nobs and p.steps[k] == n:
            for j in range(M):
                e = x[p.idx[j]] - p.obs[k * M + j]
                Jo += e * e
            k += 1
        if n == p.nlast:
            break
        xn = X + (n + 1) * N if store else X + ((n + 1) & 1) * N
        rk4(x, xn, acc, ya, yb, N, F, p.dt)
        x = xn
        n += 1
    return Jo


cdef inline double finish(const problem96* p, double Jo, const double* x0, double* a) noexcept nogil:
    """J from the observation sum Jo and x_0; a != NULL: dJ/dx_0 += (x_0 - xb) / sigma_b^2 into a."""
    cdef Py_ssize_t j
    cdef double J = 0.5 * p.inv_o2 * Jo, Jb = 0.0, e
    if p.xb != NULL:  # background term
        for j in range(p.N):
            e = (x0[j] - p.xb[j]) / p.sigma_b
            Jb += e * e
            if a != NULL:  # unswitched: a constant at each call site after inlining
                a[j] = a[j] + e / p.sigma_b
        J = J + 0.5 * Jb
    return J


cdef double cost(const problem96* p, const double* u, double* X, double* W) noexcept nogil:
    """J alone: ``sweep`` keeping only the current state.  X: 2 N doubles, W: 3 N.

    The gradient's forward sweep and J to the last bit (the same functions, the same order).
    """
    cdef Py_ssize_t N = p.N
    return finish(p, sweep(p, u, X, W, W + N, W + 2 * N, False), u, NULL)


cdef double value_and_grad(const problem96* p, const double* u, double* X, double* W,
                           double* grad) noexcept nogil:
    """J and dJ/du into grad[0:N] (+ grad[N] = dJ/dF): forward sweep, then eqs. (16-19) backwards.

    X holds (nlast + 1) N doubles (the trajectory), W NWORK N; u is the control.
    """
    cdef Py_ssize_t N = p.N, M = p.nidx, n, j, k
    cdef double F = u[N] if p.params else p.F
    cdef double dt = p.dt, h = 0.5 * dt, c6 = dt / 6.0, c3 = dt / 3.0
    cdef double* a = W
    cdef double* x2 = W + N
    cdef double* x3 = W + 2 * N
    cdef double* x4 = W + 3 * N
    cdef double* bA = W + 4 * N
    cdef double* bB = W + 5 * N
    cdef double* T = W + 6 * N
    cdef double* S = W + 7 * N if p.params else NULL
    cdef const double* x
    cdef const double* row
    cdef double Jo, J, dF
    Jo = sweep(p, u, X, bA, bB, T, True)  # every state stored
    memset(a, 0, N * sizeof(double))
    if S != NULL:
        memset(S, 0, N * sizeof(double))
    k = p.nobs - 1
    n = p.nlast
    while True:
        if k >= 0 and p.steps[k] == n:  # eq. (18), first term: dJ/dx_{s_k} = innovation / sigma_o^2
            row = X + n * N
            for j in range(M):
                a[p.idx[j]] += p.inv_o2 * (row[p.idx[j]] - p.obs[k * M + j])
            k -= 1
        if n == 0:
            break
        x = X + (n - 1) * N
        # the stage inputs of step n - 1 -> n, recomputed from the stored state
        stage(INPUT, x, x, NULL, x2, N, F, h)
        stage(INPUT, x2, x, NULL, x3, N, F, h)
        stage(INPUT, x3, x, NULL, x4, N, F, dt)
        # step_adjoint's lines, backwards
        adj_pass(ADJ4, x4, a, c6, a, T, bB, S, N, c3, dt, c6)     # g4 from b4; bB = b3
        adj_pass(ADJ32, x3, bB, 1.0, a, T, bA, S, N, c3, h, c6)   # g3 from b3; bA = b2
        adj_pass(ADJ32, x2, bA, 1.0, a, T, bB, S, N, c6, h, c6)   # g2 from b2; bB = b1
        adj_pass(ADJ1, x, bB, 1.0, a, T, NULL, NULL, N, 0.0, 0.0, c6)  # g1 from b1; a = a + g1 + T
        n -= 1
    J = finish(p, Jo, X, a)  # with the background term of dJ/dx_0
    memcpy(grad, a, N * sizeof(double))
    if p.params:
        dF = 0.0
        for j in range(N):
            dF += S[j]
        grad[N] = dF
    return J


include "_buffers.pxi"


cdef class Work96:
    """Work arrays of one evaluation: nstates states (flat), nwork sweep vectors, the control."""

    cdef double[::1] X
    cdef double[::1] W
    cdef double[::1] u

    def __cinit__(self, Py_ssize_t N, Py_ssize_t nstates, Py_ssize_t nwork):
        self.X = np.empty(nstates * N)
        self.W = np.empty(nwork * N)
        self.u = np.empty(N + 1)


cdef class Lorenz96Kernel:
    """A problem's data, validated, its control reader and its work arrays' owner.

    The base of ``Lorenz96Adjoint`` and ``Lorenz96Cost``, which size the work arrays.
    Lorenz96Kernel(n, dt, steps, indices, obs, sigma_o, background, sigma_b, F, n_control,
    check): steps (K,) strictly increasing integers >= 0, indices (M,) strictly increasing in
    0..n-1, obs (K, M), background (n,) or None, n_control n (control "state", F fixed) or
    n + 1 (F last); ``check(u)`` the problem's validation (a float64 vector of length
    n_control, or ValueError), called only for inputs the fast path does not accept.
    """

    cdef problem96 p
    cdef const long long[::1] steps
    cdef const long long[::1] idx
    cdef const double[::1] obs
    cdef const double[::1] xb
    cdef Work96 work
    cdef Py_ssize_t nc
    cdef Py_ssize_t xstates, nwork  # the work arrays' sizes, in vectors of N (set by the subclass)
    cdef object check
    cdef object empty
    cdef bint busy

    def __cinit__(self, n, dt, steps, indices, obs, sigma_o, background, sigma_b, F, n_control, check):
        # __cinit__, not __init__: no instance exists unchecked (subclasses get the same arguments)
        cdef Py_ssize_t N
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 4:
            raise ValueError(f"n must be an integer >= 4, got {n!r}")
        N = n
        steps_arr = self._ints(steps, "observation steps")
        idx_arr = self._ints(indices, "observation indices")
        if steps_arr[0] < 0 or np.any(np.diff(steps_arr) <= 0):
            raise ValueError("observation steps must be strictly increasing and >= 0")
        if idx_arr[0] < 0 or idx_arr[idx_arr.shape[0] - 1] >= N or np.any(np.diff(idx_arr) <= 0):
            raise ValueError(f"observation indices must be strictly increasing in 0..{N - 1}")
        obs_arr = np.ascontiguousarray(obs, dtype=np.float64)
        if obs_arr.shape != (steps_arr.shape[0], idx_arr.shape[0]):
            raise ValueError(f"observation values must have shape ({steps_arr.shape[0]}, {idx_arr.shape[0]}), got {obs_arr.shape}")
        if background is not None:
            xb_arr = np.ascontiguousarray(background, dtype=np.float64)
            if xb_arr.shape != (N,):
                raise ValueError(f"background must have shape ({N},), got {xb_arr.shape}")
        else:
            xb_arr = np.zeros(1)  # keeps the memoryview valid; p.xb stays NULL
        scalars = np.array([dt, sigma_o, sigma_b, F], dtype=np.float64)
        if not (np.all(np.isfinite(scalars)) and np.all(np.isfinite(obs_arr)) and np.all(np.isfinite(xb_arr))):
            raise ValueError("dt, sigmas, F, observation values and background must be finite")
        if scalars[0] <= 0 or scalars[1] <= 0 or scalars[2] <= 0:
            raise ValueError("dt and the sigmas must be > 0")
        if n_control not in (N, N + 1):
            raise ValueError(f"n_control must be n={N} or n+1={N + 1}, got {n_control!r}")
        if not callable(check):
            raise ValueError("check must be callable")
        self.steps = steps_arr
        self.idx = idx_arr
        self.obs = obs_arr.ravel()
        self.xb = xb_arr
        self.nc = n_control
        self.check = check
        self.empty = np.empty
        self.busy = False
        self.p.N = N
        self.p.nlast = steps_arr[steps_arr.shape[0] - 1]
        self.p.nobs = steps_arr.shape[0]
        self.p.nidx = idx_arr.shape[0]
        self.p.steps = &self.steps[0]
        self.p.idx = &self.idx[0]
        self.p.obs = &self.obs[0]
        self.p.xb = &self.xb[0] if background is not None else NULL
        self.p.dt = scalars[0]
        self.p.inv_o2 = 1.0 / (scalars[1] * scalars[1])
        self.p.sigma_b = scalars[2]
        self.p.F = scalars[3]
        self.p.params = n_control == N + 1

    @staticmethod
    def _ints(values, what):
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.shape[0] < 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{what} must be a non-empty 1-D integer array, got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    @property
    def n_control(self):
        return self.nc

    @property
    def nstates(self):
        return self.p.nlast + 1

    cdef int read_control(self, object u, double* c) except -1:
        """c[0:n_control] = u, validated (length, float64, finite)."""
        cdef Py_ssize_t i
        if not read_doubles(u, self.nc, c):
            if not read_doubles(self.check(u), self.nc, c):
                raise ValueError(f"control vector must be a float64 vector of length {self.nc}")
        for i in range(self.nc):
            if not isfinite(c[i]):
                raise ValueError("control vector must be finite")
        return 0

    cdef Work96 claim(self):
        """The shared work arrays, or fresh ones if another thread's call is using them."""
        if self.busy:  # a concurrent call: correct, just not allocation-free
            return Work96(self.p.N, self.xstates, self.nwork)
        self.busy = True
        return self.work

    cdef void release(self, Work96 work) noexcept:
        if work is self.work:
            self.busy = False


cdef class Lorenz96Cost(Lorenz96Kernel):
    """Forward-only J for one problem (the denominator of the cheap-gradient ratio).

    Lorenz96Cost(...), the arguments of ``Lorenz96Kernel``.  Work arrays: two states (the
    current one and the next), rk4's three stage vectors and the control, 5 N + N + 1
    doubles whatever the window: no trajectory is stored.
    """

    def __cinit__(self, *args, **kwargs):
        self.xstates = 2
        self.nwork = 3
        self.work = Work96(self.p.N, self.xstates, self.nwork)
        self.busy = False

    cpdef double cost(self, object u) except? -1.0:
        """J at control u, validated as ``Lorenz96Adjoint.value_and_grad`` validates it."""
        cdef Work96 work = self.claim()
        cdef double J
        try:
            self.read_control(u, &work.u[0])
            with nogil:
                J = cost(&self.p, &work.u[0], &work.X[0], &work.W[0])
        finally:
            self.release(work)
        return J


cdef class Lorenz96Adjoint(Lorenz96Kernel):
    """The Lorenz-96 hand adjoint for one problem, with its work arrays allocated once.

    Lorenz96Adjoint(...), the arguments of ``Lorenz96Kernel``.  Work arrays: the trajectory
    ((nlast + 1) N doubles), NWORK sweep vectors and the control.
    """

    def __cinit__(self, *args, **kwargs):
        self.xstates = self.p.nlast + 1
        self.nwork = NWORK
        self.work = Work96(self.p.N, self.xstates, self.nwork)
        self.busy = False

    cpdef tuple value_and_grad(self, object u):
        """(J, grad) at control u: grad a new float64 array of length n_control."""
        cdef Work96 work = self.claim()
        cdef double J
        cdef double[::1] gv
        try:
            self.read_control(u, &work.u[0])
            g = self.empty(self.nc)
            gv = g
            with nogil:
                J = value_and_grad(&self.p, &work.u[0], &work.X[0], &work.W[0], &gv[0])
        finally:
            self.release(work)
        return J, g

    cpdef tuple descent(self, object u0, Py_ssize_t iterations, double step):
        """The Tbl. 3 loop compiled: u <- u - step * grad, ``iterations`` evaluations.

        Returns (final control, cost at each evaluated iterate), the iterates of
        ``python_descent`` with this object's value_and_grad.
        """
        cdef Py_ssize_t i, j, nc = self.nc
        cdef double* c
        cdef double* g
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not isfinite(step):
            raise ValueError(f"step must be finite, got {step}")
        costs = np.empty(iterations)
        grad = np.empty(nc)
        cdef double[::1] cv = costs
        cdef double[::1] gv = grad
        cdef Work96 work = self.claim()
        try:
            self.read_control(u0, &work.u[0])
            c = &work.u[0]
            g = &gv[0]
            with nogil:
                for i in range(iterations):
                    cv[i] = value_and_grad(&self.p, c, &work.X[0], &work.W[0], g)
                    for j in range(nc):
                        c[j] = c[j] - step * g[j]
            u = new_vector(self.empty, c, nc)
        finally:
            self.release(work)
        return u, costs


cdef class Lorenz96Rows:
    """The per-thread work arrays of a batch over one kernel (``Lorenz96Adjoint`` or ``Lorenz96Cost``):
    the kernel's own trajectory and sweep vectors once per OpenMP thread, allocated here once.

    The base of ``Lorenz96Batch`` (gradients) and ``Lorenz96CostBatch`` (forward-only J), so both
    batches run their rows the same way and their ratio is like by like.
    """

    cdef Lorenz96Kernel kernel
    cdef double[::1] X
    cdef double[::1] W
    cdef Py_ssize_t nthreads, xsize, wsize
    cdef bint busy

    def __cinit__(self, Lorenz96Kernel kernel not None, threads):
        self.kernel = kernel
        self.nthreads = team_size(threads, AB96_OPENMP)
        self.xsize = kernel.xstates * kernel.p.N
        self.wsize = kernel.nwork * kernel.p.N
        self.X = np.empty(self.nthreads * self.xsize)
        self.W = np.empty(self.nthreads * self.wsize)
        self.busy = False

    @property
    def threads(self):
        return self.nthreads

    cdef tuple claim(self, Py_ssize_t nt):
        """(own, X, W): the shared work arrays, or fresh ones for nt threads if a concurrent call
        from another Python thread holds them (``own`` False: nothing to release)."""
        if self.busy:
            return False, np.empty(nt * self.xsize), np.empty(nt * self.wsize)
        self.busy = True
        return True, self.X, self.W

    cdef void release(self, bint own) noexcept:
        if own:
            self.busy = False


cdef class Lorenz96Batch(Lorenz96Rows):
    """Batched gradients of one ``Lorenz96Adjoint``: the rows of U on ``threads`` OpenMP threads.

    Each thread owns a trajectory and sweep vectors (``Lorenz96Rows``); a row is exactly what
    ``value_and_grad`` gives for it (the same kernel).  Without OpenMP the rows run one after
    the other on the calling thread.
    """

    def __cinit__(self, Lorenz96Adjoint adjoint not None, threads):
        pass  # Lorenz96Rows has sized the work arrays for the adjoint

    def value_and_grad(self, U):
        """(J[B], G[B, n_control]) for U of shape (B, n_control), C-contiguous finite float64."""
        cdef Py_ssize_t B, b, tid, nt, nc = self.kernel.nc, xs = self.xsize, ws = self.wsize
        cdef const double[:, ::1] Uv
        cdef double[::1] Jv
        cdef double[:, ::1] Gv
        cdef double[::1] X
        cdef double[::1] W
        cdef const problem96* p = &self.kernel.p
        cdef bint own
        Ua = batch_controls(U, nc)
        Uv = Ua
        B = Ua.shape[0]
        J = np.empty(B)
        G = np.empty((B, nc))
        Jv = J
        Gv = G
        nt = min(self.nthreads, B)
        own, X, W = self.claim(nt)
        try:
            # rows of milliseconds: one at a time to whichever thread is free (dynamic)
            for b in prange(B, nogil=True, num_threads=nt, schedule="dynamic"):
                tid = threadid()
                Jv[b] = value_and_grad(p, &Uv[b, 0], &X[tid * xs], &W[tid * ws], &Gv[b, 0])
        finally:
            self.release(own)
        return J, G


cdef class Lorenz96CostBatch(Lorenz96Rows):
    """Batched forward-only J of one ``Lorenz96Cost``: the rows of U on ``threads`` OpenMP threads,
    as ``Lorenz96Batch`` runs the gradients (``Lorenz96Rows``: two states and three stage vectors
    per thread); a row is exactly what ``Lorenz96Cost.cost`` gives for it.
    """

    def __cinit__(self, Lorenz96Cost cost not None, threads):
        pass  # Lorenz96Rows has sized the work arrays for the forward-only kernel

    def cost(self, U):
        """J[B] for U of shape (B, n_control), C-contiguous finite float64."""
        cdef Py_ssize_t B, b, tid, nt, xs = self.xsize, ws = self.wsize
        cdef const double[:, ::1] Uv
        cdef double[::1] Jv
        cdef double[::1] X
        cdef double[::1] W
        cdef const problem96* p = &self.kernel.p
        cdef bint own
        Ua = batch_controls(U, self.kernel.nc)
        Uv = Ua
        B = Ua.shape[0]
        J = np.empty(B)
        Jv = J
        nt = min(self.nthreads, B)
        own, X, W = self.claim(nt)
        try:
            for b in prange(B, nogil=True, num_threads=nt, schedule="dynamic"):
                tid = threadid()
                Jv[b] = cost(p, &Uv[b, 0], &X[tid * xs], &W[tid * ws])
        finally:
            self.release(own)
        return J
