"""The host-side solvers of the K x K problems over the simplex (MGDA, CAGrad, IMGrad).

They take the float64 Gram matrix ``M = G G^T`` of the task gradients as a numpy array (brought
to the host by :class:`mtrl.balancers.host_solver.HostSolverBalancer`, which says why the solve
runs there) and return, next to the weights, a Python bool ``ok``: the optimality conditions
hold to the tolerance. The balancers count ``not ok`` as a solver failure and use their stated
fallback.

* :func:`min_norm_weights` -- MGDA: argmin over the simplex of w^T M w, by Wolfe's active-set
  min-norm-point algorithm (finite, exact to rounding, optionally warm-started from the previous
  call's support), certified by its KKT conditions, with the interior point as the fallback.
* :func:`conflict_averse_weights` -- CAGrad / IMGrad: argmin over the simplex of
  ``alpha * w.b + beta * sqrt(w^T M w)``, by the same active set with a closed-form face
  minimiser, certified by its KKT conditions, with the interior point (on a lifted form) as
  the fallback.
* :func:`gram_scale`, :func:`floored_norm`, :func:`kkt_factor` -- the scale-free helpers the
  other host solves (Nash-MTL, FairGrad, IMGrad-Nash) share.

docs/solvers.md has the solvers' measured accuracy and cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.linalg.lapack import dposv

IPM_MAX_ITERS = 100  # a cap, never the stopping rule: typical solves stop after 8-25 iterations
IPM_STOP = 1e-11  # the iteration stops once the relative dual residual, gap and equality residual are below
IPM_TOL = 1e-8  # ... and the solve counts as converged (ok) when they are below this
IPM_GAP = 1e-8  # ... and its Frank-Wolfe gap is below this, relative to the weighed tasks' scale


def gram_scale(m: np.ndarray) -> float:
    """tr(M)/K (the mean squared task-gradient norm), 1 where it is 0 or not finite, so that
    ``M / gram_scale(M)`` is always a valid, scale-free matrix."""
    s = float(np.trace(m)) / m.shape[0]
    return s if np.isfinite(s) and s > 0 else 1.0


def interior_point(
    derivatives: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x0: np.ndarray,
    a: np.ndarray,
    max_iters: int = IPM_MAX_ITERS,
) -> tuple[np.ndarray, bool]:
    """Primal-dual interior-point method for  min f(x)  s.t.  x >= 0,  a.x = 1,  f convex.

    Boyd & Vandenberghe, *Convex Optimization*, sec. 11.7: Newton steps on the perturbed KKT
    system ``grad f(x) - lam + a nu = 0,  lam_i x_i = sigma mu,  a.x = 1`` (mu = x.lam / n), with
    Mehrotra's predictor-corrector choice of sigma and the fraction-to-boundary step
    ``0.99 * max{s <= 1 : x + s dx >= 0, lam + s dlam >= 0}``. (The textbook's fixed
    ``sigma = 0.1`` needed 10-20 iterations on most problems but 200-300 on some K = 50 low-rank
    ones; predictor-corrector takes 8-30 on all of those measured.)
    It stops as soon as the dual residual |grad f - lam + a nu|_inf and the duality gap x.lam
    are <= IPM_STOP * (1 + |grad f|_inf) and |a.x - 1| <= IPM_STOP (the last interior-point
    iterations converge fast, so the extra digits cost one or two iterations); ``max_iters`` is
    a cap that a convergent solve does not reach (low-rank Gram matrices, whose optimum has many
    coordinates at zero, take the longest). Returns (x, ok): ok says the same three quantities
    are below IPM_TOL and x is finite and positive.

    ``derivatives(x, hess_out)`` returns grad f(x) and writes the Hessian into ``hess_out``
    ([n, n]): one call for both, which share most of their work.
    """
    n = x0.shape[0]
    # (x, lam) in one array z, so that the step to the boundary, the update and the positivity
    # checks are one numpy call each instead of two: at K = 10 an iteration is a few dozen numpy
    # calls of ~1 us, which is its whole cost, so calls and allocations count
    z = np.empty(2 * n)
    z[:n], z[n:] = x0, 1.0
    x, lam, nu = z[:n], z[n:], 0.0
    dz = np.empty(2 * n)
    kkt_matrix = np.zeros((n + 1, n + 1))
    kkt_matrix[:n, n] = kkt_matrix[n, :n] = a
    h_diagonal = kkt_matrix.reshape(-1)[: n * (n + 2) : n + 2]  # a writable view of the H block's diagonal
    d = np.ones(n + 1)
    rhs = np.empty(n + 1)
    ratio = np.empty(2 * n)
    hess = kkt_matrix[:n, :n]

    def kkt() -> tuple[np.ndarray, float, float, float]:
        g = derivatives(x, hess)
        r_dual = g - lam + a * nu
        r_pri = float(a @ x) - 1.0
        scale = 1.0 + float(np.abs(g).max())
        return r_dual, r_pri, max(float(np.abs(r_dual).max()), float(x @ lam)) / scale, abs(r_pri)

    def converged(tol: float) -> bool:
        _, _, rel, pri = kkt()
        return rel <= tol and pri <= tol and bool(np.isfinite(x).all() and (x > 0).all())

    def boundary_step() -> float:
        """The largest s <= 1 with z + s dz >= 0."""
        ratio.fill(np.inf)
        np.divide(z, -dz, out=ratio, where=dz < 0)
        return min(1.0, float(ratio.min()))

    def newton(r_dual: np.ndarray, inverse: np.ndarray, r_cent: np.ndarray) -> float:
        """(dx, dlam) into dz for the factored system ``inverse``; returns dnu."""
        rhs[:n] = -r_dual - r_cent / x
        y = inverse @ rhs
        dz[:n] = y[:n]
        dz[n:] = (-r_cent - lam * y[:n]) / x
        return float(y[n])

    for _ in range(max_iters):
        r_dual, r_pri, rel, pri = kkt()
        if rel <= IPM_STOP and pri <= IPM_STOP:
            return x, True  # x > 0 and finite: every accepted step kept it so
        # Newton on the KKT system with the complementarity target lam_i x_i = sigma mu; after
        # eliminating dlam = (-r_cent - lam dx) / x it is the saddle-point system
        #   [[H + diag(lam / x), a], [a^T, 0]] [dx; dnu] = [-r_dual - r_cent / x; -r_pri],
        # solved whole: H alone is singular in the lifted CAGrad problem (its perspective term
        # is flat along (w, tau)), and lam_i / x_i grows without bound for coordinates going to
        # 0, hence the Jacobi scaling of the H block
        h_diagonal += lam / x  # the Hessian is in place, from kkt()
        try:
            with np.errstate(all="ignore"):  # a degenerate system shows as non-finite steps, refused below
                np.sqrt(h_diagonal, out=d[:n])
                np.divide(1.0, d[:n], out=d[:n])
                inverse = d[:, None] * np.linalg.inv(kkt_matrix * np.outer(d, d)) * d[None, :]
        except np.linalg.LinAlgError:
            break
        rhs[n] = -r_pri
        # Mehrotra's predictor-corrector: the affine step (target 0) predicts how far the
        # complementarity can fall, which sets the centring sigma = (mu_aff / mu)^3, and its
        # second-order term corrects the step
        lam_x = lam * x
        mu = float(lam_x.sum()) / n
        newton(r_dual, inverse, lam_x)
        z_aff = z + boundary_step() * dz
        sigma = (float(z_aff[:n] @ z_aff[n:]) / n / mu) ** 3
        r_cent = dz[:n] * dz[n:]
        r_cent += lam_x - sigma * mu
        dnu = newton(r_dual, inverse, r_cent)
        s = 0.99 * boundary_step()
        z_new = z + s * dz
        # positive, and x.lam finite: then every entry is finite (NaN fails "> 0")
        if not ((z_new > 0).all() and np.isfinite(z_new[:n] @ z_new[n:])):
            break
        z, nu = z_new, nu + s * dnu
        x, lam = z[:n], z[n:]
    return x, converged(IPM_TOL)


# The certificates' tolerances come from rounding-error bounds that hold on any IEEE machine,
# whatever the BLAS kernel, summation order or FMA use (Higham, "Accuracy and Stability of
# Numerical Algorithms", 2nd ed.: gamma_n = n u / (1 - n u) bounds an n-term inner product,
# sec. 3.1; a Cholesky solve of A x = b is exact for A + dA with |dA| <= gamma_{3n+1} |R^T| |R|,
# Thm. 10.4, and |R^T| |R| <= sqrt(a_ii a_jj) entrywise). For a candidate w on the simplex, with
# n_i = |g_i| and rho = sum_j w_j n_j (the weighted norm of the support, not its largest norm:
# with norms 1e5 apart, w_j ~ 1 / n_j^2 and rho stays near the small tasks' scale):
#   * the support's solve (Jacobi-scaled lifted Gram matrix, lifted_gram) leaves a residual
#     <= 2 (gamma_{3K+1} + 3u) (n_i rho + rho^2) in (M w)_i - w^T M w (the scaling and the lift
#     add 3 roundings per entry; the lifted diagonal is at most twice n_i^2);
#   * evaluating lam = M w - (w^T M w) 1 adds <= (gamma_K + gamma_2K + K u) (n_i rho + rho^2).
# Their sum is below (10 K + 10) u (n_i rho + rho^2); the certificate allows twice that. So a w
# the active set solved on the right support always passes, and a w that passes is the exact
# KKT point of a Gram matrix within a componentwise relative perturbation of that size of the
# computed one: exact to rounding in the backward sense.
UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2


def kkt_factor(k: int) -> float:
    """The tolerance factor of the certificates for K tasks: twice the rounding bound above."""
    return 20.0 * (k + 1) * UNIT_ROUNDOFF


# Lifted gradients count as linearly dependent (the g_i as affinely dependent) when one is within
# this squared sine of the span of the others (Jacobi-scaled: a scale-free angle): exact duplicates
# give ~1e-16, float32 rounding of points on a common plane ~1e-14.
AFFINE_TOL = 1e-10


def lifted_gram(mh: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Ahat, d)``: the lifted Gram matrix ``A = M_SS + c 1 1^T`` of the tasks S = idx (the Gram
    matrix of the points (sqrt(c), g_i), positive definite exactly when the g_i are affinely
    independent, which M_SS alone need not be: opposite or zero rows), Jacobi-scaled,
    ``Ahat = A / (d d^T)`` with ``d = sqrt(diag A)``. c is the smallest nonzero M_ii on S, so
    that d_i <= sqrt(2) |g_i|: the scaled matrix has a unit diagonal and entries of at most 1 in
    size whatever the spread of the norms (an unscaled lift with c = max M_ii made the small
    tasks' rows rounding noise of the large ones')."""
    a = mh[idx][:, idx]
    diag = np.diagonal(a)
    positive = diag[diag > 0]
    a += float(positive.min()) if positive.size else 1.0
    d = np.sqrt(np.diagonal(a))
    a /= d[:, None]
    a /= d[None, :]
    return a, d


def lifted_solve(mh: np.ndarray, idx: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """``A^{-1} rhs`` for the lifted Gram matrix A of the tasks idx (:func:`lifted_gram`), by a
    Cholesky solve of the scaled system (LAPACK dposv); None when A is not numerically positive
    definite (affinely dependent tasks) or the result is not finite."""
    a, d = lifted_gram(mh, idx)
    scaled = rhs / (d[:, None] if rhs.ndim == 2 else d)
    _, x, info = dposv(a, scaled, overwrite_a=True, overwrite_b=True)
    if info != 0:
        return None
    x /= d[:, None] if rhs.ndim == 2 else d
    return x if np.isfinite(x).all() else None


def affinely_independent(mh: np.ndarray, idx: np.ndarray) -> bool:
    """Whether the gradients of the tasks idx are affinely independent, to AFFINE_TOL: every
    Cholesky pivot of the scaled lifted Gram matrix (the squared sine of the angle between a
    lifted point and the span of the ones before it) is above AFFINE_TOL."""
    a, _ = lifted_gram(mh, idx)
    try:
        low = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return False
    return bool((np.diagonal(low) ** 2 > AFFINE_TOL).all())


def on_simplex(w: np.ndarray, support: np.ndarray) -> bool:
    """w is a finite point of the simplex (to the certificates' rounding) with some support."""
    return bool(
        support.any() and np.isfinite(w).all() and (w >= 0).all() and abs(w.sum() - 1.0) <= kkt_factor(w.shape[0])
    )


def _support_norm(norms: np.ndarray, w: np.ndarray) -> float:
    """rho = sum_i w_i |g_i|: the scale of the rounding in M w and w^T M w (see kkt_factor)."""
    return float(w @ norms)


def _gap_scale(mh: np.ndarray, w: np.ndarray) -> float:
    """rho of :func:`_support_norm` with a zero gradient counted at the smallest nonzero norm:
    the scale on which the interior point's answer is judged (weight on zero rows makes rho
    itself vanish while the other weights are still only as small as the iteration made them)."""
    norms = np.sqrt(np.maximum(np.diagonal(mh), 0.0))
    positive = norms[norms > 0]
    return _support_norm(np.where(norms > 0, norms, positive.min() if positive.size else 1.0), w)


def _move_to_boundary(w: np.ndarray, in_s: np.ndarray, s: np.ndarray, direction: np.ndarray) -> bool:
    """The minor cycles' step: w (support ``s``, mask ``in_s``) moves along ``direction`` (given
    on s, summing to 0) by the largest step that keeps it >= 0; the task that stops it leaves
    the support. False when nothing stops it or the support empties (rounding trouble)."""
    ws = w[s]
    down = np.flatnonzero(direction < 0)
    if down.size == 0:
        return False
    ratios = ws[down] / -direction[down]
    i = int(np.argmin(ratios))
    ws += ratios[i] * direction
    ws[down[i]] = 0.0
    ws[ws < 0] = 0.0
    w[s] = ws
    in_s[s] = ws > 0
    return bool(in_s.any())


def min_norm_kkt(mh: np.ndarray, w: np.ndarray) -> tuple[bool, np.ndarray]:
    """``(ok, face)`` for a candidate w of  min_{w in simplex} w^T M w.

    ok: the KKT conditions hold to rounding: w >= 0, sum w = 1, and with ``lam = M w - (w^T M w) 1``
    (the multipliers of w >= 0, halved), ``lam_i >= -tol_i`` for every i and ``|lam_i| <= tol_i``
    where w_i > 0, ``tol_i = kkt_factor(K) (|g_i| rho + rho^2)`` with |g_i| = sqrt(M_ii) and
    rho = sum_j w_j |g_j|: the rounding bound of the solve and of the evaluation of lam (see
    :func:`kkt_factor`), which follows the tasks at stake, not the largest task.
    face: the tasks with ``lam_i <= tol_i``: those whose gradient lies on the supporting
    hyperplane ``{g : g.x = |x|^2}`` at x = G^T w, the support and any others that touch it.
    Every optimal w lives on them (lam depends on the min-norm point alone, which is unique).
    """
    support = w > 0
    if not on_simplex(w, support):
        return False, support
    k, norms, mw = mh.shape[0], np.sqrt(np.diagonal(mh)), mh @ w
    lam = mw - float(w @ mw)
    rho = _support_norm(norms, w)
    tol = kkt_factor(k) * (norms * rho + rho * rho)
    face = lam <= tol
    return bool((lam >= -tol).all() and face[support].all()), face


def min_norm_active_set(mh: np.ndarray, start: np.ndarray | None = None) -> np.ndarray | None:
    """Wolfe's algorithm for the minimum-norm point of the convex hull of the task gradients
    (P. Wolfe, "Finding the nearest point in a polytope", Math. Programming 11, 1976), written
    on the Gram matrix: returns w with ``G^T w`` the min-norm point, or None when a linear solve
    breaks down. It does not certify its result (:func:`min_norm_kkt` does).

    It keeps a support S whose gradients are affinely independent and weights w > 0 on S.
    Minor cycle: the point of least norm of the affine hull of {g_i : i in S} has weights
    ``u = A^{-1} 1 / (1^T A^{-1} 1)`` with A the lifted Gram matrix of S (:func:`lifted_gram`;
    the KKT system ``M_SS u = mu 1, 1^T u = 1`` gives ``A u = (mu + c) 1``). If u > 0, w = u;
    otherwise w moves towards u until a weight reaches 0, that task leaves S, and the minor
    cycle repeats. Major cycle: with ``lam = M w - (w^T M w) 1``, stop when every
    ``lam_i >= -tol_i`` (the rounding tolerance of :func:`min_norm_kkt`); otherwise the most
    violating task enters S (it lies outside the affine hull of S, since every point of that
    hull has the same inner product w^T M w with G^T w), and |G^T w| strictly decreases. So
    the method ends after finitely many cycles, with w the affine min-norm weights of its final
    support, solved to rounding.

    ``start``: a bool mask of affinely independent tasks to start from (w uniform on them)
    instead of the shortest gradient. S is kept as a mask (sorted indices), so w depends only
    on the final support, not on the path to it. A cap of ``4 K + 10`` major cycles (cold starts
    on the test families took at most 11 at K = 10 and 58 at K = 50) and a check that |G^T w|
    decreases catch rounding-induced cycling.
    """
    k = mh.shape[0]
    norms = np.sqrt(np.diagonal(mh))
    factor = kkt_factor(k)
    ones = np.ones(k)
    in_s = np.zeros(k, dtype=bool)
    w = np.zeros(k)
    if start is not None:
        in_s[start] = True
        w[in_s] = 1.0 / in_s.sum()
    else:
        j = int(np.argmin(norms))  # the shortest gradient: the best single-task point
        in_s[j], w[j] = True, 1.0
    value = np.inf
    for _ in range(4 * k + 10):
        while True:  # minor cycle
            s = np.flatnonzero(in_s)
            u = lifted_solve(mh, s, ones[: s.size])
            if u is None:
                return None
            total = float(u.sum())
            if not (math.isfinite(total) and total != 0.0):
                return None
            u /= total
            if u.min() > 0:
                w[s] = u
                break
            if not _move_to_boundary(w, in_s, s, u - w[s]):
                return None
        mw = mh @ w
        new_value = float(w @ mw)
        if not new_value < value:  # no progress: rounding; let the certificate judge w
            return w
        value = new_value
        rho = _support_norm(norms, w)
        violation = mw + factor * rho * norms  # below value - factor rho^2: lam_i < -tol_i
        j = int(np.argmin(violation))
        if violation[j] >= value - factor * rho * rho or in_s[j]:
            return w
        in_s[j] = True  # enters with weight 0; the minor cycle gives it a positive one
    return w


def min_norm_weights(m: np.ndarray, start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """MGDA: ``w* = argmin_{w in simplex} w^T M w`` (the min-norm point of the convex hull of
    the task gradients is ``G^T w*``, unique even where w* is not).

    K = 1: w = [1]. K = 2: closed form ``w_1 = clip((M22 - M12) / (M11 + M22 - 2 M12), 0, 1)``,
    1/2 when the two gradients are equal. M = 0 (all gradients zero): every w is optimal, 1/K.
    K >= 3: Wolfe's active-set algorithm (:func:`min_norm_active_set`) on M / (tr(M)/K), exact
    to rounding and certified by the KKT conditions (:func:`min_norm_kkt`). ``start`` (a bool
    mask, e.g. the support of the previous call's w) is where the active set starts when those
    tasks are affinely independent; a start that fails is retried from scratch. The result
    depends on it only through rounding (bit-identical when both runs end on the same support).

    The weights are unique when the tasks on the optimal face (:func:`min_norm_kkt`) are
    affinely independent. When they are not (duplicate or zero rows, zero inside the hull of
    exactly low-rank gradients), the primal-dual interior point (:func:`interior_point`, to IPM_TOL) is
    used instead: its central path ends in the relative interior of the optimal set, so
    duplicated tasks share their weight equally (to ~1e-6 relative: the split is a flat direction
    of the problem, along which only the barrier term steers the iterates).
    It is also the fallback when the active set fails its certificate.
    Returns (w [K] float64, on the simplex, ok).
    """
    m = np.asarray(m, dtype=np.float64)
    k = m.shape[0]
    if k == 1:
        return np.ones(1), True
    mh = m / gram_scale(m)
    if k == 2:
        den = mh[0, 0] + mh[1, 1] - 2.0 * mh[0, 1]  # |g1 - g2|^2 / s >= 0
        w1 = float(np.clip((mh[1, 1] - mh[0, 1]) / den, 0.0, 1.0)) if den > 1e-12 else 0.5
        pair = np.array([w1, 1.0 - w1])
        return pair, bool(np.isfinite(pair).all())
    if float(np.trace(m)) == 0.0:  # M is PSD with a zero diagonal: M = 0
        return np.full(k, 1.0 / k), True
    starts: list[np.ndarray | None] = [None]
    if start is not None and start.any() and affinely_independent(mh, np.flatnonzero(start)):
        starts.insert(0, start)
    ok, w, face = False, None, None
    for first in starts:
        w = min_norm_active_set(mh, first)
        if w is not None:
            ok, face = min_norm_kkt(mh, w)
            if ok:
                break
    if w is not None and face is not None and ok:
        if (face == (w > 0)).all() or affinely_independent(mh, np.flatnonzero(face)):
            return w, True  # the unique optimum
    ones = np.ones(k)

    def derivatives(v: np.ndarray, hess: np.ndarray) -> np.ndarray:
        hess[...] = mh
        return mh @ v

    x, ok_ipm = interior_point(derivatives, ones / k, ones)
    if ok_ipm or not ok:
        x = np.maximum(x, 0.0)
        x /= x.sum()
        # the interior point's own test is relative to the largest task; its answer must also
        # be optimal on the scale of the tasks it weighs (a Frank-Wolfe gap, which bounds the
        # suboptimality, of at most IPM_GAP rho^2, so |G^T x - G^T w*| <= 1e-4 rho; _gap_scale)
        mx = mh @ x
        gap = 2.0 * (float(x @ mx) - float(mx.min()))
        rho = _gap_scale(mh, x)
        return x, ok_ipm and bool(np.isfinite(x).all()) and gap <= IPM_GAP * rho * rho
    assert w is not None  # ok: the active set's w passed its certificate
    return w, True  # not unique, and the interior point failed: the active set's certified w


# The conflict-averse active set is certified only where |G^T w| >= X_FLOOR rho (rho: the
# weighted norm of the support, see kkt_factor): its KKT tolerance grows as rho / |G^T w| (the
# gradient of |x| is x / |x|), and at this floor it bounds the Frank-Wolfe gap by ~1e-8 of the
# objective's scale.
X_FLOOR = 1e-4


def conflict_averse_kkt(
    mh: np.ndarray, bh: np.ndarray, alpha: float, beta: float, w: np.ndarray
) -> tuple[bool, np.ndarray]:
    """``(ok, face)`` for a candidate w of  min_{w in simplex} phi(w) = alpha w.b + beta |G^T w|.

    Where x = G^T w != 0, phi is differentiable, ``grad phi = alpha b + beta M w / |x|``, and w
    is optimal iff ``lam = grad phi - (w.grad phi) 1`` is >= 0, and 0 on the support. ok: so to
    ``tol_i = kkt_factor(K) (|g_i| + rho) (alpha R + beta rho / |x|)`` (R the mean |g_j|, rho =
    sum_j w_j |g_j|: the rounding bounds of b_i = (M 1/K)_i, of (M w)_i / |x| and of w.grad phi,
    and of what the support's linear solve leaves, as in :func:`kkt_factor`), with
    |x| >= X_FLOOR rho. face: as in :func:`min_norm_kkt`, the tasks with ``lam_i <= tol_i``, on
    which every optimal w lives.
    """
    support = w > 0
    if not on_simplex(w, support):
        return False, support
    k, norms, mw = mh.shape[0], np.sqrt(np.diagonal(mh)), mh @ w
    rho = _support_norm(norms, w)
    x_norm = math.sqrt(max(float(w @ mw), 0.0))
    if not (x_norm > 0 and x_norm >= X_FLOOR * rho):
        return False, support
    grad = alpha * bh + (beta / x_norm) * mw
    lam = grad - float(w @ grad)
    tol = kkt_factor(k) * (norms + rho) * (alpha * float(norms.mean()) + beta * rho / x_norm)
    face = lam <= tol
    return bool((lam >= -tol).all() and face[support].all()), face


def conflict_averse_active_set(mh: np.ndarray, bh: np.ndarray, alpha: float, beta: float) -> np.ndarray | None:
    """An active-set method for  min_{w in simplex} alpha w.b + beta |G^T w|  (alpha >= 0,
    beta > 0, b = G g0): Wolfe's algorithm (:func:`min_norm_active_set`) with the minor cycle's
    affine min-norm point replaced by the minimiser of the objective over the affine hull of
    the support S, which has a closed form. It does not certify its result
    (:func:`conflict_averse_kkt` does); None where it breaks down.

    On aff{g_i : i in S}, write x = x_a + y with x_a the hull's min-norm point (weights u, as in
    Wolfe's) and y in the hull's direction space V, which is orthogonal to x_a. With q the
    projection of g0 onto V (weights delta: ``1^T delta = 0, G_S^T delta = q``, from
    ``A delta = b_S + nu 1`` with A the lifted Gram matrix; then ``|q|^2 = b_S.delta``), the
    objective is ``const + alpha q.y + beta sqrt(|x_a|^2 + |y|^2)``. If alpha |q| < beta its
    minimiser is ``y = -t q / |q|`` with ``t = |x_a| rho / sqrt(1 - rho^2)``, rho = alpha |q| / beta:
    weights ``u - (t / |q|) delta``; if that is > 0 it is the new w, otherwise w moves towards it
    until a weight reaches 0 and that task leaves S. If alpha |q| >= beta the objective falls
    without bound along -q (its slope along -q is at most |q| (beta - alpha |q|) <= 0 everywhere)
    and w moves along -delta until a weight reaches 0. Major cycle: with lam as in
    :func:`conflict_averse_kkt`, stop when every ``lam_i >= -tol_i``, else the most violating task
    enters S. It enters with a positive weight (the direction towards it descends at w, which
    minimises the objective on the face of S, so the new face's minimiser, or descent ray, gives
    it weight), the objective decreases strictly from one major cycle to the next, and the
    method is finite, as Wolfe's. Start: the best single task; same cap and progress check as
    Wolfe's. It gives up at x = 0, where the objective is not differentiable.
    """
    k = mh.shape[0]
    norms = np.sqrt(np.diagonal(mh))
    factor = kkt_factor(k)
    tol_unit = factor * alpha * float(norms.mean())  # tol_i = (tol_unit + factor beta rho / |x|) (|g_i| + rho)
    in_s = np.zeros(k, dtype=bool)
    w = np.zeros(k)
    j = int(np.argmin(alpha * bh + beta * norms))
    in_s[j], w[j] = True, 1.0
    rhs = np.empty((k, 2))
    rhs[:, 0] = 1.0
    value = np.inf
    for _ in range(4 * k + 10):
        while True:  # minor cycle
            s = np.flatnonzero(in_s)
            rhs[: s.size, 1] = bh[s]
            sol = lifted_solve(mh, s, rhs[: s.size])  # A^{-1} [1, b_S]
            if sol is None:
                return None
            p, r = sol[:, 0], sol[:, 1]
            total = float(p.sum())
            if not (math.isfinite(total) and total > 0 and math.isfinite(float(r.sum()))):
                return None
            u = p / total
            delta = r - (float(r.sum()) / total) * p
            rho2 = alpha * alpha * float(bh[s] @ delta) / (beta * beta)
            if rho2 < 1.0:
                x_a = math.sqrt(max(float(u @ mh[s][:, s] @ u), 0.0))
                target = u - (x_a * alpha / beta / math.sqrt(1.0 - rho2)) * delta
                if target.min() > 0:
                    w[s] = target
                    break
                direction = target - w[s]
            else:
                direction = -delta
            if not _move_to_boundary(w, in_s, s, direction):
                return None
        mw = mh @ w
        x_norm = math.sqrt(max(float(w @ mw), 0.0))
        if not x_norm > 0:
            return None
        grad = alpha * bh + (beta / x_norm) * mw
        new_value = float(w @ grad)  # = alpha w.b + beta |x|
        if not new_value < value:  # no progress: rounding; let the certificate judge w
            return w
        value = new_value
        rho = _support_norm(norms, w)
        violation = grad + (tol_unit + factor * beta * rho / x_norm) * (norms + rho)
        j = int(np.argmin(violation))
        if violation[j] >= value or in_s[j]:
            return w
        in_s[j] = True
    return w


def conflict_averse_weights(m: np.ndarray, b: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, bool]:
    """``w* = argmin_{w in simplex} alpha * w.b + beta * sqrt(w^T M w)`` with alpha, beta >= 0.

    CAGrad: b = G g0, alpha = 1, beta = c |g0|. IMGrad: alpha = 1.5 - cos, beta = cos c |g0|.
    On M and b scaled by tr(M)/K, with a floor of 1e-12 on the scaled beta. Solved by the active
    set of :func:`conflict_averse_active_set`, exact to rounding, certified by its KKT
    conditions (:func:`conflict_averse_kkt`). The objective is convex but not differentiable
    where G^T w = 0; where the active set is not certified (|G^T w| below X_FLOOR of the
    gradients' norms, or a breakdown) or w* may not be unique (affinely dependent tasks on the
    optimal face, as in :func:`min_norm_weights`; the interior point then splits the weight of
    duplicated tasks equally, to ~5e-4 relative), the problem is solved in the lifted form
    min_{w in simplex, tau > 0} alpha w.b + beta (w^T M w / (2 tau) + tau / 2)  (jointly convex:
    a quadratic-over-linear term; minimising over tau gives back beta sqrt(w^T M w), with
    tau* = |G^T w*|) by the primal-dual interior point method (the floor on beta keeps tau
    bounded when beta = 0, a pure linear program). Returns (w [K] float64, ok).
    """
    m = np.asarray(m, dtype=np.float64)
    k = m.shape[0]
    s = gram_scale(m)
    mh, bh = m / s, np.asarray(b, dtype=np.float64) / s
    beta = max(beta / np.sqrt(s), 1e-12)  # beta multiplies a norm (units sqrt(s))

    w, ok = conflict_averse_active_set(mh, bh, alpha, beta), False
    if w is not None:
        ok, face = conflict_averse_kkt(mh, bh, alpha, beta, w)
        if ok and ((face == (w > 0)).all() or affinely_independent(mh, np.flatnonzero(face))):
            return w, True  # the unique optimum

    alpha_b = alpha * bh

    def derivatives(x: np.ndarray, hess: np.ndarray) -> np.ndarray:
        w, tau = x[:k], x[k]  # a numpy scalar: a tau that underflows gives inf (refused), not an exception
        mw = mh @ w
        wmw = float(w @ mw)
        grad = np.empty(k + 1)
        np.multiply(mw, beta / tau, out=grad[:k])
        grad[:k] += alpha_b
        grad[k] = beta * (0.5 - wmw / (2.0 * tau * tau))
        np.multiply(mh, beta / tau, out=hess[:k, :k])
        hess[:k, k] = hess[k, :k] = (-beta / tau**2) * mw
        hess[k, k] = beta * wmw / tau**3
        return grad

    w0 = np.full(k, 1.0 / k)
    x0 = np.append(w0, np.sqrt(max(float(w0 @ mh @ w0), 0.0)) + 1.0)
    x, ok_ipm = interior_point(derivatives, x0, np.append(np.ones(k), 0.0))
    if ok_ipm or not ok:
        x = np.maximum(x[:k], 0.0)
        x /= x.sum()
        # as in min_norm_weights: a Frank-Wolfe gap on the scale of the tasks weighed, here
        # |phi| <= (alpha |g0| + beta) rho (phi's two terms: |w.b| <= |g0| rho, |G^T w| <= rho)
        # (where G^T x is numerically 0, phi is not differentiable: the interior point's own test
        # stands, and conflict_averse_combination fades the direction term out)
        mx = mh @ x
        x_norm = math.sqrt(max(float(x @ mx), 0.0))
        rho = _gap_scale(mh, x)
        ok_ipm = ok_ipm and bool(np.isfinite(x).all())
        if x_norm > DIRECTION_FLOOR * rho:
            grad = alpha_b + (beta / x_norm) * mx
            gap = float(x @ grad) - float(grad.min())
            g0_norm = math.sqrt(max(float(mh.sum()), 0.0)) / k
            ok_ipm = ok_ipm and gap <= IPM_GAP * (alpha * g0_norm + beta) * rho
        return x, ok_ipm
    assert w is not None  # ok: the active set's w passed its certificate
    return w, True  # not unique, and the interior point failed: the active set's certified w


# A combination x = G^T w shorter than this fraction of rho = sum_i w_i |g_i| has no reliable
# direction: the float64 Gram matrix of P-dimensional gradients gives |x|^2 = w^T M w to
# gamma_P rho^2 at worst (about 1e-10 rho^2 at P = 1e6, ~1e-13 typically), so at |x| = 1e-4 rho
# its direction is known to ~1e-2 at worst. Relative to rho, not to the rms task norm: with norms
# 1e5 apart the min-norm point is as short as the smallest task, far below the rms.
DIRECTION_FLOOR = 1e-4


def floored_norm(m: np.ndarray, w: np.ndarray) -> float:
    """``max(|G^T w|, DIRECTION_FLOOR rho)`` from the Gram matrix: the length to divide by when
    only the direction of G^T w is used (CAGrad's correction, IMGrad's cosine), so that a
    combination at rounding level fades out continuously instead of becoming a unit vector.
    inf where both are 0 (w on zero gradients only): the direction term then vanishes."""
    rho = float(w @ np.sqrt(np.maximum(np.diagonal(m), 0.0)))
    return max(math.sqrt(max(float(w @ m @ w), 0.0)), DIRECTION_FLOOR * rho) or math.inf


def conflict_averse_update(m: np.ndarray, alpha: float, beta: float, c: float) -> tuple[np.ndarray, bool]:
    """CAGrad's and IMGrad's weights of the update: the inner problem with b = G g0 (= M 1/K),
    solved by :func:`conflict_averse_weights`, then :func:`conflict_averse_combination`.
    Returns (weights [K], ok)."""
    w, ok = conflict_averse_weights(m, m.mean(axis=1), alpha, beta)
    weights = conflict_averse_combination(m, w, c)
    return weights, ok and bool(np.isfinite(weights).all())


def conflict_averse_combination(m: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's update from the inner solution w*: ``d = (g0 + c |g0| / |g_w| g_w) / (1 + c^2)``
    with ``g_w = G^T w*``, as weights: ``d = G^T weights`` with
    ``weights = (1/K + c |g0| / |g_w| w*) / (1 + c^2)``.

    |g0| and |g_w| come from the float64 Gram matrix, |g_w| floored by :func:`floored_norm`:
    when the inner optimum is (numerically) at g_w = 0 -- zero in the convex hull of the
    gradients, where CAGrad's direction is not defined -- the correction term
    ``c |g0| g_w / |g_w|`` fades out continuously (its length is ``c |g0| min(1, |g_w| / floor)``)
    instead of amplifying rounding noise into a unit vector.
    """
    k = m.shape[0]
    ones = np.full(k, 1.0 / k)
    g0_norm = np.sqrt(max(float(ones @ m @ ones), 0.0))
    coef = c * g0_norm / floored_norm(m, w)
    return (ones + coef * w) / (1.0 + c * c)
