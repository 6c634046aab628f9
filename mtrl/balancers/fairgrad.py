"""FairGrad: alpha-fair allocation of the update among tasks, G G^T w = w^(-1/alpha)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._simplex import gram, gram_scale
from mtrl.balancers.base import BalanceResult, Balancer

NEWTON_ITERS = 30  # measured: <= 14 iterations to a relative residual of 1e-10 (K <= 30, alpha 0.5..5)
LINE_SEARCH = 30  # backtracking candidates 0.5^j, evaluated at once
TOL_F64, TOL_F32 = 1e-8, 1e-4


def power_fairness_weights(m: Tensor, alpha: float, iters: int = NEWTON_ITERS) -> tuple[Tensor, Tensor]:
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
    the solution). Fixed ``iters``; Cholesky via ``cholesky_ex``: no host synchronisation.
    Returns (w, ok) with ok = relative residual |M w - w^(-1/alpha)| / |w^(-1/alpha)| below
    1e-8 (float64; 1e-4 in float32) and w finite and positive.
    """
    dtype, device = m.dtype, m.device
    scale = gram_scale(m)
    mh = m / scale
    expo = -1.0 / alpha
    w = torch.diagonal(mh).clamp_min(1e-12).pow(-alpha / (1.0 + alpha))
    steps = 0.5 ** torch.arange(LINE_SEARCH, dtype=dtype, device=device)
    zero = torch.zeros((), dtype=dtype, device=device)
    tiny = torch.finfo(dtype).tiny

    def objective(x: Tensor) -> Tensor:
        quad = 0.5 * ((x @ mh) * x).sum(-1)
        h = torch.log(x) if alpha == 1.0 else x.pow(1.0 + expo) / (1.0 + expo)
        return quad - h.sum(-1)

    for _ in range(iters):
        wp = w.pow(expo)
        r = mh @ w - wp
        hess = mh + torch.diag(wp / (alpha * w))
        chol, _ = torch.linalg.cholesky_ex(hess)
        delta = -torch.cholesky_solve(r.unsqueeze(1), chol).squeeze(1)
        cand = w.unsqueeze(0) + steps.unsqueeze(1) * delta.unsqueeze(0)  # [J, K]
        pos = (cand > 0).all(dim=1)
        safe = cand.clamp_min(tiny)
        armijo = objective(safe) <= objective(w) + 1e-4 * steps * (r @ delta)
        shrink = (safe @ mh - safe.pow(expo)).norm(dim=1) <= (1.0 - 1e-4 * steps) * r.norm()
        good = pos & (armijo | shrink) & torch.isfinite(safe).all(dim=1)
        # gather, not steps[idx]: indexing with a 0-dim tensor reads it on the host
        s = torch.where(good.any(), steps.gather(0, torch.argmax(good.to(torch.int8)).reshape(1)).squeeze(0), zero)
        w_new = w + s * delta
        w = torch.where(torch.isfinite(w_new).all() & (w_new > 0).all(), w_new, w)

    wp = w.pow(expo)
    rel = (mh @ w - wp).norm() / wp.norm()
    tol = TOL_F64 if dtype == torch.float64 else TOL_F32
    # a zero gradient makes the equation unsolvable (w_i -> inf would shrink the relative residual)
    nonzero = (torch.diagonal(mh) > 1e-20).all()
    ok = (rel <= tol) & nonzero & torch.isfinite(w).all() & (w > 0).all()
    # undo the normalisation: M = s Mh, w = s^(-alpha/(1+alpha)) w_h
    return w * scale.pow(-alpha / (1.0 + alpha)), ok


@register
class FairGrad(Balancer):
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
      * ``iters`` = 30 -- Newton iterations (fixed, see :func:`power_fairness_weights`).

    Where mtrl differs from the official code: the official code solves the equation
    approximately (scipy ``least_squares`` for the supervised benchmarks; for MT10 20 steps of
    SGD with momentum on the squared residual, keeping the best iterate) on the CPU. mtrl solves
    it to a relative residual of 1e-8 with Newton on the training device, without host
    synchronisation. The weights are not normalised (as in the paper and code).

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

    def _balance(self, grads: Tensor, losses: Tensor) -> BalanceResult:
        k = grads.shape[0]
        m = gram(grads)
        uniform = torch.full((k,), 1.0 / k, dtype=m.dtype, device=m.device)
        if self.alpha == 0.0:
            w = uniform
        else:
            w, ok = power_fairness_weights(m, self.alpha, self.iters)
            self._count_failure(~ok)
            w = torch.where(ok, w, uniform)
        w = w.to(grads.dtype)
        return BalanceResult(direction=grads.T @ w, weights=w)
