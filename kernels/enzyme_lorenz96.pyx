# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""adjointbench._enzyme96: the Enzyme-differentiated Lorenz-96 kernel (kernels/lorenz96_enzyme.cpp).

The object file linked in (built by build_tools/ext_enzyme.py from the IR in
kernels/generated/) exports the front door ``lorenz96_entry`` with enzyme-ad's
``entry(void** outs, void** ins)`` ABI as ``adjointbench_enzyme_lorenz96``.
``Lorenz96Enzyme`` holds one problem's observations and background, converted and checked
once; every size is checked here before native code runs (the C++ side trusts them).  The
scratch (8n + n_control doubles) is allocated per call, so calls from several threads (the
kernel runs without the GIL) share nothing writable.  Besides the gradient (``vg``, the batch
``vgb``, the fused ``descent``) the front door computes J alone (``cost``, the batch ``costs``) by the primal
forward model that Enzyme differentiates, in the same object.
"""

import numpy as np

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from libc.math cimport isfinite
from libc.stdint cimport int32_t, INT32_MAX
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, strcmp

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>

    void adjointbench_enzyme_lorenz96(void **outs, void **ins);

    /* Enzyme's tape allocator.  The object's calls to malloc/free for the tape (the values
       Enzyme's reverse sweep needs: some 32 blocks per gradient, each of nsteps * n doubles)
       are renamed to these two at build time (build_tools/regenerate_enzyme_ir.py, renames).
       glibc serves blocks that large by mmap and returns them to the kernel on free, so every
       gradient paid the page faults of a fresh tape (~70% of its time at N = 40000); here a
       freed block is kept in a per-thread cache and handed out again for a request of at
       most its size (and at least half of it).  malloc's contract holds: 16-byte aligned,
       uninitialised memory, NULL when the system is out of memory.  A thread keeps at most
       AB_TAPE_RETAIN bytes; its blocks are released when it exits or calls release_tape(). */
    #define AB_TAPE_SLOTS 128
    #define AB_TAPE_RETAIN ((size_t)1 << 30)
    #define AB_TAPE_HEADER 16
    typedef struct { void *block[AB_TAPE_SLOTS]; int count; size_t bytes; } ab_tape_cache;
    static pthread_key_t ab_tape_key;
    static pthread_once_t ab_tape_once = PTHREAD_ONCE_INIT;

    static size_t ab_tape_capacity(void *block) { return *(size_t *)block; }

    static void ab_tape_release_cache(void *p) {
        ab_tape_cache *c = (ab_tape_cache *)p;
        if (c == NULL) return;
        for (int i = 0; i < c->count; ++i) free(c->block[i]);
        free(c);
    }
    static void ab_tape_make_key(void) { pthread_key_create(&ab_tape_key, ab_tape_release_cache); }

    static ab_tape_cache *ab_tape_cache_get(void) {
        pthread_once(&ab_tape_once, ab_tape_make_key);
        ab_tape_cache *c = (ab_tape_cache *)pthread_getspecific(ab_tape_key);
        if (c == NULL && (c = (ab_tape_cache *)calloc(1, sizeof *c)) != NULL &&
            pthread_setspecific(ab_tape_key, c) != 0) {
            free(c);
            c = NULL;
        }
        return c;
    }

    void *adjointbench_enzyme96_tape_malloc(size_t size) {
        ab_tape_cache *c = ab_tape_cache_get();
        if (c != NULL) {
            int best = -1;
            for (int i = 0; i < c->count; ++i) {
                size_t cap = ab_tape_capacity(c->block[i]);
                if (cap >= size && cap / 2 <= size && (best < 0 || cap < ab_tape_capacity(c->block[best]))) best = i;
            }
            if (best >= 0) {
                char *b = (char *)c->block[best];
                c->bytes -= ab_tape_capacity(b);
                c->block[best] = c->block[--c->count];
                return b + AB_TAPE_HEADER;
            }
        }
        if (size > (size_t)-1 - AB_TAPE_HEADER) return NULL;
        char *b = (char *)malloc(size + AB_TAPE_HEADER);
        if (b == NULL) return NULL;
        *(size_t *)b = size;
        return b + AB_TAPE_HEADER;
    }

    void adjointbench_enzyme96_tape_free(void *p) {
        if (p == NULL) return;
        char *b = (char *)p - AB_TAPE_HEADER;
        ab_tape_cache *c = ab_tape_cache_get();
        size_t cap = ab_tape_capacity(b);
        if (c != NULL && c->count < AB_TAPE_SLOTS && cap <= AB_TAPE_RETAIN - c->bytes) {
            c->block[c->count++] = b;
            c->bytes += cap;
        } else {
            free(b);
        }
    }

    static size_t ab_tape_release(void) {
        ab_tape_cache *c = ab_tape_cache_get();
        size_t bytes = 0;
        if (c == NULL) return 0;
        for (int i = 0; i < c->count; ++i) free(c->block[i]);
        bytes = c->bytes;
        c->count = 0;
        c->bytes = 0;
        return bytes;
    }
    static size_t ab_tape_retained(void) {
        ab_tape_cache *c = ab_tape_cache_get();
        return c == NULL ? 0 : c->bytes;
    }
    """
    # lorenz96_entry of lorenz96_enzyme.cpp; sizes[7] is the mode below
    void adjointbench_enzyme_lorenz96(void **outs, void **ins) nogil
    size_t ab_tape_release() nogil
    size_t ab_tape_retained() nogil

# the front door's modes (enum Mode in kernels/lorenz96_enzyme.cpp)
cdef enum:
    GRADIENTS = 0
    DESCENT = 1
    COSTS = 2


include "_buffers.pxi"


def release_tape():
    """Free the Enzyme tape blocks this thread keeps for reuse; returns the bytes freed."""
    return ab_tape_release()


def retained_tape():
    """Bytes of Enzyme tape this thread keeps for the next gradient."""
    return ab_tape_retained()

#: largest n: the kernel indexes the 4n doubles of its scratch with int arithmetic
MAX_N = (INT32_MAX - 8) // 8


def _index_vector(value, str what, Py_ssize_t lo, Py_ssize_t hi):
    """value as a non-empty, strictly increasing int32 vector in lo..hi, or ValueError."""
    a = np.asarray(value)
    if a.ndim != 1 or a.size < 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be a non-empty 1-D integer array")
    if a[0] < lo or a[a.size - 1] > hi or np.any(np.diff(a) <= 0):
        raise ValueError(f"{what} must be strictly increasing in {lo}..{hi}")
    return np.ascontiguousarray(a, dtype=np.int32)


def _positive(double v, str what):
    if not (isfinite(v) and v > 0):
        raise ValueError(f"{what} must be a positive finite number, got {v!r}")


cdef class Lorenz96Enzyme:
    """One problem's buffers; ``vg``, ``vgb`` and ``descent`` call the Enzyme gradient on them.

    The control is x0 (``n_control == n``; the forcing ``F`` is then fixed) or (x0, F)
    (``n_control == n + 1``).  A control vector that is not already a contiguous float64 vector
    of length n_control is handed to ``check`` (the problem's ``check_control``: converts it
    or raises ValueError).
    """

    cdef object _steps, _idx, _obs, _xb, check
    cdef const int32_t *steps
    cdef const int32_t *idx
    cdef const double *obs
    cdef const double *xb
    cdef double reals[5]
    cdef int32_t sizes[8]
    cdef readonly int n, n_control

    def __init__(self, int n, double dt, double F, steps, indices, obs, double sigma_o=1.0,
                 background=None, double sigma_b=1.0, int n_control=-1, check=None):
        if n < 4 or n > MAX_N:
            raise ValueError(f"n must be in 4..{MAX_N}, got {n}")
        if n_control == -1:
            n_control = n
        if n_control != n and n_control != n + 1:
            raise ValueError(f"n_control must be n={n} or n+1={n + 1}, got {n_control}")
        _positive(dt, "dt")
        _positive(sigma_o, "sigma_o")
        _positive(sigma_b, "sigma_b")
        if not isfinite(F):
            raise ValueError(f"F must be finite, got {F!r}")
        s = _index_vector(steps, "steps", 0, INT32_MAX)
        i = _index_vector(indices, "indices", 0, n - 1)
        o = np.ascontiguousarray(obs, dtype=np.float64)
        if o.shape != (s.size, i.size) or not np.all(np.isfinite(o)):
            raise ValueError(f"obs must be finite with shape ({s.size}, {i.size}), got shape {o.shape}")
        if background is None:
            xb = np.zeros(1)  # never read (has_background = 0); only a valid pointer
        else:
            xb = np.ascontiguousarray(background, dtype=np.float64)
            if xb.shape != (n,) or not np.all(np.isfinite(xb)):
                raise ValueError(f"background must be None or {n} finite numbers, got shape {xb.shape}")
        if check is not None and not callable(check):
            raise ValueError("check must be callable")
        self.n = n
        self.n_control = n_control
        self.check = check
        self.reals[0] = dt
        self.reals[1] = F
        self.reals[2] = sigma_o
        self.reals[3] = sigma_b
        self.reals[4] = 0.0
        self.sizes[0] = n
        self.sizes[1] = n_control
        self.sizes[2] = <int32_t>s.size
        self.sizes[3] = <int32_t>i.size
        self.sizes[4] = 1
        self.sizes[5] = 0
        self.sizes[6] = background is not None
        self.sizes[7] = GRADIENTS
        # private copies, read-only after this
        self._steps, self._idx, self._obs, self._xb = s.copy(), i.copy(), o.copy(), xb.copy()
        cdef const int32_t[::1] sv = self._steps
        cdef const int32_t[::1] iv = self._idx
        cdef const double[::1] ov = self._obs.reshape(-1)
        cdef const double[::1] bv = self._xb
        self.steps, self.idx, self.obs, self.xb = &sv[0], &iv[0], &ov[0], &bv[0]

    cdef object _control(self, object u):
        """u as a finite, contiguous float64 vector of length n_control (no copy if it is one)."""
        cdef const double[::1] v
        cdef Py_ssize_t i
        if not (type(u) is np.ndarray and u.dtype == np.float64 and u.ndim == 1
                and u.shape[0] == self.n_control and u.flags.c_contiguous):
            if self.check is not None:
                u = self.check(u)
            if not (type(u) is np.ndarray and u.dtype == np.float64 and u.ndim == 1
                    and u.shape[0] == self.n_control and u.flags.c_contiguous):
                raise ValueError(f"control vector must be a float64 vector of length {self.n_control}")
        v = u
        for i in range(self.n_control):
            if not isfinite(v[i]):
                raise ValueError("control vector must be finite")
        return u

    cdef int _call(self, const double *U, double *J, double *G, int32_t B, int32_t iterations,
                   double step, int32_t mode=GRADIENTS) except -1:
        """lorenz96_entry through enzyme-ad's entry(outs, ins) ABI, with fresh scratch.

        Scratch: 8n + n_control doubles for a gradient (primal, shadow, descent step), 4n for
        the forward-only costs (the primal's state and RK4 buffers).
        """
        cdef double reals[5]
        cdef int32_t sizes[8]
        cdef void *outs[3]
        cdef void *ins[7]
        cdef Py_ssize_t k
        cdef size_t nwork = 4 * <size_t>self.n if mode == COSTS else 8 * <size_t>self.n + self.n_control
        cdef double *work = <double *>calloc(nwork, sizeof(double))
        if work == NULL:
            raise MemoryError(f"scratch of {nwork} doubles")
        for k in range(5):
            reals[k] = self.reals[k]
        for k in range(8):
            sizes[k] = self.sizes[k]
        reals[4] = step
        sizes[4] = B
        sizes[5] = iterations
        sizes[7] = mode
        outs[0] = J
        outs[1] = G
        outs[2] = work
        ins[0] = <void *>U
        ins[1] = reals
        ins[2] = sizes
        ins[3] = <void *>self.steps
        ins[4] = <void *>self.idx
        ins[5] = <void *>self.obs
        ins[6] = <void *>self.xb
        with nogil:
            adjointbench_enzyme_lorenz96(outs, ins)
        free(work)
        return 0

    cpdef tuple vg(self, object u):
        """(J, dJ/du) at the control vector u (length n_control); dJ/du a new float64 array."""
        u = self._control(u)
        cdef const double[::1] uv = u
        cdef double J
        g = np.empty(self.n_control)
        cdef double[::1] gv = g
        self._call(&uv[0], &J, &gv[0], 1, 0, 0.0)
        return J, g

    cpdef double cost(self, object u) except? -1.0:
        """J at the control vector u alone: the forward model, no shadow, no tape."""
        u = self._control(u)
        cdef const double[::1] uv = u
        cdef double J, unused
        # G is not written; a valid pointer all the same (the C++ takes a reference)
        self._call(&uv[0], &J, &unused, 1, 0, 0.0, COSTS)
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
        self._call(&Uv[0, 0], &Jv[0], &Gv[0, 0], B, 0, 0.0)
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
        # G is not written (COSTS); a valid pointer all the same
        self._call(&Uv[0, 0], &Jv[0], &unused, B, 0, 0.0, COSTS)
        return J

    cpdef tuple descent(self, object u0, Py_ssize_t iterations, double step):
        """(final control, cost at each iterate) of ``iterations`` steps of steepest descent."""
        if iterations < 1 or iterations > INT32_MAX:
            raise ValueError(f"iterations must be between 1 and {INT32_MAX}, got {iterations}")
        if not isfinite(step):
            raise ValueError(f"step must be finite, got {step!r}")
        u0 = self._control(u0)
        cdef const double[::1] uv = u0
        costs = np.empty(iterations)
        u = np.empty(self.n_control)
        cdef double[::1] cv = costs
        cdef double[::1] fv = u
        self._call(&uv[0], &cv[0], &fv[0], 1, <int32_t>iterations, step, DESCENT)
        return u, costs
