"""Lorenz-96 RK4 value-and-gradient for the backend ``numba``: typed loops, compiled by njit.

The same algorithm as ``models/lorenz96_equations.py`` (the reference formulation, paper §2.2
eqs. 16-19): a forward sweep that stores the states x_0..x_nlast only, then the backward sweep
lambda_n = (dM/dx_n)^T lambda_{n+1} + dJ/dx_n (eq. 18) with the forcing's adjoint accumulating
(dM/dF)^T lambda_{n+1} (eq. 19), the RK4 stages of step n recomputed from x_n.  What changes is
the shape of the code, not the arithmetic:

- the ring is indexed directly: the interior 2..N-3 without wrap-around, the four indices
  0, 1, N-2, N-1 with ``% N`` (no padded copies, no ``np.roll``).  The interior loops run over
  q = i - 2 >= 0 with indices q, q + 1, ... : numba wraps negative indices, and an index i - 2
  with a signed i keeps that check in the loop and stops LLVM from vectorising it (5x slower);
- a stage state is formed in the same pass as the tendency it comes from
  (x2_i = x_i + dt/2 f_i(x) needs f_i only), and the RK4 sum k1 + 2k2 + 2k3 + k4 is accumulated
  stage by stage in the order NumPy evaluates it, so the forward sweep rounds like NumPy;
- the adjoint of a step is four gather passes, one per stage: pass s computes
  g_s = (df/dx)^T b_s at the stage state (``_fa``), the next stage's b from it, and adds g_s to
  the new multiplier.  The sum a + g1 + g2 + g3 + g4 and dF = sum(b1 + b2 + b3 + b4) are added
  in a different order than NumPy's, so the gradient agrees with NumPy to rounding (not to the bit);
  dF is summed with four running sums (``_sum``), only for control ``state+params``;
- nothing is allocated in the sweeps: the trajectory X (nlast + 1, N) and a work block W (8, N)
  (stage states, two b buffers, the g and b accumulators, lambda) are the caller's.

``cost`` is the forward-only J (``prepare_cost``): the same ``rk4_step`` and the same sums on
two alternating state rows, so its J is ``value_and_grad``'s bit for bit.  The batch entry runs
T work slots (T <= threads) under ``prange``, each slot a contiguous block of members in turn.

No fastmath: the results are NumPy's to rounding.  The njit functions below are compiled lazily,
as callees of the entries that ``build_single``/``build_batch`` compile for explicit signatures.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

#: rows of the work block W
_X2, _X3, _X4, _BA, _BB, _ACC, _BS, _LAM = range(8)
WORK_ROWS = 8
#: layout of the scalar block: F (the fixed forcing), dt, 1/sigma_o^2, sigma_b
_SF, _SDT, _SINV_O2, _SSIGMA_B = range(4)

njit = numba.njit  # fastmath off: rounding as in NumPy
#: the per-element bodies, inlined in numba's IR (one compilation with their loop)
_inline = numba.njit(inline="always")


@_inline
def _f(x, im2, im1, i, ip1, F):
    """f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, NumPy's operation order (``rhs``)."""
    return (x[ip1] - x[im2]) * x[im1] - x[i] + F


@_inline
def _fa(x, b, s, jm2, jm1, j, jp1, jp2):
    """((df/dx)^T (s b))_j at state x, the operation order of ``rhs_adjoint``.

    x_j enters f_{j-1} (times x_{j-2}), f_{j+2} (times -x_{j+1}), f_{j+1} (times
    x_{j+2} - x_{j-1}) and f_j (times -1).  s * b[k] rounds like a materialised s * b.
    """
    return (s * b[jm1]) * x[jm2] - (s * b[jp2]) * x[jp1] + (s * b[jp1]) * (x[jp2] - x[jm1]) - s * b[j]


# ---- forward: one RK4 step x -> out, stages in xs/xt, the running sum of the k's in ks ----------

@_inline
def _fw1(x, F, h, xs, ks, i, im2, im1, ip1):
    k = _f(x, im2, im1, i, ip1, F)
    xs[i] = x[i] + h * k          # x2 = x + dt/2 k1
    ks[i] = k


@_inline
def _fw2(x, xin, F, c, w, xs, ks, i, im2, im1, ip1):
    k = _f(xin, im2, im1, i, ip1, F)
    xs[i] = x[i] + c * k          # x3 = x + dt/2 k2, x4 = x + dt k3
    ks[i] = ks[i] + w * k         # (k1 + 2 k2) + 2 k3


@_inline
def _fw4(x, xin, F, c6, ks, out, i, im2, im1, ip1):
    out[i] = x[i] + c6 * (ks[i] + _f(xin, im2, im1, i, ip1, F))


@njit
def rk4_step(x, F, dt, xs, xt, ks, out):
    """out = x + dt/6 (k1 + 2 k2 + 2 k3 + k4) (``lorenz96_equations.step``)."""
    n = x.shape[0]
    h = 0.5 * dt
    c6 = dt / 6.0
    for q in range(n - 4):
        _fw1(x, F, h, xs, ks, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _fw1(x, F, h, xs, ks, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)
    for q in range(n - 4):
        _fw2(x, xs, F, h, 2.0, xt, ks, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _fw2(x, xs, F, h, 2.0, xt, ks, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)
    for q in range(n - 4):
        _fw2(x, xt, F, dt, 2.0, xs, ks, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _fw2(x, xt, F, dt, 2.0, xs, ks, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)
    for q in range(n - 4):
        _fw4(x, xs, F, c6, ks, out, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _fw4(x, xs, F, c6, ks, out, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)


# ---- backward: the transpose of one RK4 step (``lorenz96_equations.step_adjoint``) ---------------

@_inline
def _stage(x, xin, F, c, out, i, im2, im1, ip1):
    out[i] = x[i] + c * _f(xin, im2, im1, i, ip1, F)


@njit
def _stages(x, F, dt, x2, x3, x4):
    """Recompute the stage states x2, x3, x4 of the step from x (the k's are not needed)."""
    n = x.shape[0]
    h = 0.5 * dt
    for q in range(n - 4):
        _stage(x, x, F, h, x2, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _stage(x, x, F, h, x2, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)
    for q in range(n - 4):
        _stage(x, x2, F, h, x3, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _stage(x, x2, F, h, x3, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)
    for q in range(n - 4):
        _stage(x, x3, F, dt, x4, q + 2, q, q + 1, q + 3)
    for i in (0, 1, n - 2, n - 1):
        _stage(x, x3, F, dt, x4, i, (i - 2) % n, (i - 1) % n, (i + 1) % n)


@_inline
def _adj4(x4, a, c6, c3, dt, bnext, acc, bs, j, jm2, jm1, jp1, jp2):
    # stage 4: b4 = dt/6 a; g4 = (df/dx)^T b4 at x4; b3 = dt/3 a + dt g4 (x4 = x + dt k3)
    g = _fa(x4, a, c6, jm2, jm1, j, jp1, jp2)
    b = c3 * a[j] + dt * g
    bnext[j] = b
    acc[j] = g
    bs[j] = c6 * a[j] + b


@_inline
def _adj(xs, bprev, a, ca, cg, bnext, acc, bs, j, jm2, jm1, jp1, jp2):
    # stages 3, 2: g = (df/dx)^T b at the stage state; next b = ca a + cg g
    g = _fa(xs, bprev, 1.0, jm2, jm1, j, jp1, jp2)
    b = ca * a[j] + cg * g
    bnext[j] = b
    acc[j] = acc[j] + g
    bs[j] = bs[j] + b


@_inline
def _adj1(x, b1, a, acc, j, jm2, jm1, jp1, jp2):
    # stage 1 at x itself; lambda_n = a + g1 + (g4 + g3 + g2), in place (a_j is read at j only)
    a[j] = a[j] + _fa(x, b1, 1.0, jm2, jm1, j, jp1, jp2) + acc[j]


@njit
def rk4_step_adjoint(x, a, F, dt, W, want_dF):
    """a <- (dM/dx)^T a at state x; returns (dM/dF)^T a = sum_i (b1 + b2 + b3 + b4)_i (0 unless want_dF).

    ``step``'s lines walked backwards (§2.2): x+ = x + dt/6 (k1 + 2 k2 + 2 k3 + k4) hands
    dt/6, dt/3, dt/3, dt/6 of a to the stages and a itself to x; each k = f(x + c k_prev) hands
    (df/dx)^T b to x and, times c, to k_prev's b.
    """
    n = x.shape[0]
    x2 = W[_X2]
    x3 = W[_X3]
    x4 = W[_X4]
    bA = W[_BA]
    bB = W[_BB]
    acc = W[_ACC]
    bs = W[_BS]
    _stages(x, F, dt, x2, x3, x4)
    h = 0.5 * dt
    c6 = dt / 6.0
    c3 = dt / 3.0
    for q in range(n - 4):
        _adj4(x4, a, c6, c3, dt, bB, acc, bs, q + 2, q, q + 1, q + 3, q + 4)
    for j in (0, 1, n - 2, n - 1):
        _adj4(x4, a, c6, c3, dt, bB, acc, bs, j, (j - 2) % n, (j - 1) % n, (j + 1) % n, (j + 2) % n)
    for q in range(n - 4):       # b3 -> g3 at x3 = x + dt/2 k2; b2 = dt/3 a + dt/2 g3
        _adj(x3, bB, a, c3, h, bA, acc, bs, q + 2, q, q + 1, q + 3, q + 4)
    for j in (0, 1, n - 2, n - 1):
        _adj(x3, bB, a, c3, h, bA, acc, bs, j, (j - 2) % n, (j - 1) % n, (j + 1) % n, (j + 2) % n)
    for q in range(n - 4):       # b2 -> g2 at x2 = x + dt/2 k1; b1 = dt/6 a + dt/2 g2
        _adj(x2, bA, a, c6, h, bB, acc, bs, q + 2, q, q + 1, q + 3, q + 4)
    for j in (0, 1, n - 2, n - 1):
        _adj(x2, bA, a, c6, h, bB, acc, bs, j, (j - 2) % n, (j - 1) % n, (j + 1) % n, (j + 2) % n)
    for q in range(n - 4):       # b1 -> g1 at x
        _adj1(x, bB, a, acc, q + 2, q, q + 1, q + 3, q + 4)
    for j in (0, 1, n - 2, n - 1):
        _adj1(x, bB, a, acc, j, (j - 2) % n, (j - 1) % n, (j + 1) % n, (j + 2) % n)
    return _sum(bs) if want_dF else 0.0


@njit
def _sum(v):
    """sum_i v_i with four running sums: a fixed order (no fastmath) whose adds can overlap."""
    n = v.shape[0]
    m = n - n % 4
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for q in range(0, m, 4):
        s0 += v[q]
        s1 += v[q + 1]
        s2 += v[q + 2]
        s3 += v[q + 3]
    for q in range(m, n):
        s0 += v[q]
    return (s0 + s1) + (s2 + s3)


# ---- J and its gradient -----------------------------------------------------------------------

@njit
def value_and_grad(u, scal, steps, idx, obs, xb, X, W, g):
    """J(u) and dJ/du into g (length n, or n + 1 with dJ/dF last); X, W the caller's work.

    u = x_0 or (x_0, F); xb of length 0 means no background term.  X has at least
    steps[-1] + 1 rows: the trajectory is integrated only to the last observation.
    """
    n = X.shape[1]
    params = u.shape[0] == n + 1
    F = u[n] if params else scal[_SF]
    dt = scal[_SDT]
    inv_o2 = scal[_SINV_O2]
    K = steps.shape[0]
    m = idx.shape[0]
    nlast = steps[K - 1]
    x2 = W[_X2]
    x3 = W[_X3]
    ks = W[_X4]
    lam = W[_LAM]
    for i in range(n):
        X[0, i] = u[i]
    for t in range(nlast):
        rk4_step(X[t], F, dt, x2, x3, ks, X[t + 1])
    # observation term; dJ/dx_{s_k}[idx] = (x_{s_k}[idx] - y_k) / sigma_o^2 (eq. 18, 1st term)
    Jo = 0.0
    for k in range(K):
        xs = X[steps[k]]
        for j in range(m):
            d = xs[idx[j]] - obs[k, j]
            Jo += d * d
    J = 0.5 * inv_o2 * Jo
    for i in range(n):
        lam[i] = 0.0
    dF = 0.0
    k = K - 1
    for t in range(nlast, -1, -1):
        if k >= 0 and steps[k] == t:
            xs = X[t]
            for j in range(m):
                lam[idx[j]] += inv_o2 * (xs[idx[j]] - obs[k, j])
            k -= 1
        if t == 0:
            break
        dF += rk4_step_adjoint(X[t - 1], lam, F, dt, W, params)
    if xb.shape[0] > 0:
        sb = scal[_SSIGMA_B]
        Jb = 0.0
        for i in range(n):
            e = (u[i] - xb[i]) / sb
            Jb += e * e
            lam[i] = lam[i] + e / sb
        J = J + 0.5 * Jb
    for i in range(n):
        g[i] = lam[i]
    if params:
        g[n] = dF
    return J


def _descent(u, iterations, step, scal, steps, idx, obs, xb, X, W, g, costs):
    # base.python_descent's loop, u <- u - step * grad, with the gradient kept in g
    for it in range(iterations):
        costs[it] = value_and_grad(u, scal, steps, idx, obs, xb, X, W, g)
        for j in range(u.shape[0]):
            u[j] = u[j] - step * g[j]


@njit
def cost(u, scal, steps, idx, obs, xb, S, W):
    """J(u) alone: value_and_grad's forward sweep and sums, keeping only the current state.

    S (2, N) holds x_t and x_{t+1} in turn (x_{t+1} is written while x_t is read, as into the
    trajectory's next row), W (3, N) the stages; the observation term is summed in the order
    of ``value_and_grad`` (k, then j) as each observed step is reached, then the background
    term, so J is the gradient's J to the last bit.
    """
    n = S.shape[1]
    F = u[n] if u.shape[0] == n + 1 else scal[_SF]
    dt = scal[_SDT]
    K = steps.shape[0]
    m = idx.shape[0]
    nlast = steps[K - 1]
    x2 = W[0]
    x3 = W[1]
    ks = W[2]
    for i in range(n):
        S[0, i] = u[i]
    Jo = 0.0
    k = 0
    for t in range(nlast + 1):
        xs = S[t % 2]
        if steps[k] == t:
            for j in range(m):
                d = xs[idx[j]] - obs[k, j]
                Jo += d * d
            k += 1
        if t < nlast:
            rk4_step(xs, F, dt, x2, x3, ks, S[(t + 1) % 2])
    J = 0.5 * scal[_SINV_O2] * Jo
    if xb.shape[0] > 0:
        sb = scal[_SSIGMA_B]
        Jb = 0.0
        for i in range(n):
            e = (u[i] - xb[i]) / sb
            Jb += e * e
        J = J + 0.5 * Jb
    return J


#: rows of the forward-only work: the two states, then the stages x2, x3 and the RK4 sum
COST_ROWS = (2, 3)


def _batch(U, scal, steps, idx, obs, xb, X, W, G, J):
    # prange over T work slots (X[c], W[c]: one trajectory and work block each), slot c running
    # the members of its contiguous block of rows: T x trajectory bytes, whatever B is
    T = X.shape[0]
    B = U.shape[0]
    for c in numba.prange(T):
        for b in range(c * B // T, (c + 1) * B // T):
            J[b] = value_and_grad(U[b], scal, steps, idx, obs, xb, X[c], W[c], G[b])


def _cost_batch(U, scal, steps, idx, obs, xb, S, W, J):
    # the forward-only J of every member: prange over T slots (S[c], W[c]: 5 N doubles each),
    # slot c running its contiguous block of rows, as ``_batch`` does for the gradient
    T = S.shape[0]
    B = U.shape[0]
    for c in numba.prange(T):
        for b in range(c * B // T, (c + 1) * B // T):
            J[b] = cost(U[b], scal, steps, idx, obs, xb, S[c], W[c])


def _types() -> tuple[Any, Any, Any, Any]:
    from numba import float64, int64

    return float64[::1], float64[:, ::1], float64[:, :, ::1], int64[::1]


def _compile_member() -> None:
    """The vg entry is the module's dispatcher compiled for its one signature: the descent and
    batch entries call it with these very types and so reuse that compilation."""
    from numba import float64

    C1, C2, _, I1 = _types()
    value_and_grad.compile(float64(C1, C1, I1, I1, C2, C1, C2, C2, C1))


def build_single() -> dict[str, Any]:
    """The entries ``vg`` and ``descent``, compiled now for their one signature each."""
    from numba import float64, int64, void

    C1, C2, _, I1 = _types()
    _compile_member()
    return {
        "vg": value_and_grad,
        "descent": njit(void(C1, int64, float64, C1, I1, I1, C2, C1, C2, C2, C1, C1))(_descent),
    }


def build_cost() -> dict[str, Any]:
    """The entry ``cost`` (forward-only J), compiled now for its one signature."""
    from numba import float64

    C1, C2, _, I1 = _types()
    cost.compile(float64(C1, C1, I1, I1, C2, C1, C2, C2))
    return {"cost": cost}


def build_cost_batch() -> dict[str, Any]:
    """The entry ``cost_batch`` (prange over members of the forward-only J), compiled now."""
    from numba import void

    build_cost()  # the member's cost, compiled for the signature the entry calls it with
    C1, C2, C3, I1 = _types()
    return {"cost_batch": njit(void(C2, C1, I1, I1, C2, C1, C3, C3, C1), parallel=True)(_cost_batch)}


def build_batch() -> dict[str, Any]:
    """The entry ``batch`` (prange over members, parallel=True), compiled now."""
    from numba import void

    _compile_member()  # a no-op when build_single ran first
    C1, C2, C3, I1 = _types()
    return {"batch": njit(void(C2, C1, I1, I1, C2, C1, C3, C3, C2, C1), parallel=True)(_batch)}


class Data:
    """The problem's arrays as the entries take them (writable contiguous copies, made once)."""

    __slots__ = ("scal", "steps", "idx", "obs", "xb", "nstates", "n")

    def __init__(self, problem: Any) -> None:
        self.n = problem.n
        self.nstates = problem.last_obs_step + 1
        sigma_o = problem.sigma_o
        self.scal = np.array([problem.F, problem.dt, 1.0 / (sigma_o * sigma_o), problem.sigma_b])
        self.steps = np.array(problem.obs_steps, dtype=np.int64)
        self.idx = np.array(problem.obs_indices, dtype=np.int64)
        self.obs = np.array(problem.obs_values, dtype=np.float64, order="C")
        bg = problem.background
        self.xb = np.zeros(0) if bg is None else np.array(bg, dtype=np.float64)

    def args(self) -> tuple[np.ndarray, ...]:
        return self.scal, self.steps, self.idx, self.obs, self.xb

    def work(self, *batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, W): the trajectory and work block, with leading batch dimensions if given."""
        return np.empty(batch + (self.nstates, self.n)), np.empty(batch + (WORK_ROWS, self.n))

    def slot_bytes(self) -> int:
        """Bytes of one (X, W) pair: what each work slot of a batch holds."""
        return 8 * self.n * (self.nstates + WORK_ROWS)

    def cost_work(self, *batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(S, W) of the forward-only cost: 5 N doubles, no trajectory (leading batch dimensions if given)."""
        return np.empty(batch + (COST_ROWS[0], self.n)), np.empty(batch + (COST_ROWS[1], self.n))
