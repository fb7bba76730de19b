"""Optimisers for the paper's experiments, each driven by a value-and-gradient ``vg(u) -> (J, g)``.

- ``steepest_descent``: u <- u - step * g (Fig. 5, Tbl. 3).
- ``nvm``: J. C. Nash's variable-metric method, the algorithm of R's ``Rvmmin``/optimx "nvm"
  used for Tbl. 2 (Nash 1990, Compact Numerical Methods, Algorithm 21; Nash 2020).  No Python
  library has it (scipy's BFGS uses a Wolfe line search, not Nash's backtracking), so it is
  written here by hand, following Rvmminu's control flow and its counts.
- ``vmmin``: the same method as R's ``optim(method = "BFGS")`` runs it (C ``vmmin``): the paper's
  "BFGS" row of Tbl. 2 came from R, whose BFGS stops on a relative change of J below
  ``reltol`` and after ``maxit = 100`` iterations.
- ``bfgs``: scipy's BFGS; ``lbfgsb``: scipy's L-BFGS-B.
- ``lbfgs_torch``: ``torch.optim.LBFGS`` (the paper's L-BFGS, via torch for R), with or without
  the strong-Wolfe line search, optionally restarted from the steepest-descent direction when it
  stalls (Tbl. 4's "restart", up to 10 times).
- ``gauss_newton``: Gauss-Newton for least squares with complex-step Jacobians (Figs. 2, 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .derivatives import complex_step_jacobian
from .workload import VG, python_descent

#: R's .Machine$double.eps
DBL_EPS = float(np.finfo(np.float64).eps)


@dataclass
class OptimizeResult:
    """Outcome of a minimisation.

    ``nit`` counts iterations as the optimiser's own package does (Rvmmin: gradient
    evaluations; scipy: ``nit``; torch: ``n_iter``); ``nfev``/``ngev`` count calls of J and of
    its gradient; ``path`` holds the accepted iterates, starting with the first guess.
    """

    x: np.ndarray
    fun: float
    nit: int
    nfev: int
    ngev: int
    status: int = 0
    message: str = ""
    path: list[np.ndarray] = field(default_factory=list)
    restarts: int = 0


class _Counted:
    """Wraps vg: counts calls and caches the last evaluation, so that a line search that
    evaluates J at the accepted point need not evaluate the gradient there again."""

    def __init__(self, vg: VG) -> None:
        self.vg = vg
        self.calls = 0
        self._x: np.ndarray | None = None
        self._out: tuple[float, np.ndarray] | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self._x is not None and np.array_equal(self._x, x):
            return self._out  # type: ignore[return-value]
        J, g = self.vg(x)
        self.calls += 1
        self._x = np.array(x, dtype=np.float64)
        self._out = (float(J), np.array(g, dtype=np.float64))
        return self._out


def _as_x0(x0: Any) -> np.ndarray:
    x = np.array(x0, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("the first guess must be a non-empty finite vector")
    return x


def steepest_descent(vg: VG, x0: Any, *, step: float, iterations: int) -> OptimizeResult:
    """``iterations`` gradient evaluations of u <- u - step * g (``workload.python_descent``, the
    Tbl. 3 loop itself); path holds every iterate, from the first guess to the last update."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    path: list[np.ndarray] = []

    def recorded(u: np.ndarray) -> tuple[float, np.ndarray]:
        path.append(u.copy())
        return vg(u)

    res = python_descent(recorded, _as_x0(x0), iterations, step)
    path.append(res.u.copy())
    return OptimizeResult(x=res.u, fun=float(res.costs[-1]), nit=iterations, nfev=iterations, ngev=iterations, path=path)


def nvm(
    vg: VG, x0: Any, *, maxit: int | None = None, maxfeval: int | None = None, eps: float = 1e-7,
    acctol: float = 1e-4, stepredn: float = 0.2, reltest: float = 100.0,
) -> OptimizeResult:
    """Nash's variable metric method as in R's Rvmmin (unconstrained, ``Rvmminu``).

    Inverse-Hessian B starts at I; the search direction t = -B g is tried with a backtracking
    line search from step 1, shrinking by ``stepredn`` until the acceptance point test
    f < fmin + gradproj * step * acctol holds or the step no longer changes the parameters
    (tested as ``x + reltest == x_new + reltest``).  B gets the BFGS update when t.c > 0,
    otherwise it is reset to I (a steepest-descent restart).  It stops when a steepest-descent
    search finds no acceptable point, or the gradient norm is below (1 + |f|) eps^2.
    ``nit`` is the number of gradient evaluations (Rvmmin's ``counts[2]``).
    """
    x = _as_x0(x0)
    n = x.size
    maxit = 500 + 2 * n if maxit is None else maxit
    maxfeval = 3000 + 10 * n if maxfeval is None else maxfeval
    f_of = _Counted(vg)
    f, g = f_of(x)
    if not np.isfinite(f):
        raise ValueError("the first guess gives a non-finite cost")
    ifn, ig = 1, 1
    ilast = ig
    status, message = -1, ""
    path = [x.copy()]
    fmin = f
    if np.linalg.norm(g) < (1 + abs(fmin)) * eps * eps:
        status, message = 2, "small gradient norm"
    B = np.eye(n)
    while status == -1:
        if ilast == ig:
            B = np.eye(n)
        fmin = f
        par = x.copy()
        c = g.copy()
        t = -B @ g
        gradproj = float(t @ g)
        accpoint = False
        trial = par
        if gradproj <= 0:
            steplength = 1.0
            changed = True
            while changed and not accpoint:
                trial = par + steplength * t
                changed = not np.array_equal(trial + reltest, par + reltest)
                if changed:
                    f, _ = f_of(trial)
                    ifn += 1
                    if ifn > maxfeval:
                        status, message = 1, "too many function evaluations"
                        break
                    if not np.isfinite(f):
                        f = np.finfo(np.float64).max
                    accpoint = f < fmin + gradproj * steplength * acctol
                    if not accpoint:
                        steplength *= stepredn
            if status != -1:
                break
        if accpoint:
            x = trial
            fmin = f
            _, g = f_of(x)
            ig += 1
            if ig > maxit:
                status, message = 1, "too many gradient evaluations"
                path.append(x.copy())
                break
            path.append(x.copy())
            if np.linalg.norm(g) < (1 + abs(fmin)) * eps * eps:
                status, message = 2, "small gradient norm"
                break
            t = steplength * t
            c = g - c
            D1 = float(t @ c)
            if D1 > 0:
                y = B.T @ c
                D2 = 1.0 + float(c @ y) / D1
                B = B - (np.outer(t, y) + np.outer(y, t) - D2 * np.outer(t, t)) / D1
            else:
                # update impossible: the next search restarts from steepest descent
                ilast = ig
        else:
            if ig == ilast or abs(gradproj) < (1 + abs(fmin)) * eps * eps:
                x = par
                status, message = 0, "converged"
            else:
                # As in Rvmminu, the steepest-descent retry starts from the last trial point
                # (equal to par within the reltest test) with fmin the last J evaluated.
                x = trial
                ilast = ig
    return OptimizeResult(x=x, fun=float(fmin), nit=ig, nfev=ifn, ngev=ig, status=status, message=message, path=path)


def vmmin(
    vg: VG, x0: Any, *, maxit: int = 100, reltol: float = float(np.sqrt(DBL_EPS)),
    abstol: float = -np.inf, acctol: float = 1e-4, stepredn: float = 0.2, reltest: float = 10.0,
) -> OptimizeResult:
    """R's ``optim(method = "BFGS")``: the same variable metric method in C (``vmmin``), with
    R's defaults: stop when J changes by less than ``reltol`` relatively, or after ``maxit``
    iterations, and a periodic restart every 2n gradient evaluations.  ``nit`` counts
    gradient evaluations (optim's ``counts["gradient"]``)."""
    x = _as_x0(x0)
    n = x.size
    f_of = _Counted(vg)
    f, g = f_of(x)
    if not np.isfinite(f):
        raise ValueError("the first guess gives a non-finite cost")
    fmin = f
    funcount = gradcount = 1
    it = 1
    ilast = gradcount
    path = [x.copy()]
    B = np.eye(n)
    while True:
        if ilast == gradcount:
            B = np.eye(n)
        X = x.copy()
        c = g.copy()
        t = -B @ g
        gradproj = float(t @ g)
        if gradproj < 0.0:
            steplength = 1.0
            accpoint = False
            while True:
                trial = X + steplength * t
                count = int(np.sum(reltest + X == reltest + trial))
                if count < n:
                    f, _ = f_of(trial)
                    funcount += 1
                    accpoint = bool(np.isfinite(f) and f <= fmin + gradproj * steplength * acctol)
                    if not accpoint:
                        steplength *= stepredn
                if count == n or accpoint:
                    break
            enough = f > abstol and abs(f - fmin) > reltol * (abs(fmin) + reltol)
            if not enough:
                count = n
                fmin = f
                x = trial
            if count < n:
                fmin = f
                x = trial
                _, g = f_of(x)
                gradcount += 1
                it += 1
                path.append(x.copy())
                t = steplength * t
                c = g - c
                D1 = float(t @ c)
                if D1 > 0:
                    Bc = B @ c
                    D2 = 1.0 + float(Bc @ c) / D1
                    B = B + (D2 * np.outer(t, t) - np.outer(Bc, t) - np.outer(t, Bc)) / D1
                else:
                    ilast = gradcount
            else:
                if ilast < gradcount:
                    count = 0
                    ilast = gradcount
        else:
            count = 0
            if ilast == gradcount:
                count = n
            else:
                ilast = gradcount
        if it >= maxit:
            break
        if gradcount - ilast > 2 * n:
            ilast = gradcount
        if count == n and ilast == gradcount:
            break
    status = 1 if it >= maxit else 0
    return OptimizeResult(x=x, fun=float(fmin), nit=gradcount, nfev=funcount, ngev=gradcount, status=status,
                          message="iteration limit reached" if status else "converged", path=path)


def _scipy(vg: VG, x0: Any, method: str, options: dict[str, Any]) -> OptimizeResult:
    from scipy.optimize import minimize

    x = _as_x0(x0)
    path = [x.copy()]
    f_of = _Counted(vg)
    res = minimize(lambda u: f_of(u), x, jac=True, method=method, options=options,
                   callback=lambda xk: path.append(np.array(xk, dtype=np.float64)))
    return OptimizeResult(x=np.asarray(res.x), fun=float(res.fun), nit=int(res.nit), nfev=int(res.nfev),
                          ngev=int(getattr(res, "njev", res.nfev)), status=int(res.status),
                          message=str(res.message), path=path)


def bfgs(vg: VG, x0: Any, *, gtol: float = 1e-10, maxiter: int = 2000) -> OptimizeResult:
    """scipy's BFGS (Nocedal & Wright Alg. 6.1 with a strong-Wolfe line search)."""
    return _scipy(vg, x0, "BFGS", {"gtol": gtol, "maxiter": maxiter})


def lbfgsb(vg: VG, x0: Any, *, gtol: float = 1e-10, ftol: float = 1e-15, maxiter: int = 2000) -> OptimizeResult:
    """scipy's L-BFGS-B (Byrd, Lu, Nocedal & Zhu) without bounds."""
    return _scipy(vg, x0, "L-BFGS-B", {"gtol": gtol, "ftol": ftol, "maxiter": maxiter})


def lbfgs_torch(
    vg: VG, x0: Any, *, line_search: bool = True, restarts: int = 0, steps: int = 10,
    max_iter: int = 20, lr: float = 1.0, history_size: int = 100, tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9, stol: float = 1e-8, dtype: str = "float64",
) -> OptimizeResult:
    """``torch.optim.LBFGS`` driven as the paper's torch-for-R scripts drive ``optim_lbfgs``:
    up to ``steps`` calls of ``optimizer.step(closure)``, each running up to ``max_iter`` L-BFGS
    iterations (torch's defaults otherwise), with the strong-Wolfe line search when
    ``line_search``; the loop stops when the loss returned by two consecutive steps differs by
    less than ``stol``, or when x no longer moves.

    Such a stop with the gradient still above ``tolerance_grad`` is a stall; with ``restarts``
    > 0 the optimizer is then recreated, which clears its history so that its next iteration
    starts again from the steepest-descent direction (Tbl. 4, "restart", up to 10 times), and
    it gets ``steps`` more steps.  ``path`` holds every point where J was evaluated; ``nit``
    sums torch's ``n_iter`` over the restarts.
    """
    import torch

    from .backends.torch_ad import torch_dtype

    x = _as_x0(x0)
    # float32 is torch's default dtype: for a vg that computes in single precision
    tdtype = torch_dtype(dtype)
    param = torch.tensor(x, dtype=tdtype, requires_grad=True)
    path = [x.copy()]
    last = [np.inf, x.copy()]

    def closure() -> torch.Tensor:
        u = param.detach().numpy().copy()
        J, g = vg(u)
        path.append(u)
        last[0] = float(J)
        param.grad = torch.as_tensor(np.asarray(g)).to(tdtype).reshape(param.shape)
        return torch.tensor(float(J), dtype=tdtype)

    def make() -> torch.optim.LBFGS:
        return torch.optim.LBFGS(
            [param], lr=lr, max_iter=max_iter, history_size=history_size, tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change, line_search_fn="strong_wolfe" if line_search else None,
        )

    nit = 0
    used = 0
    status, message = 1, "step limit reached"
    while True:
        opt = make()
        loss_old = np.inf
        stalled = False
        for _ in range(steps):
            before = param.detach().numpy().copy()
            loss = float(opt.step(closure))
            if abs(loss_old - loss) < stol or np.array_equal(param.detach().numpy(), before):
                stalled = True
                break
            loss_old = loss
        nit += int(opt.state[param].get("n_iter", 0))
        J, g = vg(param.detach().numpy().copy())
        if np.max(np.abs(np.asarray(g))) <= tolerance_grad:
            status, message = 0, "gradient below tolerance"
            break
        if stalled:
            status, message = 2, "stalled"
        if used >= restarts:
            break
        used += 1
    u = param.detach().numpy().astype(np.float64)
    return OptimizeResult(x=u, fun=float(J), nit=nit, nfev=len(path) - 1, ngev=len(path) - 1,
                          status=status, message=message, path=path, restarts=used)


def gauss_newton(
    residual: Callable[[np.ndarray], np.ndarray], x0: Any, *,
    jacobian: Callable[[np.ndarray], np.ndarray] | None = None, tol: float = 1e-10, maxiter: int = 50,
) -> OptimizeResult:
    """Gauss-Newton for min 1/2 |r(x)|^2: x <- x - (J^T J)^-1 J^T r, J by complex step unless
    given.  Stops when the step's norm is below ``tol`` (1 + |x|); ``nit`` counts steps taken
    before the stopping step (the paper's "converges in 2 steps")."""
    x = _as_x0(x0)
    jac = jacobian or (lambda u: complex_step_jacobian(residual, u))
    path = [x.copy()]
    for it in range(maxiter):
        r = np.asarray(residual(x), dtype=np.float64)
        Jm = np.asarray(jac(x), dtype=np.float64)
        dx = -np.linalg.lstsq(Jm, r, rcond=None)[0]
        if np.linalg.norm(dx) <= tol * (1 + np.linalg.norm(x)):
            r = np.asarray(residual(x), dtype=np.float64)
            return OptimizeResult(x=x, fun=0.5 * float(r @ r), nit=it, nfev=it + 1, ngev=it + 1,
                                  message="converged", path=path)
        x = x + dx
        path.append(x.copy())
    r = np.asarray(residual(x), dtype=np.float64)
    return OptimizeResult(x=x, fun=0.5 * float(r @ r), nit=maxiter, nfev=maxiter, ngev=maxiter, status=1,
                          message="iteration limit reached", path=path)
