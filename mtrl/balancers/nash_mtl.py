"""Nash-MTL: the Nash bargaining solution of the tasks' update directions.

    alpha > 0  with  (G G^T) alpha = 1 / alpha  (elementwise),
    i.e. alpha = argmin_{a > 0}  1/2 a^T (G G^T) a - sum_i log a_i;
    d = G^T alpha, scaled down to norm max_norm when it is longer (max_norm = 0 disables).

Every task gets the same "bargaining utility": alpha_i * (g_i . d) = 1, so d has a positive
inner product with every task gradient and |d|^2 = alpha^T G G^T alpha = K.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._simplex import frozen_on_cpu, gram, gram_scale
from mtrl.balancers.base import BalanceResult, Balancer, clone_or_none

NEWTON_ITERS = 30  # measured: <= 20 reach the tolerance, including zero and exactly opposite rows
NASH_TOL = 1e-6  # max_i |a_i (M_reg a)_i - 1|: the relative residual of M_reg a = 1/a
NASH_TOL_F32 = 1e-4  # the same, where the solver has to run in float32 (MPS)


def _ridge(dtype: torch.dtype) -> float:
    """Relative ridge eps of ``M_reg = M + eps * diag(M)`` (see NashMTL's docstring)."""
    return 1e-8 if dtype == torch.float64 else 1e-5


def nash_regularised(m: Tensor) -> Tensor:
    """``M_reg = M + eps * D^2`` with ``D^2_ii = M_ii`` (``tr(M)/K`` for a zero row, 1 if M = 0):
    the matrix whose equation :func:`solve_nash` solves. For tests and diagnostics."""
    d2 = _jacobi(m) ** 2
    return m + _ridge(m.dtype) * torch.diag(d2)


def _jacobi(m: Tensor) -> Tensor:
    diag = torch.diagonal(m)
    return torch.sqrt(torch.where(diag > 0, diag, gram_scale(m)))


def solve_nash(m: Tensor, iters: int = NEWTON_ITERS) -> tuple[Tensor, Tensor, Tensor]:
    """Solve ``M_reg a = 1/a`` (elementwise, a > 0) with ``M_reg = M + eps * D^2`` (see
    :func:`nash_regularised`) by safeguarded Newton on the convex function
    ``f(c) = 1/2 c^T C c - sum log c`` of the Jacobi-scaled problem: the equation is invariant
    under diagonal scaling, so with ``C = D^-1 M D^-1 + eps I`` (diagonal 1 + eps, or eps for a
    zero row) and ``c = D a`` it reads ``C c = 1/c``, whose numbers are O(1) whatever the
    gradient norms are.

    Start: ``c0 = t u`` with ``u_i = C_ii^-1/2`` (the exact solution for orthogonal gradients)
    and t minimising f along that ray. Each iteration takes the full Newton step
    ``-(C + diag(1/c^2))^-1 (C c - 1/c)`` when it stays positive and decreases f, otherwise the
    damped step ``1/(1 + lambda)`` of it (lambda = Newton decrement), which for this
    self-concordant f always stays positive and decreases f (Nesterov & Nemirovski); once the
    residual is below 1/100 of the tolerance the iterate is frozen. Returns (a, ok, residual):
    a in M's dtype, residual = max_i |a_i (M_reg a)_i - 1| = max_i |c_i (C c)_i - 1|, ok a 0-dim
    bool (residual <= tolerance, a finite and positive).
    """
    k = m.shape[0]
    dtype, device = m.dtype, m.device
    tol = NASH_TOL if dtype == torch.float64 else NASH_TOL_F32
    d = _jacobi(m)
    cm = m / (d[:, None] * d[None, :]) + _ridge(dtype) * torch.eye(k, dtype=dtype, device=device)

    def f(c: Tensor) -> Tensor:
        val = 0.5 * (c * (cm @ c)).sum() - torch.log(torch.clamp(c, min=torch.finfo(dtype).tiny)).sum()
        return torch.where((c > 0).all(), val, torch.full_like(val, float("inf")))

    u = torch.rsqrt(torch.diagonal(cm))
    c = u * torch.sqrt(k / (u @ cm @ u))
    for _ in range(iters):
        cc = cm @ c
        done = (c * cc - 1.0).abs().max() <= 0.01 * tol
        if frozen_on_cpu(done):
            break
        r = cc - 1.0 / c
        step, _ = torch.linalg.solve_ex(cm + torch.diag(1.0 / c**2), -r)  # no singularity check: no sync
        decrement = torch.sqrt(torch.clamp(-(r * step).sum(), min=0.0))
        full, damped = c + step, c + step / (1.0 + decrement)
        f_full = f(full)
        c_new = torch.where((f_full < f(c)) & torch.isfinite(f_full), full, damped)
        take = ~done & torch.isfinite(c_new).all() & (c_new > 0).all()
        c = torch.where(take, c_new, c)
    residual = (c * (cm @ c) - 1.0).abs().max()
    ok = (residual <= tol) & torch.isfinite(c).all() & (c > 0).all()
    return c / d, ok, residual


@register
class NashMTL(Balancer):
    """Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task
    Learning as a Bargaining Game", ICML 2022).

    Equation: alpha > 0 with ``(G G^T) alpha = 1/alpha`` elementwise (the Nash bargaining
    solution; the minimiser of ``1/2 a^T G G^T a - sum log a_i``); direction ``d = G^T alpha``,
    multiplied by ``min(1, max_norm / |d|)`` when ``max_norm > 0``. The returned weights include
    that factor, so ``direction == grads.T @ weights`` always holds.

    Hyperparameters: ``max_norm=1.0`` (0 disables the clipping), ``update_weights_every=1``
    (alpha is recomputed on calls 0, n, 2n, ... and the last alpha is reused with the new
    gradients in between, as in the official code). These are the official code's defaults. The
    paper reports MT10 (with the CAGrad mtrl code base), but the official repository has no MT10
    configuration and its MT10 values could not be verified here, so mtrl keeps the defaults; the
    paper studies recomputing alpha less often (update_weights_every > 1) to trade accuracy for
    speed.

    Solver: safeguarded Newton on the K-dimensional problem (:func:`solve_nash`) to a relative
    residual ``max_i |alpha_i (M_reg alpha)_i - 1| <= 1e-6``, fixed 30 iterations, no host sync.

    Singular Gram matrices. Duplicate rows make G G^T singular but the solution still exists
    (the duplicates share their weight equally). When 0 lies in the convex hull of the task
    gradients (a zero row, two exactly opposite rows, more tasks than independent directions),
    the objective is unbounded below and no solution exists: the weights of the tasks that
    cancel grow without bound. mtrl therefore solves the ridge-regularised equation
    ``(G G^T + eps * D^2) alpha = 1/alpha`` with ``D^2 = diag(|g_1|^2, ..., |g_K|^2)`` (a zero row
    uses the mean squared norm tr(G G^T)/K instead, an all-zero G uses 1) and eps = 1e-8 (1e-5 where
    the solver must run in float32, i.e. on MPS). The ridge is relative to each task's own
    squared norm, so it is invariant to rescaling any task's loss (as Nash-MTL itself is) and
    makes the problem strongly convex; in the Jacobi-scaled variables ``c_i = |g_i| alpha_i`` it
    bounds ``|c|^2 <= K / eps``. On a well-posed problem it changes the solution only by a
    relative residual ``eps * c_i^2`` in the unregularised equation (<= 1e-6 while every
    ``c_i <= 10``, i.e. unless the problem is close to the unbounded case; c_i = 1 for orthogonal
    gradients). In the unbounded cases the cancelling tasks get large but finite weights
    (about 1e4 / |g_i|) whose gradients cancel in d, and the clipping to max_norm bounds the step.

    Failure and fallback: when the Newton residual is above 1e-6 or the result is not finite,
    ``solver_failures`` is incremented and alpha falls back to the last alpha that converged;
    before any converged solve, to equal weights scaled to minimise the (regularised) Nash
    objective along the ray, ``alpha = t 1`` with ``t = sqrt(K / (1^T M_reg 1))``.

    Differences from the official code (AvivNavon/nash-mtl, methods/weight_methods.py): it
    approximates the solution with at most 20 convex-concave-procedure steps solved by cvxpy/ECOS,
    stopping at an absolute residual 1e-3 of a Gram matrix normalised by its Frobenius norm, so the
    bargaining equation is generally left unsolved; when cvxpy lacks ECOS (recent cvxpy releases
    no longer install it) every solve raises, the exception is swallowed and the previous alpha
    (initially all ones, i.e. equal weights) is used silently. mtrl solves the equation itself to
    1e-6 on the device and counts failures. The clipping is the official one (clip_grad_norm_ of
    the shared parameters' gradient, which is d).
    """

    name = "nash_mtl"

    def __init__(self, num_tasks: int, max_norm: float = 1.0, update_weights_every: int = 1, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if max_norm < 0:
            raise ValueError(f"max_norm must be >= 0 (0 disables clipping), got {max_norm}")
        if int(update_weights_every) != update_weights_every or update_weights_every < 1:
            raise ValueError(f"update_weights_every must be an integer >= 1, got {update_weights_every}")
        self.max_norm = float(max_norm)
        self.update_weights_every = int(update_weights_every)
        self.step = 0  # calls so far (host-side counter, no tensor read)
        self.alpha: Tensor | None = None  # last alpha used, solver dtype
        self.alpha_converged: Tensor | None = None  # 0-dim bool: some solve has converged so far
        self.last_residual: Tensor | None = None  # relative residual of the last solve (diagnostic)

    def _balance(self, grads: Tensor, losses: Tensor) -> BalanceResult:
        k = self.num_tasks
        if self.alpha is None or self.step % self.update_weights_every == 0:
            m = gram(grads)
            alpha, ok, residual = solve_nash(m)
            self._count_failure(~ok)
            ones = torch.ones(k, dtype=m.dtype, device=m.device)
            equal = ones * torch.sqrt(k / (ones @ nash_regularised(m) @ ones))
            if self.alpha is None:
                prev, prev_ok = equal, torch.zeros((), dtype=torch.bool, device=m.device)
            else:
                prev = self.alpha.to(m.device)
                prev_ok = self.alpha_converged.to(m.device)
            fallback = torch.where(prev_ok, prev, equal)
            self.alpha = torch.where(ok, alpha, fallback)
            self.alpha_converged = prev_ok | ok
            self.last_residual = residual
        self.step += 1
        weights = self.alpha.to(device=grads.device, dtype=grads.dtype)
        direction = weights @ grads
        if self.max_norm > 0:
            norm = torch.linalg.vector_norm(direction)
            factor = torch.clamp(self.max_norm / torch.clamp(norm, min=self.max_norm), max=1.0)
            direction = direction * factor
            weights = weights * factor
        return BalanceResult(direction=direction, weights=weights)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["step"] = self.step
        state["alpha"] = clone_or_none(self.alpha)
        state["alpha_converged"] = clone_or_none(self.alpha_converged)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
        self.alpha = clone_or_none(state["alpha"])
        self.alpha_converged = clone_or_none(state["alpha_converged"])
