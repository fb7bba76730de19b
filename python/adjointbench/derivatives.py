"""Derivative approximations, written once: the complex step (paper eq. 24) and differences (eq. 22).

Every user — the verification gate (``verify``), the complex-step and fd reference backends,
Gauss-Newton's default Jacobian (``optimize``) and the paper's Figs. 1-3 — calls these.  The
functions differentiate any ``f`` of a float64 vector; scalar-valued ``f`` gives a gradient,
vector-valued ``f`` a Jacobian (one column per control).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

#: the complex step's h: exact to rounding, as no difference is taken (eq. 24)
COMPLEX_STEP_H = 1e-20
_EPS = float(np.finfo(np.float64).eps)


def _vector(u: ArrayLike) -> np.ndarray:
    return np.asarray(u, dtype=np.float64).ravel()


def complex_step_jacobian(
    f: Callable[[np.ndarray], Any], u: ArrayLike, h: float = COMPLEX_STEP_H, dtype: type = np.complex128,
) -> np.ndarray:
    """d f / d u by complex step, eq. (24): column k is Im f(u + i h e_k) / h.  f must accept complex input.

    Shape: f's output shape + (n,) — (n,) for a scalar f (its gradient), (m, n) for a residual vector.
    ``dtype`` is the complex type u is evaluated in (``np.clongdouble``: extended precision on x86).
    """
    x = _vector(u)
    cols = []
    for k in range(x.size):
        uc: np.ndarray = x.astype(dtype)
        uc[k] += 1j * h
        cols.append(np.imag(np.asarray(f(uc))) / h)
    return np.stack(cols, axis=-1)


def complex_step_gradient(
    f: Callable[[np.ndarray], Any], u: ArrayLike, h: float = COMPLEX_STEP_H, dtype: type = np.complex128,
) -> np.ndarray:
    """grad f(u) of a scalar f by complex step (eq. 24), evaluated in complex ``dtype``."""
    g = complex_step_jacobian(f, u, h, dtype)
    if g.ndim != 1:
        raise ValueError(f"complex_step_gradient needs a scalar function, got output shape {g.shape[:-1]}")
    return g


def complex_step_directional(f: Callable[[np.ndarray], Any], u: ArrayLike, d: ArrayLike,
                             h: float = COMPLEX_STEP_H) -> float:
    """The directional derivative d/da f(u + a d) at a = 0 by complex step: Im f(u + i h d) / h."""
    return float(np.imag(f(_vector(u) + 1j * h * _vector(d))) / h)


def _steps(x: np.ndarray, h: float | None, scale: float) -> np.ndarray:
    # default h_k = scale * max(1, |x_k|): relative steps for large entries, absolute near zero
    return np.full(x.shape, float(h)) if h is not None else scale * np.maximum(1.0, np.abs(x))


def central_difference_jacobian(f: Callable[[np.ndarray], Any], u: ArrayLike, h: float | None = None) -> np.ndarray:
    """Central differences, eq. (22): (f(u + h_k e_k) - f(u - h_k e_k)) / (2 h_k), default h_k = eps^(1/3) max(1, |u_k|).

    Each quotient divides by the step actually taken (the difference of the two representable
    points), not by the nominal 2 h_k.
    """
    x = _vector(u)
    hs = _steps(x, h, np.cbrt(_EPS))
    cols = []
    for k in range(x.size):
        up, um = x.copy(), x.copy()
        up[k] += hs[k]
        um[k] -= hs[k]
        cols.append((np.asarray(f(up), dtype=np.float64) - np.asarray(f(um), dtype=np.float64)) / (up[k] - um[k]))
    return np.stack(cols, axis=-1)


def forward_difference_jacobian(f: Callable[[np.ndarray], Any], u: ArrayLike, h: float | None = None) -> np.ndarray:
    """Forward differences: (f(u + h_k e_k) - f(u)) / h_k, default h_k = sqrt(eps) max(1, |u_k|)."""
    x = _vector(u)
    hs = _steps(x, h, np.sqrt(_EPS))
    f0 = np.asarray(f(x), dtype=np.float64)
    cols = []
    for k in range(x.size):
        up = x.copy()
        up[k] += hs[k]
        cols.append((np.asarray(f(up), dtype=np.float64) - f0) / (up[k] - x[k]))
    return np.stack(cols, axis=-1)
