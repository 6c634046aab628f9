"""Device-side solvers on the probability simplex, shared by the gradient balancers.

Everything here works on the K x K Gram matrix ``M = G G^T`` of the task gradients (K is the
number of tasks, 2..50), so the cost of a solve does not depend on the number of parameters P.
The solvers run a *fixed* number of iterations with ``torch.where`` safeguards: no ``.item()``,
no Python branch on a tensor value (except :func:`frozen_on_cpu`, on the CPU only), no
data-dependent shapes, and only the ``*_ex`` variants of the linear-algebra routines (the plain ones check for singular input and so synchronise with
the host on CUDA). Each solver returns, next to its result, a 0-dim bool ``ok`` that says whether
it met its optimality tolerance; the balancers count ``~ok`` as a solver failure and use their
stated fallback.

Solvers compute in float64 (float32 on devices without float64, i.e. Apple MPS), whatever the
dtype of the gradients, because the K x K problems are tiny and their conditioning is not.

* :func:`project_simplex` -- Euclidean projection onto {w >= 0, sum w = 1} (sort-based).
* :func:`min_norm_weights` -- MGDA: argmin over the simplex of |G^T w|^2 = w^T M w
  (closed form for K = 2, primal-dual interior point otherwise).
* :func:`conflict_averse_weights` -- CAGrad / IMGrad: argmin over the simplex of
  ``alpha * w.b + beta * sqrt(w^T M w)`` (primal-dual interior point on the lifted, smooth,
  jointly convex problem in (w, tau) with ``sqrt(q) = min_tau q/(2 tau) + tau/2``).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

# Primal-dual interior point: iteration budget and tolerances (normalised problems, see below).
IPM_ITERS = 30  # measured: 10-20 iterations reach IPM_TOL on non-degenerate random inputs
IPM_TOL = 1e-8  # on the relative dual residual and duality gap of the normalised problem
IPM_TOL_F32 = 1e-5  # the same, where the solver has to run in float32 (MPS)
FREEZE = 1e-3  # iterates are frozen once the KKT conditions hold to FREEZE * tolerance


_early_exit = True


def frozen_on_cpu(done: Tensor) -> bool:
    """Whether a solver may leave its loop: its iterate is frozen (``done``), so every further
    iteration would leave it unchanged and the result is the same to the bit. Only on the CPU,
    where reading a flag costs nothing; on an accelerator the loop runs its fixed count and
    never waits for the device."""
    return _early_exit and done.device.type == "cpu" and bool(done)


@contextlib.contextmanager
def fixed_iterations():
    """Inside, the solvers run their full iteration count on the CPU too, as on an accelerator:
    for counting the operations a GPU would launch, and for checking that leaving early changes
    nothing."""
    global _early_exit
    previous, _early_exit = _early_exit, False
    try:
        yield
    finally:
        _early_exit = previous


def solver_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """float64 for the K x K solves, except on devices that have no float64 (MPS)."""
    if device.type == "mps":
        return torch.float32
    return torch.float64


def gram(grads: Tensor) -> Tensor:
    """``G G^T`` (one [K, P] x [P, K] product), returned in the solver dtype.

    Computed in the gradients' dtype when that is float32 or float64 (no [K, P] copy), in float32
    for half-precision gradients (whose squared norms can overflow float16). Note that a float32
    product runs in TF32 if ``torch.backends.cuda.matmul.allow_tf32`` is enabled, which costs the
    Gram matrix about three decimal digits.
    """
    if grads.dtype not in (torch.float32, torch.float64):
        grads = grads.float()
    m = grads @ grads.T
    m = 0.5 * (m + m.T)  # exact symmetry, whatever the matmul kernel did
    return m.to(solver_dtype(grads.dtype, grads.device))


def gram_scale(m: Tensor) -> Tensor:
    """tr(M)/K (the mean squared task-gradient norm), replaced by 1 where it is 0 or not finite,
    so that ``M / gram_scale(M)`` is always a valid, scale-free matrix."""
    s = torch.diagonal(m).mean()
    return torch.where(torch.isfinite(s) & (s > 0), s, torch.ones_like(s))


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of ``v[..., K]`` onto the probability simplex (along the last dim).

    Sort-based (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with u = sort(v, descending),
    rho = max{j : u_j - (sum_{i<=j} u_i - 1)/j > 0}, theta = (sum_{i<=rho} u_i - 1)/rho,
    w = max(v - theta, 0). rho is found as a count (the condition holds on a prefix), so the
    shapes never depend on the data.
    """
    k = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    ks = torch.arange(1, k + 1, dtype=v.dtype, device=v.device)
    cond = (u - css / ks) > 0
    rho = cond.sum(dim=-1, keepdim=True).clamp(min=1)  # >= 1 always holds mathematically
    theta = torch.gather(css, -1, rho - 1) / rho.to(v.dtype)
    return torch.clamp(v - theta, min=0.0)


def _pdipm(
    grad: Callable[[Tensor], Tensor],
    hess: Callable[[Tensor], Tensor],
    x0: Tensor,
    a: Tensor,
    iters: int,
    tol: float,
) -> tuple[Tensor, Tensor]:
    """Primal-dual interior-point method for  min f(x)  s.t.  x >= 0,  a.x = 1,  f convex.

    Boyd & Vandenberghe, *Convex Optimization*, sec. 11.7: Newton steps on the perturbed KKT
    system ``grad f(x) - lam + a nu = 0,  lam_i x_i = 1/t,  a.x = 1`` with ``t = 10 n / (x.lam)``,
    and the fraction-to-boundary step ``min(1, 0.99 * max{s : x + s dx >= 0, lam + s dlam >= 0})``.
    There is no merit line search: on 300 random CAGrad problems (K = 2..50, norm spreads up to
    1e4, strongly conflicting gradients) the textbook's residual-norm backtracking left a third of
    the runs short of the tolerance after 40 iterations, against 1% (all with zero in the convex
    hull) without it; the final KKT check below is the safeguard. Once the KKT conditions hold
    to FREEZE * ``tol`` the iterate is frozen, and a step that would produce a non-finite value
    is not taken.

    ``grad(x)`` and ``hess(x)`` give the gradient [n] and Hessian [n, n] of f; ``x0`` must be
    strictly positive with ``a.x0 = 1``. Returns (x, ok): ok says that the dual residual
    |grad f - lam + a nu|_inf and the duality gap x.lam are <= tol * (1 + |grad f|_inf), the
    equality holds to tol, and x is finite and positive.
    """
    n = x0.shape[-1]
    x = x0
    lam = torch.ones_like(x0)
    nu = torch.zeros((), dtype=x0.dtype, device=x0.device)
    eye = torch.eye(n, dtype=x0.dtype, device=x0.device)
    inf = torch.full((), float("inf"), dtype=x0.dtype, device=x0.device)

    def kkt(x: Tensor, lam: Tensor, nu: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        g = grad(x)
        r_dual = g - lam + a * nu
        r_pri = (x * a).sum() - 1.0
        gap = (x * lam).sum()
        scale = 1.0 + g.abs().max()
        return g, r_dual, r_pri, gap / scale, r_dual.abs().max() / scale

    for _ in range(iters):
        g, r_dual, r_pri, rel_gap, rel_dual = kkt(x, lam, nu)
        done = (rel_dual <= FREEZE * tol) & (rel_gap <= FREEZE * tol) & (r_pri.abs() <= FREEZE * tol)
        if frozen_on_cpu(done):
            break
        inv_t = (x * lam).sum() / (10.0 * n)
        r_cent = lam * x - inv_t
        # eliminate dlam = (-r_cent - lam dx) / x:
        #   (H + diag(lam / x)) dx + a dnu = -r_dual - r_cent / x,   a.dx = -r_pri
        hh = hess(x) + eye * (lam / x)
        rhs = torch.stack([-r_dual - r_cent / x, a], dim=-1)
        y, _ = torch.linalg.solve_ex(hh, rhs)  # no singularity check, hence no host sync
        y1, y2 = y[:, 0], y[:, 1]
        dnu = ((a * y1).sum() + r_pri) / (a * y2).sum()
        dx = y1 - dnu * y2
        dlam = (-r_cent - lam * dx) / x
        to_boundary = torch.minimum(
            torch.where(dx < 0, -x / dx, inf).min(), torch.where(dlam < 0, -lam / dlam, inf).min()
        )
        s = torch.clamp(0.99 * to_boundary, max=1.0)
        x_new, lam_new, nu_new = x + s * dx, lam + s * dlam, nu + s * dnu
        take = (
            ~done
            & torch.isfinite(x_new).all()
            & torch.isfinite(lam_new).all()
            & torch.isfinite(nu_new)
            & (x_new > 0).all()
            & (lam_new > 0).all()
        )
        x = torch.where(take, x_new, x)
        lam = torch.where(take, lam_new, lam)
        nu = torch.where(take, nu_new, nu)

    _, _, r_pri, rel_gap, rel_dual = kkt(x, lam, nu)
    ok = (
        (rel_dual <= tol)
        & (rel_gap <= tol)
        & (r_pri.abs() <= tol)
        & torch.isfinite(x).all()
        & (x > 0).all()
    )
    return x, ok


def _tol(dtype: torch.dtype) -> float:
    return IPM_TOL if dtype == torch.float64 else IPM_TOL_F32


def min_norm_weights(m: Tensor, iters: int = IPM_ITERS) -> tuple[Tensor, Tensor]:
    """MGDA: ``w* = argmin_{w in simplex} w^T M w`` (the min-norm point of the convex hull of
    the task gradients is ``G^T w*``).

    K = 1: w = [1]. K = 2: closed form ``w_1 = clip((M22 - M12) / (M11 + M22 - 2 M12), 0, 1)``,
    1/2 when the two gradients are equal. K >= 3: primal-dual interior point on M / (tr(M)/K),
    fixed ``iters``. Returns (w [K] in M's dtype, ok 0-dim bool); w is exactly on the simplex
    (clamped at 0 and renormalised).
    """
    k = m.shape[0]
    dtype, device = m.dtype, m.device
    if k == 1:
        return torch.ones(1, dtype=dtype, device=device), torch.ones((), dtype=torch.bool, device=device)
    mh = m / gram_scale(m)
    if k == 2:
        den = mh[0, 0] + mh[1, 1] - 2.0 * mh[0, 1]  # |g1 - g2|^2 / s >= 0
        num = mh[1, 1] - mh[0, 1]
        distinct = den > 1e-12
        w1 = torch.where(distinct, num / torch.where(distinct, den, torch.ones_like(den)), torch.full_like(den, 0.5))
        w1 = w1.clamp(0.0, 1.0)
        w = torch.stack([w1, 1.0 - w1])
        return w, torch.isfinite(w).all()
    a = torch.ones(k, dtype=dtype, device=device)
    x, ok = _pdipm(lambda w: w @ mh, lambda w: mh, a / k, a, iters, _tol(dtype))
    w = x.clamp(min=0.0)
    w = w / w.sum()
    return w, ok & torch.isfinite(w).all()


def conflict_averse_weights(
    m: Tensor, b: Tensor, alpha: Tensor | float, beta: Tensor | float, iters: int = IPM_ITERS
) -> tuple[Tensor, Tensor]:
    """``w* = argmin_{w in simplex} alpha * w.b + beta * sqrt(w^T M w)`` with alpha, beta >= 0.

    CAGrad: b = G g0, alpha = 1, beta = c |g0|. IMGrad: alpha = 1.5 - cos, beta = cos c |g0|.
    The objective is convex but not differentiable where G^T w = 0, so it is solved in the lifted
    form  min_{w in simplex, tau > 0} alpha w.b + beta (w^T M w / (2 tau) + tau / 2)  (jointly
    convex: a quadratic-over-linear term; minimising over tau gives back beta sqrt(w^T M w), with
    tau* = |G^T w*|), by the primal-dual interior point method, after scaling M and b by tr(M)/K.
    A floor of 1e-12 on the scaled beta keeps tau bounded when beta = 0 (a pure linear program).
    Returns (w [K] in M's dtype, ok 0-dim bool).
    """
    k = m.shape[0]
    dtype, device = m.dtype, m.device
    s = gram_scale(m)
    mh = m / s
    bh = b / s
    if isinstance(alpha, Tensor):
        alpha = alpha.to(dtype)
    if not isinstance(beta, Tensor):  # built on the device: no host-to-device copy
        beta = torch.full((), float(beta), dtype=dtype, device=device)
    # beta multiplies a norm (units sqrt(s)); the scaled problem is the original one divided by s
    beta = torch.clamp(beta.to(dtype) / torch.sqrt(s), min=1e-12)

    def grad(x: Tensor) -> Tensor:
        w, tau = x[..., :k], x[..., k:]
        mw = w @ mh
        q = (mw * w).sum(-1, keepdim=True)
        gw = alpha * bh + beta * mw / tau
        gt = beta * (0.5 - q / (2.0 * tau**2))
        return torch.cat([gw, gt], dim=-1)

    def hess(x: Tensor) -> Tensor:
        w, tau = x[:k], x[k]
        mw = mh @ w
        q = w @ mw
        h = torch.empty(k + 1, k + 1, dtype=dtype, device=device)
        h[:k, :k] = beta * mh / tau
        h[:k, k] = -beta * mw / tau**2
        h[k, :k] = -beta * mw / tau**2
        h[k, k] = beta * q / tau**3
        return h

    a = torch.cat([torch.ones(k, dtype=dtype, device=device), torch.zeros(1, dtype=dtype, device=device)])
    w0 = torch.full((k,), 1.0 / k, dtype=dtype, device=device)
    tau0 = torch.sqrt(w0 @ mh @ w0) + 1.0
    x0 = torch.cat([w0, tau0.reshape(1)])
    x, ok = _pdipm(grad, hess, x0, a, iters, _tol(dtype))
    w = x[:k].clamp(min=0.0)
    w = w / w.sum()
    return w, ok & torch.isfinite(w).all()


def conflict_averse_direction(grads: Tensor, w: Tensor, c: float, scale: Tensor) -> tuple[Tensor, Tensor]:
    """CAGrad's update from the inner solution w*: ``d = (g0 + c |g0| / |g_w| g_w) / (1 + c^2)``
    with ``g_w = G^T w*``; returns (direction [P], weights [K]) in the gradients' dtype, with
    ``weights = (1/K + c |g0| / |g_w| w*) / (1 + c^2)`` so that ``d = G^T weights``.

    |g_w| is taken from the vector g_w itself (accurate also when it is small, unlike
    sqrt(w^T M w)), and floored at ``sqrt(eps_dtype) * sqrt(scale)`` (scale = tr(M)/K): when the
    inner optimum is (numerically) at g_w = 0 -- zero in the convex hull of the gradients, where
    CAGrad's direction is not defined -- the correction term ``c |g0| g_w / |g_w|`` fades out
    continuously (its length is ``c |g0| min(1, |g_w| / floor)``) instead of amplifying rounding
    noise into a unit vector. d is computed from g0 and g_w, not as G^T weights, so large
    weights (small |g_w|) cannot cancel catastrophically in low precision.
    """
    k = grads.shape[0]
    dtype = grads.dtype
    wd = w.to(dtype)
    g0 = grads.mean(dim=0)
    gw = wd @ grads
    floor = (torch.finfo(dtype).eps ** 0.5) * torch.sqrt(scale).to(dtype)
    coef = c * torch.linalg.vector_norm(g0) / torch.maximum(torch.linalg.vector_norm(gw), floor)
    direction = (g0 + coef * gw) / (1.0 + c**2)
    weights = (1.0 / k + coef * wd) / (1.0 + c**2)
    return direction, weights
