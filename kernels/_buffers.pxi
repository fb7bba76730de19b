# Buffer helpers shared by the native backends' Cython wrappers (included, not imported, so
# each extension stays one self-contained module). The including module cimports
# cpython.buffer (PyBUF_*, PyObject_*, PyBuffer_Release) and libc.string (memcpy, strcmp).

cdef bint read_doubles(object u, Py_ssize_t n, double* out) except -1:
    """Copy u into out if it exposes exactly n contiguous native doubles; else return False.

    The buffer protocol is the fast path (no NumPy call); anything else is left to the
    problem's own validation, which converts or raises ValueError.
    """
    cdef Py_buffer view
    cdef bint ok
    if not PyObject_CheckBuffer(u):
        return False
    try:
        PyObject_GetBuffer(u, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
    except Exception:  # e.g. a strided array: not an error yet, the slow path decides
        return False
    ok = (view.ndim == 1 and view.shape[0] == n and view.itemsize == 8
          and view.format != NULL and strcmp(view.format, b"d") == 0)
    if ok:
        memcpy(out, view.buf, n * sizeof(double))
    PyBuffer_Release(&view)
    return ok


cdef object new_vector(object empty, const double* src, Py_ssize_t n):
    """A fresh float64 ndarray holding src[0:n]."""
    cdef Py_buffer view
    out = empty(n)
    PyObject_GetBuffer(out, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    memcpy(view.buf, src, n * sizeof(double))
    PyBuffer_Release(&view)
    return out


cdef object batch_controls(object U, Py_ssize_t nc):
    """U as a C-contiguous float64 array of shape (B >= 1, nc) with finite entries, or ValueError.

    The one check of every batch entry point (gradients and forward-only costs); the including
    module imports numpy as np.
    """
    Ua = np.asarray(U)
    if Ua.dtype != np.float64 or Ua.ndim != 2 or Ua.shape[1] != nc or Ua.shape[0] < 1:
        raise ValueError(f"batched controls must be a float64 array of shape (B >= 1, {nc}), got {Ua.dtype} {Ua.shape}")
    Ua = np.ascontiguousarray(Ua)
    if not np.all(np.isfinite(Ua)):
        raise ValueError("batched controls must be finite")
    return Ua


cdef object batch_controls32(object U, Py_ssize_t nc):
    """``batch_controls`` for a native entry that counts rows in int32 (the Enzyme front doors)."""
    Ua = batch_controls(U, nc)
    if Ua.shape[0] > 2147483647:  # INT32_MAX
        raise ValueError(f"batched controls must have at most 2147483647 rows, got {Ua.shape[0]}")
    return Ua


cdef Py_ssize_t team_size(object threads, bint openmp) except -1:
    """The OpenMP team of a batch: ``threads`` (a positive integer, else ValueError), or 1 when
    the extension was built without OpenMP (its rows then run on the calling thread)."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return threads if openmp else 1
