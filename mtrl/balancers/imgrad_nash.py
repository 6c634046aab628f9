"""IMGrad's Nash-MTL form (Zhou et al., IJCAI 2025, Eq. 13): imbalance-sensitive Nash-MTL."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import BalanceResult
from mtrl.balancers.host_solver import HostSolverBalancer, clipped_direction
from mtrl.balancers.nash_mtl import solve_nash
from mtrl.balancers.simplex_solvers import gram_scale, min_norm_weights

OUTER_ITERS = 100  # a cap on projected-Newton iterations on q: they stop once stationary
INNER_ITERS = 4  # damped-Newton iterations of alpha(q) per line-search candidate (tangent warm start)
NASH_ITERS = 40  # damped-Newton iterations for the Nash point alpha(0) (cold start)
LINE_SEARCH = 16
Q_MAX = 30.0  # box on q = log(alpha_i beta_i): products up to e^30
TOL_F64, TOL_F32 = 1e-6, 1e-3  # projected gradient of Phi, relative
NASH_TOL_F64, NASH_TOL_F32 = 1e-9, 1e-4  # relative residual of alpha_i beta_i = p_i


def _nash_alpha(mh: Tensor, p: Tensor, a0: Tensor, iters: int) -> Tensor:
    """Batched solve of ``Mh a = p / a`` (a > 0) for ``p >= 1``: the minimiser of the strictly
    convex, self-concordant ``1/2 a^T Mh a - sum_i p_i log a_i`` (self-concordant because every
    p_i >= 1), by damped Newton ``a += da / (1 + lambda)`` (lambda = Newton decrement), which
    stays feasible and converges from any a0 > 0 without a line search (Nesterov & Nemirovski).
    ``p``, ``a0``: [..., K]."""
    a = a0
    for _ in range(iters):
        r = a @ mh - p / a
        hess = mh + torch.diag_embed(p / (a * a))
        chol, _ = torch.linalg.cholesky_ex(hess)
        da = -torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)
        lam = ((da @ mh) * da + p * (da / a) ** 2).sum(-1).clamp_min(0).sqrt()
        a_new = a + da / (1.0 + lam).unsqueeze(-1)
        a = torch.where(torch.isfinite(a_new).all(-1, keepdim=True) & (a_new > 0).all(-1, keepdim=True), a_new, a)
    return a


def _nash_residual(mh: Tensor, p: Tensor, a: Tensor) -> Tensor:
    """Relative residual |Mh a - p/a| / |p/a| along the last dim."""
    return (a @ mh - p / a).norm(dim=-1) / (p / a).norm(dim=-1)


def imgrad_nash_weights(m: Tensor, iters: int = OUTER_ITERS) -> tuple[Tensor, Tensor, Tensor]:
    """Solve IMGrad's Eq. 13 for the Gram matrix ``m`` = G G^T. Returns (alpha, cos_theta, ok).

    Problem (beta = M alpha, psi_i = log alpha_i + log beta_i, the Nash-MTL constraint):

        min_alpha (1 - cos) sum_i beta_i + cos sum_i psi_i     s.t.  psi_i >= 0,  alpha > 0

    Reparametrised by q_i = psi_i >= 0: for every q the equations alpha_i beta_i = e^{q_i} have
    exactly one solution alpha(q) (a Nash point with weights e^q, :func:`_nash_alpha`), and
    q = 0 is the Nash-MTL solution. So Eq. 13 becomes the box-constrained, smooth problem

        min_{0 <= q <= Q_MAX}  Phi(q) = (1 - cos) 1^T M alpha(q) + cos 1^T q

    with grad Phi = (1 - cos) beta * v + cos, v = H^-1 M 1, H = M + diag(beta / alpha) (implicit
    differentiation), and an analytic Hessian. Phi is not convex in general (Eq. 13 minimises a
    concave function over a convex set); it is minimised by projected Newton (Bertsekas 1982:
    Newton on the free coordinates, the Hessian shifted by the smallest tau of a fixed ladder
    whose Cholesky succeeds, backtracking on the projection arc with the 16 candidates and their
    alpha(q) computed at once, warm-started on the tangent of alpha(q)) started at q = 0, i.e. at
    the Nash-MTL solution: the result is the KKT point of Eq. 13 reached by descent from
    Nash-MTL. Runs with torch on a float64 host copy of the Gram matrix (``*_ex`` linear algebra,
    batched line search), at most ``iters`` outer iterations, stopping once stationary.
    Computed on the scale-free M / (tr M / K).

    ok: the MGDA solve converged, g_m != 0 (else no Nash point exists), the final alpha solves
    its Nash equations, and the projected gradient of Phi is <= 1e-6 of its scale.
    """
    k = m.shape[0]
    dtype, device = m.dtype, m.device
    tol = TOL_F64 if dtype == torch.float64 else TOL_F32
    res_tol = NASH_TOL_F64 if dtype == torch.float64 else NASH_TOL_F32  # on alpha(q)'s equations
    ones = torch.ones(k, dtype=dtype, device=device)

    # cos(theta) between g0 = G^T 1/K and the MGDA min-norm point g_m = G^T w_m (>= 0 always)
    w_np, ok_mgda = min_norm_weights(m.numpy())
    w_m, ok_m = torch.from_numpy(w_np), torch.tensor(ok_mgda)
    g0_gm = (ones @ m @ w_m) / k
    g0_sq = (ones @ m @ ones) / (k * k)
    gm_sq = w_m @ m @ w_m
    denom = torch.sqrt(g0_sq.clamp_min(0) * gm_sq.clamp_min(0))
    good_cos = ok_m & (denom > 0) & torch.isfinite(denom)
    safe = torch.where(good_cos, denom, torch.ones_like(denom))
    cos = torch.where(good_cos, g0_gm / safe, torch.zeros_like(denom)).clamp(0.0, 1.0)

    scale = torch.tensor(gram_scale(m.numpy()), dtype=dtype)
    mh = m / scale
    a_coef = (1.0 - cos) * scale.sqrt()  # 1^T M alpha = sqrt(s) 1^T Mh alpha_hat, alpha = alpha_hat / sqrt(s)
    b_coef = cos
    m1 = mh.sum(dim=1)
    eye = torch.eye(k, dtype=dtype, device=device)
    steps = 0.5 ** torch.arange(LINE_SEARCH, dtype=dtype, device=device)
    taus = torch.cat(
        [torch.zeros(1, dtype=dtype, device=device), 10.0 ** torch.arange(-10, 5, dtype=dtype, device=device)]
    )

    q = torch.zeros(k, dtype=dtype, device=device)
    # the Nash point: nash_mtl's safeguarded Newton (robust from any start), then polished on the
    # unregularised equations
    alpha = _nash_alpha(mh, ones, torch.from_numpy(solve_nash(mh.numpy())[0]), NASH_ITERS)
    ok_nash = _nash_residual(mh, ones, alpha) <= res_tol

    def phi(al: Tensor, qq: Tensor) -> Tensor:
        return a_coef * (al @ mh).sum(-1) + b_coef * qq.sum(-1)

    def gradient(al: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        beta = mh @ al
        h = mh + torch.diag(beta / al)
        chol, _ = torch.linalg.cholesky_ex(h)
        v = torch.cholesky_solve(m1.unsqueeze(1), chol).squeeze(1)
        return a_coef * beta * v + b_coef, beta, v, chol

    def projected(grad: Tensor, q: Tensor) -> Tensor:
        return torch.where(q <= 1e-12, grad.clamp(max=0), torch.where(q >= Q_MAX - 1e-12, grad.clamp(min=0), grad))

    for _ in range(iters):
        grad, beta, v, chol = gradient(alpha)
        if projected(grad, q).abs().max() <= 0.01 * tol * ((grad - b_coef).abs().max() + b_coef):
            break  # stationary well inside the tolerance
        # Hessian of a_coef * 1^T M alpha(q): d alpha = A dq, A = H^-1 diag(beta);
        # d(beta*v) = [diag(v) M A - diag(beta) H^-1 E A] dq, E = diag(v/alpha) M - diag(v beta/alpha^2)
        amat = torch.cholesky_solve(torch.diag(beta), chol)
        emat = (v / alpha).unsqueeze(1) * mh - torch.diag(v * beta / alpha**2)
        hess = a_coef * (v.unsqueeze(1) * (mh @ amat) - beta.unsqueeze(1) * torch.cholesky_solve(emat @ amat, chol))
        hess = 0.5 * (hess + hess.T)
        # projected Newton: coordinates held at a bound by the gradient are not Newton-updated
        binding = ((q <= 1e-12) & (grad > 0)) | ((q >= Q_MAX - 1e-12) & (grad < 0))
        free = ~binding
        hscale = torch.diagonal(hess).abs().mean() + torch.finfo(dtype).tiny
        hred = torch.where(free.unsqueeze(0) & free.unsqueeze(1), hess, torch.zeros_like(hess))
        hred = hred + torch.diag(torch.where(free, torch.zeros_like(q), hscale.expand(k)))
        shifted = hred.unsqueeze(0) + (taus * hscale).view(-1, 1, 1) * eye
        chols, info = torch.linalg.cholesky_ex(shifted)
        pick = torch.argmax((info == 0).to(torch.int8))
        step = -torch.cholesky_solve(grad.unsqueeze(1), chols.index_select(0, pick.reshape(1)).squeeze(0)).squeeze(1)
        cand_q = (q.unsqueeze(0) + steps.unsqueeze(1) * step).clamp(0.0, Q_MAX)  # [J, K]
        cand_p = torch.exp(cand_q)
        # warm start on the tangent of alpha(q) in log space: d log alpha = diag(1/alpha) A dq
        dlog = ((cand_q - q) @ amat.T) / alpha
        cand_a = _nash_alpha(mh, cand_p, alpha.unsqueeze(0) * torch.exp(dlog.clamp(-30.0, 30.0)), INNER_ITERS)
        solved = _nash_residual(mh, cand_p, cand_a) <= res_tol
        armijo = phi(cand_a, cand_q) <= phi(alpha, q) + 1e-4 * ((cand_q - q) * grad).sum(-1)
        good = solved & armijo & torch.isfinite(cand_a).all(-1)
        idx = torch.argmax(good.to(torch.int8)).reshape(1)
        take = good.any()
        q = torch.where(take, cand_q.index_select(0, idx).squeeze(0), q)
        alpha = torch.where(take, cand_a.index_select(0, idx).squeeze(0), alpha)

    grad, beta, _, _ = gradient(alpha)
    proj = projected(grad, q)
    gscale = (grad - b_coef).abs().max() + b_coef
    stationary = proj.abs().max() <= tol * gscale
    solved = _nash_residual(mh, torch.exp(q), alpha) <= res_tol
    alpha = alpha / scale.sqrt()
    ok = good_cos & ok_nash & solved & stationary & torch.isfinite(alpha).all() & (alpha > 0).all()
    return alpha, cos, ok


@register
class IMGradNash(HostSolverBalancer):
    r"""IMGrad, Nash-MTL form -- Zhou, Liu, Zhao & Gong, "Injecting Imbalance Sensitivity for
    Multi-Task Learning", IJCAI 2025 (arXiv:2503.08006), Sec. 5.2, Eq. 13. The authors released
    only the CAGrad form (``imgrad``); this form is implemented from the paper.

    **Eq. 13, as we read it.** Nash-MTL (Navon et al., ICML 2022) finds alpha with
    alpha_i beta_i = 1, beta = G G^T alpha, by the CCP problem (paper Eq. 12)

        min_alpha  sum_i g_i^T G alpha  +  phi(alpha)        s.t.  -phi_i(alpha) <= 0, alpha_i > 0
        phi_i = log alpha_i + log(g_i^T G alpha),  phi = sum_i phi_i

    (G = [g_1 .. g_K] as columns in the paper, so g_i^T G alpha = beta_i.) The first term
    "pushes away from g0" (sum_i beta_i = K g0 . G^T alpha), phi "strikes balance". Eq. 13 weighs
    them by the imbalance indicator cos(theta), theta the angle between g0 and the MGDA min-norm
    point g_m (cos small = strongly imbalanced):

        min_alpha (1 - cos theta) sum_i beta_i + cos theta phi(alpha)     (constraints of Eq. 12)

    The constraints are kept (Eq. 13 modifies only the objective of Eq. 12). Balanced gradients
    (cos = 1) give exactly Nash-MTL; under imbalance, tasks whose gradients conflict with g0 may
    leave the Nash equality (alpha_i beta_i > 1: more weight) to push the update away from g0.
    The coefficient is 1 - cos as printed (the released CAGrad-form code uses 1.5 - cos; that is
    ``imgrad``'s convention, not this method's). Eq. 13 is not scale-free: its two terms scale
    differently with |g|, as in Nash-MTL's own CCP objective.

    **How it is solved** (see :func:`imgrad_nash_weights`): the problem is non-convex (a concave
    objective on a convex set); mtrl computes the KKT point reached by projected Newton descent
    from the Nash-MTL solution, parametrised by q = log(alpha_i beta_i) >= 0, on the device and
    without host synchronisation, instead of the official Nash-MTL CCP with cvxpy/ECOS on the
    CPU. Then, as Nash-MTL: direction = G^T alpha, scaled down to norm ``max_norm`` when longer
    (0 disables), and alpha recomputed every ``update_weights_every`` calls and reused between.
    ``weights`` are alpha times that scaling, so direction == grads.T @ weights.

    Hyperparameters: ``max_norm`` = 1.0 and ``update_weights_every`` = 1 (Nash-MTL's defaults,
    as mtrl's ``nash_mtl``); ``iters`` = 30 projected-Newton iterations. The paper has no MT10
    result for this form (only the CAGrad form was run on MT10).

    Solver failure (no Nash point exists -- 0 in the convex hull of the gradients, e.g. a zero or
    two opposite gradients -- or no convergence): counted in ``solver_failures``; fallback, as
    the paper suggests ("the derived weights ... from the last step") and as Nash-MTL does on a
    solver error: the previous call's alpha (1/K before any success). Cost: ~30 x (4 batched
    K x K Newton steps + one Hessian), a few thousand small kernels per solve; use
    ``update_weights_every`` to amortise it.
    """

    name = "imgrad_nash"

    def __init__(
        self, num_tasks: int, max_norm: float = 1.0, update_weights_every: int = 1, iters: int = OUTER_ITERS, **kwargs
    ):
        super().__init__(num_tasks, **kwargs)
        if max_norm < 0 or int(update_weights_every) < 1 or int(iters) < 1:
            raise ValueError(
                f"imgrad_nash: need max_norm >= 0, update_weights_every >= 1, iters >= 1 "
                f"(got {max_norm}, {update_weights_every}, {iters})"
            )
        self.max_norm = float(max_norm)
        self.update_weights_every = int(update_weights_every)
        self.iters = int(iters)
        self.step = 0  # calls so far (host-side int)
        self.alpha: np.ndarray | None = None  # last alpha used (the fallback), float64 on the host
        self.last_cos: float | None = None  # cos(theta) of the last solve, for logging

    def reusable_weights(self) -> np.ndarray | None:
        return self.alpha if self.alpha is not None and self.step % self.update_weights_every else None

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        alpha, cos, ok = imgrad_nash_weights(torch.from_numpy(m), self.iters)
        self.last_cos = float(cos)
        return alpha.numpy(), bool(ok)

    def fallback(self, m: np.ndarray) -> np.ndarray:
        return self.alpha if self.alpha is not None else super().fallback(m)

    def finish(self, g64: Tensor, m: np.ndarray | None, weights: np.ndarray, dtype: torch.dtype) -> BalanceResult:
        self.alpha = weights
        self.step += 1
        direction, weights_t = clipped_direction(g64, m, weights, self.max_norm, dtype)
        return BalanceResult(direction=direction, weights=weights_t)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(step=self.step, alpha=None if self.alpha is None else self.alpha.copy())
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
        self.alpha = None if state["alpha"] is None else np.array(state["alpha"], dtype=np.float64)
