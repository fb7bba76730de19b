# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""adjointbench._adolc: the ADOL-C tapes of both models (kernels/adolc/lorenz_adolc.cpp).

``Lorenz63Tape`` / ``Lorenz96Tape`` hold one problem's data (converted and checked here:
the C++ side trusts every size) and, while it is resident, one ADOL-C tape of its cost.

ADOL-C keeps its tapes in process-wide state and is not thread-safe: every call into it runs
under the one lock ``LOCK`` (the GIL is released inside, so other Python threads run on).

Tapes live in memory.  ADOL-C writes a tape to files once one of its buffers fills, so
every tape is recorded with buffer sizes that hold it whole: the number of operations,
locations and values of a tape is a linear function of the problem's shape (window, N,
observations), fitted exactly from tapestats of a few tiny pilot tapes (``_fit``) and
checked against tapestats after the real taping; the Taylor buffer (the values a keep = 1
forward saves for the reverse sweep) gets the operations plus ADOL-C's store size, and is
checked the same way.  A tape that spilled anyway is re-recorded with the sizes its
tapestats report; its files go to a private temporary directory (ADOL-C's tape base names
are pointed there at import), never to the cwd, and are deleted with it.

ADOL-C allows at most 32 tapes with a Taylor stack at a time (TBUFNUM): at most
``MAX_RESIDENT`` tapes are resident, each under one of as many reused tags; the least recently
used is removed (removeTape) when another is needed and re-taped at its next call.  A tape
whose object is garbage collected is removed at the next call into ADOL-C (not from inside
the collector, which may run while another tape is being recorded).
"""

import atexit
import glob
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict

import numpy as np

from libc.stdint cimport int32_t, INT32_MAX
from libc.string cimport memset

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    extern "C" {
    int ab_adolc_status_size(void);
    int ab_adolc_set_tape_dir(const char *dir, char *err, size_t errlen);
    int ab_adolc_tape_l63(short tag, double dt, double sigma, double r, double beta, int32_t nlast, int32_t nobs,
                          const int32_t *steps, const double *obs, int32_t n_control, const double *u,
                          const unsigned *sizes, double *J, size_t *stats, char *err, size_t errlen);
    int ab_adolc_tape_l96(short tag, int32_t n, double dt, double F, int32_t nlast, int32_t nobs,
                          const int32_t *steps, int32_t m, const int32_t *idx, const double *obs, double sigma_o,
                          const double *xb, double sigma_b, int32_t n_control, const double *u,
                          const unsigned *sizes, double *J, size_t *stats, char *err, size_t errlen);
    int ab_cost_l63(double dt, double sigma, double r, double beta, int32_t nlast, int32_t nobs,
                    const int32_t *steps, const double *obs, int32_t n_control, const double *u, double *J,
                    char *err, size_t errlen);
    int ab_cost_l96(int32_t n, double dt, double F, int32_t nlast, int32_t nobs, const int32_t *steps, int32_t m,
                    const int32_t *idx, const double *obs, double sigma_o, const double *xb, double sigma_b,
                    int32_t n_control, const double *u, double *J, char *err, size_t errlen);
    int ab_adolc_replay(short tag, int32_t n, int32_t B, const double *U, double *J, double *G, int32_t *row,
                        char *err, size_t errlen);
    int ab_adolc_forward(short tag, int32_t n, const double *u, double *J, char *err, size_t errlen);
    int ab_adolc_gradient(short tag, int32_t n, const double *u, double *g, char *err, size_t errlen);
    int ab_adolc_tapestats(short tag, size_t *stats, char *err, size_t errlen);
    int ab_adolc_remove(short tag, char *err, size_t errlen);
    }
    #ifndef AB_ADOLC_VERSION
    #define AB_ADOLC_VERSION "unknown"
    #endif
    static const char *ab_adolc_version = AB_ADOLC_VERSION;  /* set by build_tools/ext_adolc.py */
    """
    const char *ab_adolc_version
    int ab_adolc_status_size() nogil
    int ab_adolc_set_tape_dir(const char *dir, char *err, size_t errlen) nogil
    int ab_adolc_tape_l63(short tag, double dt, double sigma, double r, double beta, int32_t nlast, int32_t nobs,
                          const int32_t *steps, const double *obs, int32_t n_control, const double *u,
                          const unsigned *sizes, double *J, size_t *stats, char *err, size_t errlen) nogil
    int ab_adolc_tape_l96(short tag, int32_t n, double dt, double F, int32_t nlast, int32_t nobs,
                          const int32_t *steps, int32_t m, const int32_t *idx, const double *obs, double sigma_o,
                          const double *xb, double sigma_b, int32_t n_control, const double *u,
                          const unsigned *sizes, double *J, size_t *stats, char *err, size_t errlen) nogil
    int ab_cost_l63(double dt, double sigma, double r, double beta, int32_t nlast, int32_t nobs,
                    const int32_t *steps, const double *obs, int32_t n_control, const double *u, double *J,
                    char *err, size_t errlen) nogil
    int ab_cost_l96(int32_t n, double dt, double F, int32_t nlast, int32_t nobs, const int32_t *steps, int32_t m,
                    const int32_t *idx, const double *obs, double sigma_o, const double *xb, double sigma_b,
                    int32_t n_control, const double *u, double *J, char *err, size_t errlen) nogil
    int ab_adolc_replay(short tag, int32_t n, int32_t B, const double *U, double *J, double *G, int32_t *row,
                        char *err, size_t errlen) nogil
    int ab_adolc_forward(short tag, int32_t n, const double *u, double *J, char *err, size_t errlen) nogil
    int ab_adolc_gradient(short tag, int32_t n, const double *u, double *g, char *err, size_t errlen) nogil
    int ab_adolc_tapestats(short tag, size_t *stats, char *err, size_t errlen) nogil
    int ab_adolc_remove(short tag, char *err, size_t errlen) nogil

# tapestats entries (enum StatEntries, adolc/taping.h)
cdef enum:
    NUM_INDEPENDENTS = 0
    NUM_DEPENDENTS = 1
    NUM_MAX_LIVES = 2
    TAY_STACK_SIZE = 3
    NUM_OPERATIONS = 5
    OP_FILE_ACCESS = 6
    NUM_LOCATIONS = 7
    LOC_FILE_ACCESS = 8
    NUM_VALUES = 9
    VAL_FILE_ACCESS = 10
    STATS = 32          # room for STAT_SIZE (checked at import)
    ERRLEN = 4096
    AB_ERR = -100

#: bytes per entry of ADOL-C's buffers: operation codes, locations (locint), values, Taylors
ENTRY_BYTES = (1, 4, 8, 8)
#: most tapes resident at once (ADOL-C allows 32 Taylor stacks; some left for others)
MAX_RESIDENT = 24
#: the largest buffer ADOL-C's trace_on takes (uint)
MAX_BUFFER = 2**32 - 1

LOCK = threading.RLock()
#: the ADOL-C this extension was built against (pkg-config's version of libadolc-dev)
ADOLC_VERSION = ab_adolc_version.decode()

if ab_adolc_status_size() > STATS:
    raise ImportError(f"ADOL-C's STAT_SIZE ({ab_adolc_status_size()}) exceeds this wrapper's {STATS}")

TAPE_DIR = tempfile.mkdtemp(prefix="adjointbench-adolc-")
cdef char _err0[ERRLEN]
if ab_adolc_set_tape_dir(os.fsencode(TAPE_DIR), _err0, ERRLEN) != 0:
    raise ImportError(f"cannot set ADOL-C's tape directory: {_err0.decode(errors='replace')}")
atexit.register(shutil.rmtree, TAPE_DIR, True)

_free_tags = list(range(MAX_RESIDENT, 0, -1))  # tag 0: the pilot tapes of _fit
_resident = OrderedDict()                      # tag -> weakref to its tape object, LRU first
_pending = []                                  # tags of collected objects, removed at the next call
_store_seen = [0]                              # the largest ADOL-C store size seen (it never shrinks)
_fits = {}                                     # pilot fits, per model and control/background


def tape_files():
    """Tape files ADOL-C has written (in the private directory; empty when all stayed in memory)."""
    return sorted(glob.glob(os.path.join(TAPE_DIR, "ADOLC-*")))


def resident_tags():
    return list(_resident)


cdef str _message(char *err):
    return err.decode("utf-8", errors="replace").strip() or "no message"


cdef _remove(short tag):
    """removeTape, and the tag's files should any have been written (caller holds LOCK)."""
    cdef char err[ERRLEN]
    err[0] = 0
    with nogil:
        ab_adolc_remove(tag, err, ERRLEN)
    for path in glob.glob(os.path.join(TAPE_DIR, f"ADOLC-*_{tag}.tap")):
        try:
            os.remove(path)
        except OSError:
            pass


cdef _collect():
    """Remove the tapes of collected objects (caller holds LOCK)."""
    while _pending:
        tag = _pending.pop()
        _resident.pop(tag, None)
        _remove(tag)
        _free_tags.append(tag)


cdef short _new_tag() except -1:
    """A free tag, evicting the least recently used resident tape if there is none (caller holds LOCK)."""
    _collect()
    if not _free_tags:
        tag, ref = _resident.popitem(last=False)
        owner = ref()
        if owner is not None:
            (<_Tape>owner).tag = -1
            (<_Tape>owner).evictions += 1
        _remove(tag)
        _free_tags.append(tag)
    return _free_tags.pop()


def _index_vector(value, str what, Py_ssize_t lo, Py_ssize_t hi):
    a = np.asarray(value)
    if a.ndim != 1 or a.size < 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be a non-empty 1-D integer array")
    if a[0] < lo or a[a.size - 1] > hi or np.any(np.diff(a) <= 0):
        raise ValueError(f"{what} must be strictly increasing in {lo}..{hi}")
    return np.ascontiguousarray(a, dtype=np.int32)


def _finite(double v, str what, bint positive=False):
    if not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{what} must be a {'positive ' if positive else ''}finite number, got {v!r}")


cdef class _Tape:
    """One problem's tape: recorded by ``tape(u)``, replayed by ``vg``/``vgb``/``cost``.

    ``retape_vg`` records a fresh tape at every call and runs ADOL-C's gradient() on it.
    """

    cdef readonly int n_control
    cdef public int tag
    cdef public int evictions
    cdef readonly int tapings
    cdef readonly int branch_retapes
    cdef readonly int spills
    cdef unsigned sizes[4]
    cdef size_t stats[STATS]
    cdef object check, budget, __weakref__

    def __init__(self):
        self.tag = -1

    def __dealloc__(self):
        if self.tag >= 0:
            try:
                _pending.append(self.tag)  # removed under the lock by the next call
            except Exception:  # interpreter shutdown: the module's globals are gone
                pass
            self.tag = -1

    cdef int _record(self, short tag, const double *u, double *J, size_t *stats, char *err) noexcept nogil:
        return AB_ERR

    cdef int _cost(self, const double *u, double *J, char *err) noexcept nogil:
        return AB_ERR

    def _features(self):
        raise NotImplementedError

    def _fit_key(self):
        raise NotImplementedError

    def _pilots(self):
        raise NotImplementedError

    def _live_bound(self):
        raise NotImplementedError

    # ---- sizing -------------------------------------------------------------------------
    def _predict(self):
        """(operations, locations, values) of this problem's tape, from the pilots' fit."""
        key = self._fit_key()
        fit = _fits.get(key)
        if fit is None:
            fit = _fits[key] = _fit(self._pilots())
        coef, exact = fit
        pred = np.asarray(self._features(), dtype=np.float64) @ coef
        return [int(np.ceil(max(p, 1.0))) for p in pred], exact

    cdef _set_sizes(self, sizes):
        cdef int i
        for i in range(4):
            if sizes[i] > MAX_BUFFER:
                raise ValueError(
                    f"ADOL-C tape too large: {sizes[i]} {('operations', 'locations', 'values', 'Taylor entries')[i]} "
                    f"exceed ADOL-C's buffer limit of {MAX_BUFFER}"
                )
        nbytes = sum(int(s) * b for s, b in zip(sizes, ENTRY_BYTES))
        if self.budget is not None and nbytes > self.budget:
            from adjointbench.models.lorenz96 import MemoryBudgetError  # the one refusal the scale study skips on

            raise MemoryBudgetError(
                f"ADOL-C tape would need {nbytes} bytes in memory (buffers for {sizes[0]} operations, {sizes[1]} "
                f"locations, {sizes[2]} values, {sizes[3]} Taylor entries), over the memory budget of {self.budget} bytes"
            )
        for i in range(4):
            self.sizes[i] = <unsigned>sizes[i]

    def size_buffers(self):
        """Buffer sizes for this problem's tape: the fitted counts plus a margin."""
        (ops, locs, vals), exact = self._predict()
        margin = (lambda c: c + c // 32 + 1024) if exact else (lambda c: c + c // 4 + 4096)
        tay = margin(ops) + max(_store_seen[0], 2 * self._live_bound()) + 1024
        self._set_sizes([margin(ops), margin(locs), margin(vals), tay])

    # ---- taping ---------------------------------------------------------------------------
    cdef double _record_checked(self, short tag, const double *u) except? -1.0:
        """Record at u under ``tag`` (caller holds LOCK); re-record with exact sizes if needed."""
        cdef char err[ERRLEN]
        cdef double J = 0.0
        cdef int rc, attempt
        for attempt in range(3):
            err[0] = 0
            memset(self.stats, 0, sizeof(self.stats))
            with nogil:
                rc = self._record(tag, u, &J, self.stats, err)
            if rc != 0:
                raise ValueError(f"ADOL-C failed to record the tape: {_message(err)}")
            self.tapings += 1
            if self.stats[NUM_MAX_LIVES] > _store_seen[0]:
                _store_seen[0] = self.stats[NUM_MAX_LIVES]
            spilled = self.stats[OP_FILE_ACCESS] or self.stats[LOC_FILE_ACCESS] or self.stats[VAL_FILE_ACCESS]
            short_tay = self.stats[TAY_STACK_SIZE] > self.sizes[3]
            if not spilled and not short_tay:
                return J
            # the sizing fell short: exact sizes from this tape's statistics, and record again
            self.spills += 1 if spilled else 0
            ops, locs, vals = self.stats[NUM_OPERATIONS], self.stats[NUM_LOCATIONS], self.stats[NUM_VALUES]
            tay = self.stats[TAY_STACK_SIZE]
            _remove(tag)
            self._set_sizes([max(self.sizes[0], ops + 64), max(self.sizes[1], locs + 256),
                             max(self.sizes[2], vals + 64), max(self.sizes[3], tay + 64)])
        raise ValueError("ADOL-C tape could not be kept in memory (its buffers kept filling)")

    cdef short _resident_tag(self) except -1:
        """This object's tag, marked most recently used (a new tag if it has none; caller holds LOCK)."""
        _collect()
        if self.tag < 0:
            self.tag = _new_tag()
            _resident[self.tag] = weakref.ref(self)
        else:
            _resident.move_to_end(self.tag)
        return self.tag

    def tape(self, u):
        """Record the tape at u; returns J(u) of the taping run."""
        cdef const double[::1] uv = self._control(u)
        with LOCK:
            return self._record_checked(self._resident_tag(), &uv[0])

    @property
    def tapestats(self):
        """The last taping's tapestats: counts, and the bytes of the tape itself."""
        ops, locs, vals = self.stats[NUM_OPERATIONS], self.stats[NUM_LOCATIONS], self.stats[NUM_VALUES]
        return {
            "operations": int(ops), "locations": int(locs), "values": int(vals),
            "taylor_entries": int(self.stats[TAY_STACK_SIZE]), "max_lives": int(self.stats[NUM_MAX_LIVES]),
            "tape_bytes": int(ops * ENTRY_BYTES[0] + locs * ENTRY_BYTES[1] + vals * ENTRY_BYTES[2]),
            "buffer_sizes": [int(self.sizes[i]) for i in range(4)],
            "buffer_bytes": int(sum(self.sizes[i] * ENTRY_BYTES[i] for i in range(4))),
            "spilled_to_file": bool(self.stats[OP_FILE_ACCESS] or self.stats[LOC_FILE_ACCESS] or self.stats[VAL_FILE_ACCESS]),
        }

    # ---- inputs ---------------------------------------------------------------------------
    def _control(self, u):
        if self.check is not None:
            u = self.check(u)
        a = np.ascontiguousarray(u, dtype=np.float64)
        if a.shape != (self.n_control,) or not np.all(np.isfinite(a)):
            raise ValueError(f"control vector must be {self.n_control} finite numbers, got shape {a.shape}")
        return a

    def _controls(self, U):
        a = np.ascontiguousarray(U, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != self.n_control or a.shape[0] > INT32_MAX // self.n_control:
            raise ValueError(f"batched controls must have shape (B, {self.n_control}) with B >= 1, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("batched controls must be finite")
        return a

    # ---- replay ---------------------------------------------------------------------------
    cdef _replay(self, const double[:, ::1] U, double[::1] J, double[:, ::1] G):
        """Rows of U through zos_forward(keep=1) + fos_reverse; re-tapes where a branch switched."""
        cdef char err[ERRLEN]
        cdef int32_t row = 0, start = 0, B = U.shape[0], n = self.n_control
        cdef int rc
        cdef short tag
        with LOCK:
            while start < B:
                if self.tag < 0:  # never taped, or evicted: record at the first point still to do
                    tag = self._resident_tag()
                    self._record_checked(tag, &U[start, 0])
                tag = self._resident_tag()
                err[0] = 0
                with nogil:
                    rc = ab_adolc_replay(tag, n, B - start, &U[start, 0], &J[start], &G[start, 0], &row, err, ERRLEN)
                if rc == AB_ERR:
                    raise ValueError(f"ADOL-C replay failed: {_message(err)}")
                if rc >= 0:
                    return
                if rc != -1:
                    raise ValueError(f"ADOL-C replay returned {rc} (not differentiable at this point)")
                # -1: this point lies on another branch than the taping point: re-tape there
                start += row
                self.branch_retapes += 1
                self._record_checked(tag, &U[start, 0])

    def vg(self, u):
        """(J, dJ/du) by replaying the tape."""
        u = self._control(u)
        J = np.empty(1)
        G = np.empty((1, self.n_control))
        self._replay(u.reshape(1, -1), J, G)
        return float(J[0]), G[0]

    def vgb(self, U):
        """(J[B], G[B, n]) by replaying the same tape for each row (a loop in C++)."""
        U = self._controls(U)
        J = np.empty(U.shape[0])
        G = np.empty(U.shape)
        self._replay(U, J, G)
        return J, G

    cdef double _forward(self, const double *u) except? -1.0:
        """J at u by a zos_forward of the tape (keep = 0); the caller holds LOCK."""
        cdef char err[ERRLEN]
        cdef double J = 0.0
        cdef int rc
        cdef short tag
        if self.tag < 0:
            self._record_checked(self._resident_tag(), u)
        tag = self._resident_tag()
        err[0] = 0
        with nogil:
            rc = ab_adolc_forward(tag, self.n_control, u, &J, err, ERRLEN)
        if rc == -1:  # another branch than the taping point's: re-tape here
            self.branch_retapes += 1
            return self._record_checked(tag, u)
        if rc < 0:
            raise ValueError(f"ADOL-C zos_forward failed ({rc}): {_message(err)}")
        return J

    def cost(self, u):
        """J(u) by a zos_forward of the tape with keep = 0 (no Taylor stack)."""
        cdef const double[::1] uv = self._control(u)
        with LOCK:
            return self._forward(&uv[0])

    def costs(self, U):
        """J[B]: the rows of U through zos_forward (keep = 0), one loop under the lock: the
        forward sweeps of ``vgb``'s loop without the reverse ones."""
        U = self._controls(U)
        J = np.empty(U.shape[0])
        cdef const double[:, ::1] Uv = U
        cdef double[::1] Jv = J
        cdef Py_ssize_t b
        with LOCK:
            for b in range(Uv.shape[0]):
                Jv[b] = self._forward(&Uv[b, 0])
        return J

    def retape_vg(self, u):
        """(J, dJ/du): trace_on .. trace_off at u, then ADOL-C's gradient() on that tape."""
        cdef const double[::1] uv = self._control(u)
        g = np.empty(self.n_control)
        cdef double[::1] gv = g
        cdef char err[ERRLEN]
        cdef double J = 0.0
        cdef int rc
        cdef short tag
        with LOCK:
            tag = self._resident_tag()
            J = self._record_checked(tag, &uv[0])
            err[0] = 0
            with nogil:
                rc = ab_adolc_gradient(tag, self.n_control, &uv[0], &gv[0], err, ERRLEN)
            if rc < 0:
                raise ValueError(f"ADOL-C gradient failed ({rc}): {_message(err)}")
        return J, g

    def retape_vgb(self, U):
        """(J[B], G[B, n]) for one call of the re-taping backend: trace_on .. trace_off at the
        first row, then that fresh tape replayed for every row (zos_forward + fos_reverse)."""
        U = self._controls(U)
        J = np.empty(U.shape[0])
        G = np.empty(U.shape)
        cdef const double[:, ::1] Uv = U
        with LOCK:
            self._record_checked(self._resident_tag(), &Uv[0, 0])
            self._replay(U, J, G)
        return J, G

    cdef double _forward_double(self, const double *u) except? -1.0:
        cdef char err[ERRLEN]
        cdef double J = 0.0
        cdef int rc
        err[0] = 0
        with nogil:
            rc = self._cost(u, &J, err)
        if rc != 0:
            raise ValueError(f"forward model failed: {_message(err)}")
        return J

    def cost_double(self, u):
        """J(u) by the plain double forward model (the same C++ template, no ADOL-C)."""
        cdef const double[::1] uv = self._control(u)
        return self._forward_double(&uv[0])

    def costs_double(self, U):
        """J[B] by the plain double forward model, one loop in C over the rows of U."""
        U = self._controls(U)
        J = np.empty(U.shape[0])
        cdef const double[:, ::1] Uv = U
        cdef double[::1] Jv = J
        cdef Py_ssize_t b
        for b in range(Uv.shape[0]):
            Jv[b] = self._forward_double(&Uv[b, 0])
        return J

    def release(self):
        """Remove this object's tape now (it is re-recorded at the next call)."""
        with LOCK:
            if self.tag >= 0:
                _resident.pop(self.tag, None)
                _remove(self.tag)
                _free_tags.append(self.tag)
                self.tag = -1


def _fit(pilots):
    """Least-squares fit of (operations, locations, values) against features, over pilot tapes.

    ``pilots``: (tape object, features) pairs; each is recorded under tag 0 with generous
    buffers and removed.  The counts are exactly linear in the features (the same operations
    per time step and variable, per observed value, ...): ``exact`` says whether the fit
    reproduces every pilot to the integer.
    """
    cdef _Tape t
    cdef double[::1] uv
    X, Y = [], []
    with LOCK:
        _collect()
        for obj, feats in pilots:
            t = obj
            t._set_sizes([1 << 18, 1 << 20, 1 << 18, 1 << 20])
            uv = np.linspace(0.9, 1.3, t.n_control)
            t._record_checked(0, &uv[0])
            _remove(0)
            X.append(feats)
            Y.append([t.stats[NUM_OPERATIONS], t.stats[NUM_LOCATIONS], t.stats[NUM_VALUES]])
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    coef = np.linalg.lstsq(X, Y, rcond=None)[0]
    exact = bool(np.all(np.abs(X @ coef - Y) < 1e-6))
    return coef, exact


cdef class Lorenz63Tape(_Tape):
    """Lorenz-63 (forward Euler): control (x0, y0, z0) or (x0, y0, z0, sigma, r, beta)."""

    cdef double dt, sigma, r, beta
    cdef int32_t nlast, nobs
    cdef object _steps, _obs
    cdef const int32_t *steps
    cdef const double *obs

    def __init__(self, double dt, params, steps, obs, int n_control, check=None, budget=None):
        _Tape.__init__(self)
        if n_control not in (3, 6):
            raise ValueError(f"n_control must be 3 or 6, got {n_control}")
        _finite(dt, "dt", True)
        p = np.asarray(params, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError("params must be 3 finite numbers (sigma, r, beta)")
        s = _index_vector(steps, "steps", 0, INT32_MAX - 1)
        o = np.ascontiguousarray(obs, dtype=np.float64)
        if o.shape != (s.size, 3) or not np.all(np.isfinite(o)):
            raise ValueError(f"obs must be finite with shape ({s.size}, 3), got {o.shape}")
        self.dt, self.sigma, self.r, self.beta = dt, p[0], p[1], p[2]
        self._steps, self._obs = s, o
        cdef const int32_t[::1] sv = s
        cdef const double[:, ::1] ov = o
        self.steps, self.obs = &sv[0], &ov[0, 0]
        self.nobs, self.nlast = s.size, s[s.size - 1]
        self.n_control = n_control
        self.check, self.budget = check, budget

    cdef int _record(self, short tag, const double *u, double *J, size_t *stats, char *err) noexcept nogil:
        return ab_adolc_tape_l63(tag, self.dt, self.sigma, self.r, self.beta, self.nlast, self.nobs, self.steps,
                                 self.obs, self.n_control, u, self.sizes, J, stats, err, ERRLEN)

    cdef int _cost(self, const double *u, double *J, char *err) noexcept nogil:
        return ab_cost_l63(self.dt, self.sigma, self.r, self.beta, self.nlast, self.nobs, self.steps, self.obs,
                           self.n_control, u, J, err, ERRLEN)

    def _features(self):
        return [1.0, self.nlast, self.nobs]

    def _fit_key(self):
        return ("lorenz63", self.n_control)

    def _live_bound(self):
        return 64 + self.n_control

    def _pilots(self):
        out = []
        for nlast, steps in ((1, [1]), (2, [0, 2]), (3, [1, 3]), (4, [0, 2, 4]), (5, [5]), (6, [0, 1, 6])):
            obs = 1.0 + 0.1 * np.arange(3 * len(steps), dtype=np.float64).reshape(-1, 3)
            t = Lorenz63Tape(0.01, [10.5, 28.5, 2.5], steps, obs, self.n_control)
            out.append((t, t._features()))
        return out


cdef class Lorenz96Tape(_Tape):
    """Lorenz-96 (RK4): control x0 (n) or (x0, F) (n + 1)."""

    cdef int32_t n, nlast, nobs, m
    cdef double dt, F, sigma_o, sigma_b
    cdef object _steps, _idx, _obs, _xb
    cdef const int32_t *steps
    cdef const int32_t *idx
    cdef const double *obs
    cdef const double *xb

    def __init__(self, int n, double dt, double F, steps, indices, obs, double sigma_o=1.0, background=None,
                 double sigma_b=1.0, int n_control=-1, check=None, budget=None):
        _Tape.__init__(self)
        if n < 4 or n > (INT32_MAX - 16) // 8:
            raise ValueError(f"n must be in 4..{(INT32_MAX - 16) // 8}, got {n}")
        if n_control == -1:
            n_control = n
        if n_control != n and n_control != n + 1:
            raise ValueError(f"n_control must be n={n} or n+1={n + 1}, got {n_control}")
        _finite(dt, "dt", True)
        _finite(F, "F")
        _finite(sigma_o, "sigma_o", True)
        _finite(sigma_b, "sigma_b", True)
        s = _index_vector(steps, "steps", 0, INT32_MAX - 1)
        i = _index_vector(indices, "indices", 0, n - 1)
        o = np.ascontiguousarray(obs, dtype=np.float64)
        if o.shape != (s.size, i.size) or not np.all(np.isfinite(o)):
            raise ValueError(f"obs must be finite with shape ({s.size}, {i.size}), got {o.shape}")
        cdef const int32_t[::1] sv = s
        cdef const int32_t[::1] iv = i
        cdef const double[:, ::1] ov = o
        cdef const double[::1] bv
        self._steps, self._idx, self._obs = s, i, o
        self.steps, self.idx, self.obs = &sv[0], &iv[0], &ov[0, 0]
        self.xb = NULL
        if background is not None:
            xb = np.ascontiguousarray(background, dtype=np.float64)
            if xb.shape != (n,) or not np.all(np.isfinite(xb)):
                raise ValueError(f"background must be None or {n} finite numbers, got shape {xb.shape}")
            self._xb = xb
            bv = xb
            self.xb = &bv[0]
        self.n, self.dt, self.F, self.sigma_o, self.sigma_b = n, dt, F, sigma_o, sigma_b
        self.nobs, self.nlast, self.m = s.size, s[s.size - 1], i.size
        self.n_control = n_control
        self.check, self.budget = check, budget

    cdef int _record(self, short tag, const double *u, double *J, size_t *stats, char *err) noexcept nogil:
        return ab_adolc_tape_l96(tag, self.n, self.dt, self.F, self.nlast, self.nobs, self.steps, self.m, self.idx,
                                 self.obs, self.sigma_o, self.xb, self.sigma_b, self.n_control, u, self.sizes, J,
                                 stats, err, ERRLEN)

    cdef int _cost(self, const double *u, double *J, char *err) noexcept nogil:
        return ab_cost_l96(self.n, self.dt, self.F, self.nlast, self.nobs, self.steps, self.m, self.idx, self.obs,
                           self.sigma_o, self.xb, self.sigma_b, self.n_control, u, J, err, ERRLEN)

    def _features(self):
        n, nlast = float(self.n), float(self.nlast)
        return [1.0, n, n * nlast, nlast, float(self.nobs) * self.m, float(self.nobs)]

    def _fit_key(self):
        return ("lorenz96", self.n_control == self.n + 1, self.xb != NULL)

    def _live_bound(self):
        return 8 * self.n + 64

    def _pilots(self):
        params = self.n_control == self.n + 1
        out = []
        for n, nlast, steps, m in ((4, 1, [1], 1), (5, 1, [0, 1], 2), (6, 2, [2], 3), (4, 3, [0, 1, 3], 4),
                                   (7, 2, [1, 2], 2), (5, 4, [0, 4], 5), (8, 1, [0, 1], 3), (6, 3, [3], 1)):
            idx = np.arange(m)
            obs = 1.0 + 0.1 * np.arange(len(steps) * m, dtype=np.float64).reshape(len(steps), m)
            xb = 1.5 + 0.1 * np.arange(n) if self.xb != NULL else None
            t = Lorenz96Tape(n, 0.01, 8.5, steps, idx, obs, 1.5, xb, 2.5, n + 1 if params else n)
            out.append((t, t._features()))
        return out
