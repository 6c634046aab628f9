"""Independent references for the K x K solves: a generic convex solver (cvxpy with Clarabel, an
interior-point conic solver) on each method's problem written from its equation, in terms of the
gradients G themselves (not mtrl's Gram matrix, scaling or solvers), then polished exactly on the
support it finds. Nothing here imports mtrl.

The problems are posed on unit-norm rows: with ``n_i = |g_i|`` and ``v_i = n_i w_i`` the point
``G^T w = Ghat^T v`` has O(1) coefficients even when the norms differ by 1e5, where the conic
solver on w itself loses digits. Its answer is then polished on its support S (the tasks with
v_i above 1e-9 of the largest): the stationarity conditions restricted to S are solved in float64
in the same scaled coordinates, and the polished point is kept when it is feasible and no worse.
Each reference returns its Frank-Wolfe gap, an upper bound on its own suboptimality, so a test can
bound how far any answer is from the true optimum.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

CLARABEL = {"solver": cp.CLARABEL, "tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "max_iter": 400}


def _scaled(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(g, axis=1)
    n = np.where(n > 0, n, 1.0)
    return g / n[:, None], n


def _simplex_from_v(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    w = np.maximum(v, 0.0) / n
    return w / w.sum()


def min_norm_point(g: np.ndarray) -> tuple[np.ndarray, float]:
    """MGDA: ``w = argmin_{w in simplex} |G^T w|^2``. Returns (w, Frank-Wolfe gap of |G^T w|^2)."""
    gh, n = _scaled(g)
    v = cp.Variable(g.shape[0], nonneg=True)
    cp.Problem(cp.Minimize(cp.sum_squares(gh.T @ v)), [(1.0 / n) @ v == 1.0]).solve(**CLARABEL)
    w = _simplex_from_v(v.value, n)
    w = _polish(g, w, _min_norm_on_support)
    return w, min_norm_gap(g, w)


def min_norm_gap(g: np.ndarray, w: np.ndarray) -> float:
    x = g.T @ w
    grad = 2.0 * (g @ x)
    return float(grad @ w - grad.min())


def _min_norm_on_support(gs: np.ndarray, ns: np.ndarray) -> np.ndarray | None:
    """Affine min-norm point of the support in the scaled coordinates: ``Ahat v = mu (1/n)``,
    ``(1/n).v = 1`` with ``Ahat = Ghat_S Ghat_S^T``."""
    size = gs.shape[0]
    kkt = np.zeros((size + 1, size + 1))
    kkt[:size, :size] = gs @ gs.T
    kkt[:size, size] = kkt[size, :size] = 1.0 / ns
    rhs = np.zeros(size + 1)
    rhs[size] = 1.0
    try:
        return np.linalg.solve(kkt, rhs)[:size]
    except np.linalg.LinAlgError:
        return None


def conflict_averse(g: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, float]:
    """CAGrad's / IMGrad's inner problem: ``w = argmin_{w in simplex} alpha g0.(G^T w) + beta |G^T w|``
    with g0 the mean gradient. Returns (w, Frank-Wolfe gap)."""
    gh, n = _scaled(g)
    g0 = g.mean(axis=0)
    scale = max(float(np.linalg.norm(g0)), 1e-300)
    v = cp.Variable(g.shape[0], nonneg=True)
    x = gh.T @ v
    objective = (alpha / scale) * (g0 @ x) + (beta / scale) * cp.norm(x)
    cp.Problem(cp.Minimize(objective), [(1.0 / n) @ v == 1.0]).solve(**CLARABEL)
    w = _simplex_from_v(v.value, n)

    def objective_at(w_: np.ndarray) -> float:
        x_ = g.T @ w_
        return float(alpha * (g0 @ x_) + beta * np.linalg.norm(x_))

    def on_support(gs: np.ndarray, ns: np.ndarray, s: np.ndarray) -> np.ndarray | None:
        return _conflict_averse_on_support(gs, ns, g0 @ g[s].T / ns, alpha, beta)

    w = _polish(g, w, on_support, objective_at)
    return w, conflict_averse_gap(g, w, alpha, beta)


def conflict_averse_gap(g: np.ndarray, w: np.ndarray, alpha: float, beta: float) -> float:
    x = g.T @ w
    grad = g @ (alpha * g.mean(axis=0) + beta * x / np.linalg.norm(x))
    return float(grad @ w - grad.min())


def _conflict_averse_on_support(gs, ns, bs, alpha, beta) -> np.ndarray | None:
    """Stationarity on the support, scaled (v = n w, bs_i = g0.ghat_i): for t = |x| fixed,
    ``alpha bs + (beta / t) Ahat v = psi (1/n)`` and ``(1/n).v = 1`` are linear, v = v0 + t v1, and
    ``t^2 = v^T Ahat v`` is a quadratic in t; its positive root with the smallest objective."""
    size = gs.shape[0]
    a_hat = gs @ gs.T
    kkt = np.zeros((size + 1, size + 1))
    kkt[:size, :size] = a_hat
    kkt[:size, size] = kkt[size, :size] = 1.0 / ns
    rhs = np.zeros((size + 1, 2))
    rhs[size, 0] = 1.0
    rhs[:size, 1] = -(alpha / beta) * bs
    try:
        sol = np.linalg.solve(kkt, rhs)
    except np.linalg.LinAlgError:
        return None
    v0, v1 = sol[:size, 0], sol[:size, 1]
    a0, a1, a2 = v0 @ a_hat @ v0, v0 @ a_hat @ v1, v1 @ a_hat @ v1
    best, best_v = np.inf, None
    for t in np.roots([a2 - 1.0, 2.0 * a1, a0]):
        if abs(t.imag) > 1e-12 * abs(t) or t.real <= 0:
            continue
        v = v0 + t.real * v1
        f = alpha * float(bs @ v) + beta * float(np.sqrt(max(v @ a_hat @ v, 0.0)))
        if f < best:
            best, best_v = f, v
    return best_v


def _polish(g, w, on_support, objective=None) -> np.ndarray:
    """The support's stationary point in place of the conic solver's w, when it is a point of
    the simplex and its objective is no worse (to 1e-15 relative)."""
    gh, n = _scaled(g)
    objective = objective or (lambda w_: float(np.sum((g.T @ w_) ** 2)))
    v = w * n
    s = np.flatnonzero(v > 1e-9 * v.max())
    args = (gh[s], n[s], s) if on_support is not _min_norm_on_support else (gh[s], n[s])
    vs = on_support(*args)
    if vs is None or not np.isfinite(vs).all() or vs.min() < 0:
        return w
    polished = np.zeros_like(w)
    polished[s] = vs / n[s]
    if abs(polished.sum() - 1.0) > 1e-9:
        return w
    polished /= polished.sum()
    f, f_new = objective(w), objective(polished)
    return polished if f_new <= f + 1e-15 * abs(f) else w


def nash_bargaining(g: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Nash-MTL: ``a = argmin_{a > 0} 1/2 a^T (M + ridge diag M) a - sum log a`` (its stationary
    point is ``(M + ridge diag M) a = 1/a``), posed on c = n a (scale-free)."""
    gh, n = _scaled(g)
    c = cp.Variable(g.shape[0])
    quad = cp.sum_squares(gh.T @ c) + ridge * cp.sum_squares(c)
    cp.Problem(cp.Minimize(0.5 * quad - cp.sum(cp.log(c)))).solve(**CLARABEL)
    return _newton_polish(gh.T, ridge, c.value, lambda x: 1.0 / x, lambda x: -1.0 / x**2) / n


def power_fair(g: np.ndarray, alpha: float) -> np.ndarray:
    """FairGrad: ``w = argmin_{w > 0} 1/2 w^T M w - sum h(w_i)``, ``h' = w^(-1/alpha)`` (its
    stationary point is ``M w = w^(-1/alpha)``), for alpha > 1 (h concave: ``h = w^p / p``, p =
    1 - 1/alpha). Posed on u with ``w = s u``, ``s_i = n_i^(-2 alpha / (1 + alpha))`` (the exact
    solution for orthogonal gradients), so that u is O(1) whatever the spread of the norms."""
    p = 1.0 - 1.0 / alpha
    scale = np.linalg.norm(g, axis=1) ** (-2.0 * alpha / (1.0 + alpha))
    u = cp.Variable(g.shape[0])
    gs = g * scale[:, None]
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(gs.T @ u) - (scale**p / p) @ cp.power(u, p))).solve(**CLARABEL)
    e = -1.0 / alpha
    return _newton_polish(g.T, 0.0, scale * u.value, lambda x: x**e, lambda x: e * x ** (e - 1.0))


def _newton_polish(gt, ridge, x, h1, h2, steps: int = 5) -> np.ndarray:
    """A few Newton steps on ``(Gt^T Gt + ridge I) x = h1(x)`` from the conic solver's x (inside
    its quadratic convergence region): the float64 digits the solver's tolerance leaves."""
    m = gt.T @ gt + ridge * np.eye(gt.shape[1])
    for _ in range(steps):
        r = m @ x - h1(x)
        step = np.linalg.solve(m - np.diag(h2(x)), -r)
        if not (x + step > 0).all():
            break
        x = x + step
    return x
