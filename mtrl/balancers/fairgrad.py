"""FairGrad: alpha-fair allocation of the update among tasks, G G^T w = w^(-1/alpha)."""

from __future__ import annotations

import numpy as np

from mtrl.balancers import register
from mtrl.balancers.host_solver import HostSolverBalancer
from mtrl.balancers.simplex_solvers import gram_scale

NEWTON_ITERS = 30  # a cap: measured <= 14 iterations to a relative residual of 1e-10 (K <= 50, alpha 0.5..5)
LINE_SEARCH = 30  # backtracking candidates 0.5^j, evaluated at once
TOL = 1e-8


def power_fairness_weights(m: np.ndarray, alpha: float, iters: int = NEWTON_ITERS) -> tuple[np.ndarray, bool]:
    """Solve ``M w = w^(-1/alpha)`` (elementwise power), w > 0, for PSD ``M`` [K, K], alpha > 0.

    The solution is the unique minimiser of the strictly convex
    ``F(w) = 1/2 w^T M w - sum_i h(w_i)``, ``h' = w^(-1/alpha)`` (h = log w for alpha = 1,
    w^(1-1/alpha) / (1-1/alpha) otherwise). It exists iff no nonzero w >= 0 has G^T w = 0,
    i.e. iff 0 is not in the convex hull of the task gradients (a zero gradient or two exactly
    opposite ones make it unsolvable).

    Newton on F in the scale-free variables (M / (tr M / K)), started at the exact solution for
    orthogonal gradients, w_i = M_ii^(-alpha/(1+alpha)); each step is a backtracking line search
    whose 30 candidates are evaluated at once, accepting the largest step that keeps w > 0 and
    either satisfies Armijo on F or shrinks the residual (Armijo alone stalls at round-off near
    the solution). At most ``iters`` iterations, stopping once the relative residual
    |M w - w^(-1/alpha)| / |w^(-1/alpha)| is below 1/100 of the tolerance 1e-8. Returns (w, ok)
    with ok = that residual below 1e-8 and w finite and positive.
    """
    scale = gram_scale(m)
    mh = m / scale
    expo = -1.0 / alpha
    w = np.maximum(np.diagonal(mh), 1e-12) ** (-alpha / (1.0 + alpha))
    steps = 0.5 ** np.arange(LINE_SEARCH)
    tiny = np.finfo(np.float64).tiny

    def objective(x: np.ndarray) -> np.ndarray:
        quad = 0.5 * ((x @ mh) * x).sum(-1)
        h = np.log(x) if alpha == 1.0 else x ** (1.0 + expo) / (1.0 + expo)
        return quad - h.sum(-1)

    def relative_residual(x: np.ndarray) -> float:
        xp = x**expo
        return float(np.linalg.norm(mh @ x - xp) / np.linalg.norm(xp))

    with np.errstate(all="ignore"):  # candidates past the boundary are rejected, not computed on
        for _ in range(iters):
            if relative_residual(w) <= 0.01 * TOL:
                break
            wp = w**expo
            r = mh @ w - wp
            try:
                delta = -np.linalg.solve(mh + np.diag(wp / (alpha * w)), r)
            except np.linalg.LinAlgError:
                break
            cand = w + steps[:, None] * delta  # [J, K]
            safe = np.maximum(cand, tiny)
            armijo = objective(safe) <= objective(w) + 1e-4 * steps * float(r @ delta)
            shrink = np.linalg.norm(safe @ mh - safe**expo, axis=1) <= (1.0 - 1e-4 * steps) * np.linalg.norm(r)
            good = (cand > 0).all(axis=1) & (armijo | shrink) & np.isfinite(safe).all(axis=1)
            if not good.any():
                break
            w = cand[int(np.argmax(good))]
        rel = relative_residual(w)
    # a zero gradient makes the equation unsolvable (w_i -> inf would shrink the relative residual)
    ok = rel <= TOL and bool((np.diagonal(mh) > 1e-20).all() and np.isfinite(w).all() and (w > 0).all())
    # undo the normalisation: M = s Mh, w = s^(-alpha/(1+alpha)) w_h
    return w * scale ** (-alpha / (1.0 + alpha)), ok


@register
class FairGrad(HostSolverBalancer):
    r"""FairGrad -- Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.

    The update d = G^T w maximises the alpha-fair utility sum_t (g_t . d)^(1-alpha)/(1-alpha)
    over a norm ball; its weights solve (paper Eq. 4, elementwise power)

        G G^T w = w^(-1/alpha),   w > 0,        direction = G^T w

    alpha = 1 is Nash-MTL's bargaining solution (proportional fairness), alpha -> inf max-min
    fairness, alpha = 0 linear scalarisation (here: ``ew``'s weights 1/K).

    Hyperparameters:
      * ``alpha`` = 2.0 -- the value of the authors' Meta-World MT10 (and MT50) runs
        (``mtrl_files/run.sh`` of github.com/OptMN-Lab/fairgrad); other benchmarks in the
        paper use other values.
      * ``iters`` = 30 -- the cap on Newton iterations (they stop at the tolerance, see
        :func:`power_fairness_weights`).

    Where mtrl differs from the official code: the official code solves the equation
    approximately (scipy ``least_squares`` for the supervised benchmarks; for MT10 20 steps of
    SGD with momentum on the squared residual, keeping the best iterate) on the CPU. mtrl solves
    it to a relative residual of 1e-8 with Newton, on the float64 Gram matrix on the host (one
    host synchronisation per call). The weights are not normalised (as in the paper and code).

    When the equation has no solution (0 in the convex hull of the task gradients: a zero
    gradient, two exactly opposite gradients) or Newton has not converged, the solver failure
    is counted (``solver_failures``) and the stated fallback is used: ``ew``'s weights 1/K.
    """

    name = "fairgrad"

    def __init__(self, num_tasks: int, alpha: float = 2.0, iters: int = NEWTON_ITERS, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if alpha < 0 or int(iters) < 1:
            raise ValueError(f"fairgrad: need alpha >= 0 and iters >= 1 (got {alpha}, {iters})")
        self.alpha = float(alpha)
        self.iters = int(iters)

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        if self.alpha == 0.0:  # linear scalarisation
            return self.fallback(m), True
        return power_fairness_weights(m, self.alpha, self.iters)
