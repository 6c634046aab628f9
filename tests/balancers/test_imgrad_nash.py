"""IMGrad's Nash-MTL form (Eq. 13) checked with independent math: the KKT conditions of Eq. 13
(multipliers by scipy's NNLS), feasibility, a scipy solve of the same problem from the same
start, a local-optimality probe, the Nash-MTL limit cos(theta) = 1, and the Nash-MTL mechanics
(max_norm, update_weights_every, fallback, state)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, nnls, root

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, degenerate_cases, positive_losses, spread_grads




def conflicting(k: int, seed: int) -> torch.Tensor:
    g = spread_grads(k, seed=seed, spread=100.0)
    g[0] = -0.5 * g[0] + 0.3 * g[1 % k]
    return g


def mgda_cos(g: np.ndarray) -> float:
    """cos(g0, g_m) with the MGDA min-norm point from scipy's SLSQP on the simplex."""
    k = g.shape[0]
    m = g @ g.T
    res = minimize(lambda w: w @ m @ w, np.ones(k) / k, jac=lambda w: 2 * m @ w, bounds=[(0, None)] * k,
                   constraints=({"type": "eq", "fun": lambda w: w.sum() - 1},), method="SLSQP",
                   options={"ftol": 1e-16, "maxiter": 500})
    gm, g0 = g.T @ res.x, g.mean(0)
    return float(np.clip(g0 @ gm / (np.linalg.norm(g0) * np.linalg.norm(gm)), 0.0, 1.0))


def eq13(alpha: np.ndarray, m: np.ndarray, cos: float) -> float:
    beta = m @ alpha
    return float((1 - cos) * beta.sum() + cos * np.sum(np.log(alpha) + np.log(beta)))


def nash_scipy(m: np.ndarray, p: np.ndarray | None = None, x0: np.ndarray | None = None) -> np.ndarray:
    """alpha > 0 with alpha_i (M alpha)_i = p_i, i.e. M alpha = p / alpha: MINPACK's hybrid
    method (scipy.optimize.root) from x0, else plain damped Newton in numpy on the convex
    1/2 a^T M a - sum p log a from a cold start; checked to a relative residual of 1e-11."""
    k = m.shape[0]
    p = np.ones(k) if p is None else p
    cold = np.sqrt(p / np.diag(m))
    a = root(lambda a: m @ a - p / a, cold if x0 is None else x0, jac=lambda a: m + np.diag(p / a**2),
             method="hybr", options={"xtol": 1e-14}).x
    if not ((a > 0).all() and np.linalg.norm(m @ a - p / a) <= 1e-11 * np.linalg.norm(p / a)):
        a = cold
        for _ in range(500):
            h = m + np.diag(p / a**2)
            d = -np.linalg.solve(h, m @ a - p / a)
            a = a + d / (1.0 + np.sqrt(d @ h @ d))
    assert (a > 0).all() and np.linalg.norm(m @ a - p / a) <= 1e-11 * np.linalg.norm(p / a)
    return a


def lambdas_at(alpha: np.ndarray, m: np.ndarray, cos: float) -> np.ndarray:
    """Eq. 13's multipliers when all constraints are active (alpha = the Nash point)."""
    beta = m @ alpha
    grad_f = (1 - cos) * m.sum(1) + cos * (1 / alpha + m @ (1 / beta))
    return np.linalg.solve((np.diag(1 / alpha) + m / beta[:, None]).T, grad_f)


def balance(g: torch.Tensor, **kw):
    b = make_balancer("imgrad_nash", num_tasks=g.shape[0], max_norm=0.0, **kw)
    out = b.balance(g, positive_losses(g.shape[0]))
    return b, out


CASES = [(2, 1), (3, 0), (3, 3), (5, 0), (5, 3), (10, 0), (10, 1)]


@pytest.mark.parametrize("k,seed", CASES)
def test_kkt_of_eq13(k, seed):
    g = conflicting(k, seed)
    b, out = balance(g)
    assert b.solver_failures.item() == 0
    alpha = out.weights.numpy()
    gn = g.numpy()
    m = gn @ gn.T
    cos = mgda_cos(gn)
    assert abs(b.last_cos - cos) < 1e-6
    beta = m @ alpha
    psi = np.log(alpha) + np.log(beta)
    assert (alpha > 0).all() and (psi >= -1e-9).all()  # feasible for Eq. 12's constraints
    # stationarity: grad f = sum_{i active} lambda_i grad psi_i with lambda >= 0 (NNLS)
    grad_f = (1 - cos) * m.sum(1) + cos * (1 / alpha + m @ (1 / beta))
    grad_psi = np.diag(1 / alpha) + m / beta[:, None]  # row i: grad psi_i
    active = psi < 1e-7
    lam, resid = nnls(grad_psi[active].T, grad_f)
    assert resid <= 1e-6 * np.linalg.norm(grad_f)
    np.testing.assert_allclose(out.direction.numpy(), gn.T @ alpha, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k,seed", [(2, 1), (3, 0), (3, 3), (5, 3)])
def test_not_worse_than_scipy_from_the_same_start(k, seed):
    """Eq. 13 in q = log(alpha * beta) >= 0, minimised by scipy's L-BFGS-B from q = 0 (the
    Nash-MTL point), with alpha(q) from scipy's root: mtrl's point must be at least as good, and
    it must leave the Nash point exactly when that is not a KKT point."""
    g = conflicting(k, seed)
    gn = g.numpy()
    m = gn @ gn.T
    cos = mgda_cos(gn)
    nash = nash_scipy(m)
    cache = {"x": nash}

    def phi(q):
        a = nash_scipy(m, np.exp(q), cache["x"] * np.exp(q / 2))
        cache["x"] = a
        return eq13(a, m, cos)

    res = minimize(phi, np.zeros(k), method="L-BFGS-B", bounds=[(0, 30)] * k,
                   options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 500})
    _, out = balance(g)
    ours = eq13(out.weights.numpy(), m, cos)
    assert ours <= res.fun + 1e-7 * abs(res.fun)
    # where the Nash point violates Eq. 13's KKT conditions (a negative multiplier), it must be left
    if (lambdas_at(nash, m, cos) < 0).any():
        assert ours < eq13(nash, m, cos) - 1e-4 * abs(eq13(nash, m, cos))
    else:
        np.testing.assert_allclose(out.weights.numpy(), nash, rtol=1e-7)


@pytest.mark.parametrize("k,seed", [(3, 3), (5, 0)])
def test_no_feasible_descent_nearby(k, seed):
    """Random nearby points of the feasible set -- q' = max(0, q + noise) with q = log(alpha beta)
    at mtrl's solution, alpha(q') from scipy -- never have a lower Eq. 13 objective."""
    g = conflicting(k, seed)
    gn = g.numpy()
    m = gn @ gn.T
    cos = mgda_cos(gn)
    _, out = balance(g)
    alpha = out.weights.numpy()
    f0 = eq13(alpha, m, cos)
    q = np.maximum(np.log(alpha) + np.log(m @ alpha), 0.0)
    rng = np.random.default_rng(0)
    for _ in range(40):
        q2 = np.maximum(q + 1e-3 * rng.standard_normal(k), 0.0)
        cand = nash_scipy(m, np.exp(q2), alpha * np.exp((q2 - q) / 2))
        assert eq13(cand, m, cos) >= f0 - 1e-9 * abs(f0)


def test_balanced_gradients_give_nash_mtl():
    """Orthogonal gradients of equal norm: g_m = g0, cos = 1, Eq. 13 is Nash-MTL: alpha_i = 1/|g_i|."""
    g = 3.0 * torch.eye(4, dtype=DTYPE)
    b, out = balance(g)
    assert b.last_cos == pytest.approx(1.0)
    torch.testing.assert_close(out.weights, torch.full((4,), 1.0 / 3.0, dtype=DTYPE), rtol=1e-9, atol=0)


def test_non_conflicting_stays_at_nash_when_kkt_holds():
    """Nonnegative gradients: the Nash point already satisfies Eq. 13's KKT conditions here
    (checked independently below), so it is returned."""
    g = spread_grads(4, seed=0, spread=3.0).abs()
    gn = g.numpy()
    m = gn @ gn.T
    nash = nash_scipy(m)
    assert (lambdas_at(nash, m, mgda_cos(gn)) > 0).all()
    _, out = balance(g)
    np.testing.assert_allclose(out.weights.numpy(), nash, rtol=1e-7)


def test_max_norm_and_update_every_and_state():
    k = 3
    b = make_balancer("imgrad_nash", num_tasks=k, max_norm=0.5, update_weights_every=2)
    gs = [conflicting(k, s) for s in range(5)]
    outs = [b.balance(g, positive_losses(k)) for g in gs[:3]]
    for g, o in zip(gs, outs):
        assert o.direction.norm() <= 0.5 + 1e-12
        torch.testing.assert_close(g.T @ o.weights, o.direction)
    # call 2 reuses call 1's alpha (up to its own clipping factor)
    r = outs[1].weights / outs[0].weights
    torch.testing.assert_close(r, r[0].expand(k))
    c = make_balancer("imgrad_nash", num_tasks=k, max_norm=0.5, update_weights_every=2)
    c.load_state_dict(b.state_dict())
    for g in gs[3:]:
        db, dc = b.balance(g, positive_losses(k)).direction, c.balance(g, positive_losses(k)).direction
        torch.testing.assert_close(db, dc, rtol=0, atol=0)


def test_failure_falls_back_to_previous_alpha():
    b = make_balancer("imgrad_nash", num_tasks=3, max_norm=0.0)
    first = b.balance(conflicting(3, 0), positive_losses(3))
    assert b.solver_failures.item() == 0
    second = b.balance(degenerate_cases()["opposite_rows"], positive_losses(3))
    assert b.solver_failures.item() == 1
    torch.testing.assert_close(second.weights, first.weights)


@pytest.mark.parametrize("case", sorted(degenerate_cases()))
def test_degenerate_inputs_finite(case):
    g = degenerate_cases()[case]
    b = make_balancer("imgrad_nash", num_tasks=3)
    out = b.balance(g, positive_losses(3))
    assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all()
    assert out.direction.norm() <= 1.0 + 1e-12
    # duplicate rows still have a Nash point; the others have 0 in their convex hull
    assert b.solver_failures.item() == (0 if case == "duplicate_rows" else 1)


def test_float32_and_log_losses():
    g, losses = conflicting(4, 2).float(), positive_losses(4).float()
    b = make_balancer("imgrad_nash", num_tasks=4)
    out = b.balance(g, losses)
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    assert b.solver_failures.item() == 0
    logd = make_balancer("imgrad_nash", num_tasks=4, log_losses=True).balance(g, losses).direction
    manual = make_balancer("imgrad_nash", num_tasks=4).balance(g / (losses.abs() + 1e-8).unsqueeze(1), losses).direction
    torch.testing.assert_close(logd, manual)
