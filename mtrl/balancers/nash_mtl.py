"""Nash-MTL: the Nash bargaining solution of the tasks' update directions.

    alpha > 0  with  (G G^T) alpha = 1 / alpha  (elementwise),
    i.e. alpha = argmin_{a > 0}  1/2 a^T (G G^T) a - sum_i log a_i;
    d = G^T alpha, scaled down to norm max_norm when it is longer (max_norm = 0 disables).

Every task gets the same "bargaining utility": alpha_i * (g_i . d) = 1, so d has a positive
inner product with every task gradient and |d|^2 = alpha^T G G^T alpha = K.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import BalanceResult
from mtrl.balancers.host_solver import HostSolverBalancer, clipped_direction
from mtrl.balancers.simplex_solvers import gram_scale

NEWTON_MAX_ITERS = 50  # a cap, never the stopping rule: measured <= 20, zero and opposite rows included
NASH_TOL = 1e-6  # max_i |a_i (M_reg a)_i - 1|: the relative residual of M_reg a = 1/a
RIDGE = 1e-8  # relative ridge eps of M_reg = M + eps * diag(M) (see NashMTL's docstring)


def nash_regularised(m: np.ndarray) -> np.ndarray:
    """``M_reg = M + eps * D^2`` with ``D^2_ii = M_ii`` (``tr(M)/K`` for a zero row, 1 if M = 0):
    the matrix whose equation :func:`solve_nash` solves."""
    return m + RIDGE * np.diag(_jacobi(m) ** 2)


def _jacobi(m: np.ndarray) -> np.ndarray:
    diag = np.diagonal(m)
    return np.sqrt(np.where(diag > 0, diag, gram_scale(m)))


def solve_nash(m: np.ndarray, max_iters: int = NEWTON_MAX_ITERS) -> tuple[np.ndarray, bool, float]:
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
    self-concordant f always stays positive and decreases f (Nesterov & Nemirovski). It stops
    once the residual is below 1/100 of the tolerance. Returns (a, ok, residual): a float64,
    residual = max_i |a_i (M_reg a)_i - 1| = max_i |c_i (C c)_i - 1|, ok = residual <= tolerance
    and a finite and positive.
    """
    k = m.shape[0]
    d = _jacobi(m)
    cm = m / np.outer(d, d) + RIDGE * np.eye(k)

    def f(c: np.ndarray) -> float:
        return 0.5 * float(c @ cm @ c) - float(np.log(c).sum()) if (c > 0).all() else np.inf

    u = 1.0 / np.sqrt(np.diagonal(cm))
    c = u * np.sqrt(k / float(u @ cm @ u))
    for _ in range(max_iters):
        cc = cm @ c
        if np.abs(c * cc - 1.0).max() <= 0.01 * NASH_TOL:
            break
        r = cc - 1.0 / c
        try:
            step = np.linalg.solve(cm + np.diag(1.0 / c**2), -r)
        except np.linalg.LinAlgError:
            break
        full = c + step
        c_new = full if f(full) < f(c) else c + step / (1.0 + np.sqrt(max(-float(r @ step), 0.0)))
        if not (np.isfinite(c_new).all() and (c_new > 0).all()):
            break
        c = c_new
    residual = float(np.abs(c * (cm @ c) - 1.0).max())
    ok = residual <= NASH_TOL and bool(np.isfinite(c).all() and (c > 0).all())
    return c / d, ok, residual


@register
class NashMTL(HostSolverBalancer):
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
    residual ``max_i |alpha_i (M_reg alpha)_i - 1| <= 1e-6``, on the float64 Gram matrix on the
    host (one host synchronisation per call that solves: the copy of the Gram matrix).

    Singular Gram matrices. Duplicate rows make G G^T singular but the solution still exists
    (the duplicates share their weight equally). When 0 lies in the convex hull of the task
    gradients (a zero row, two exactly opposite rows, more tasks than independent directions),
    the objective is unbounded below and no solution exists: the weights of the tasks that
    cancel grow without bound. mtrl therefore solves the ridge-regularised equation
    ``(G G^T + eps * D^2) alpha = 1/alpha`` with ``D^2 = diag(|g_1|^2, ..., |g_K|^2)`` (a zero row
    uses the mean squared norm tr(G G^T)/K instead, an all-zero G uses 1) and eps = 1e-8. The Gram
    matrix is formed in float64 also from float32 gradients, so the ridge stays far above its
    rounding (a float32 Gram matrix would need a ridge above 1e-7). The ridge is relative to each task's own
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
    1e-6 and counts failures. The clipping is the official one (clip_grad_norm_ of
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
        self.alpha: np.ndarray | None = None  # last alpha used (float64, host)
        self.alpha_converged = False  # some solve has converged so far
        self.last_residual: float | None = None  # relative residual of the last solve (diagnostic)

    def reusable_weights(self) -> np.ndarray | None:
        return self.alpha if self.alpha is not None and self.step % self.update_weights_every else None

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        alpha, ok, self.last_residual = solve_nash(m)
        self.alpha_converged = self.alpha_converged or ok
        return alpha, ok

    def fallback(self, m: np.ndarray) -> np.ndarray:
        if self.alpha is not None and self.alpha_converged:
            return self.alpha  # the last alpha that converged
        ones = np.ones(self.num_tasks)
        return ones * np.sqrt(self.num_tasks / float(ones @ nash_regularised(m) @ ones))

    def finish(self, g64: Tensor, m: np.ndarray | None, weights: np.ndarray, dtype: torch.dtype) -> BalanceResult:
        self.alpha = weights
        self.step += 1
        direction, weights_t = clipped_direction(g64, m, weights, self.max_norm, dtype)
        return BalanceResult(direction=direction, weights=weights_t)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["step"] = self.step
        state["alpha"] = None if self.alpha is None else self.alpha.copy()
        state["alpha_converged"] = self.alpha_converged
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
        self.alpha = None if state["alpha"] is None else np.array(state["alpha"], dtype=np.float64)
        self.alpha_converged = bool(state["alpha_converged"])
