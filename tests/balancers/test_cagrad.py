"""CAGrad against independent math: brute-force scalar minimisation for K = 2, the KKT
conditions of its inner problem and SLSQP for K = 3 and 10, and strong duality with the primal
problem  max_d min_i g_i.d  s.t.  |d - g0| <= c |g0|."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from conftest import DTYPE, degenerate_cases, positive_losses, spread_grads
from mtrl.balancers import make_balancer
from mtrl.balancers import simplex_solvers as simplex

real_pdipm = simplex.interior_point


def objective(w: np.ndarray, g: np.ndarray, c: float) -> float:
    """F(w) = w.(G g0) + c |g0| |G^T w|, evaluated on the vectors themselves."""
    g0 = g.mean(0)
    gw = w @ g
    return float(gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw))


def direction_from(w: np.ndarray, g: np.ndarray, c: float) -> np.ndarray:
    g0 = g.mean(0)
    gw = w @ g
    return (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c**2)


def slsqp(g: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    k = g.shape[0]
    best = None
    for x0 in [np.full(k, 1.0 / k)] + [0.9 * np.eye(k)[i] + 0.1 / k for i in range(k)]:
        res = minimize(
            objective,
            x0,
            args=(g, c),
            bounds=[(0.0, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 1000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.x, float(best.fun)


@pytest.mark.parametrize("c", [0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_tasks_brute_force(seed, c):
    grads, losses = spread_grads(2, seed=seed), positive_losses(2, seed=seed)
    g = grads.numpy()
    ref = minimize_scalar(
        lambda t: objective(np.array([t, 1.0 - t]), g, c), bounds=(0.0, 1.0), method="bounded",
        options={"xatol": 1e-12},
    )
    w_ref = np.array([ref.x, 1.0 - ref.x])
    out = make_balancer("cagrad", num_tasks=2, c=c).balance(grads, losses)
    w_mine = _inner_weights(out.weights.numpy(), g, c)
    scale = (g**2).sum() / 2
    grid = np.linspace(0.0, 1.0, 20001)
    f_grid = min(objective(np.array([t, 1.0 - t]), g, c) for t in grid)
    assert objective(w_mine, g, c) <= min(ref.fun, f_grid) + 1e-10 * scale
    d = out.direction.numpy()
    # bounded Brent stops ~1e-8 short of a boundary optimum; the directions agree to that order
    np.testing.assert_allclose(d, direction_from(w_ref, g, c), atol=1e-6 * np.linalg.norm(d))
    np.testing.assert_allclose(d, direction_from(w_mine, g, c), rtol=1e-9, atol=1e-12)


def _inner_weights(weights: np.ndarray, g: np.ndarray, c: float) -> np.ndarray:
    """Recover w* from the returned weights (1/K + lambda w*) / (1 + c^2): w* is proportional to
    weights * (1 + c^2) - 1/K and sums to 1."""
    k = g.shape[0]
    v = weights * (1 + c**2) - 1.0 / k
    return v / v.sum()


@pytest.mark.parametrize("c", [0.5, 0.9])
def test_kkt_and_scipy(grads_and_losses, num_tasks, c):
    """At w*, the gradient of F is equal (= w*.grad F) on the support and >= it elsewhere; and
    no SLSQP run from K + 1 starts finds a lower objective."""
    grads, losses = grads_and_losses
    g = grads.numpy()
    b = make_balancer("cagrad", num_tasks=num_tasks, c=c)
    out = b.balance(grads, losses)
    assert b.solver_failures.item() == 0
    w = _inner_weights(out.weights.numpy(), g, c)
    m = g @ g.T
    g0 = g.mean(0)
    gw = w @ g
    grad_f = m.mean(1) + c * np.linalg.norm(g0) * (m @ w) / np.linalg.norm(gw)
    value = w @ grad_f
    scale = np.trace(m) / num_tasks
    assert grad_f.min() >= value - 1e-6 * scale
    support = w > 1e-5
    assert np.all(np.abs(grad_f[support] - value) <= 1e-5 * scale)
    _, f_ref = slsqp(g, c)
    assert objective(w, g, c) <= f_ref + 1e-8 * scale
    np.testing.assert_allclose(out.direction.numpy(), direction_from(w, g, c), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out.direction.numpy(), out.weights.numpy() @ g, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("c", [0.5, 0.9])
def test_strong_duality_with_primal(grads_and_losses, num_tasks, c):
    """d_u = (1 + c^2) d solves  max_d min_i g_i.d  s.t. |d - g0| <= c |g0|: it lies on the
    ball's boundary, its worst-task improvement equals the dual optimum F(w*), and no feasible
    point does better (checked against g0 itself and random points of the ball)."""
    grads, losses = grads_and_losses
    g = grads.numpy()
    out = make_balancer("cagrad", num_tasks=num_tasks, c=c).balance(grads, losses)
    d = out.direction.numpy() * (1 + c**2)
    g0 = g.mean(0)
    radius = c * np.linalg.norm(g0)
    assert abs(np.linalg.norm(d - g0) - radius) <= 1e-7 * radius
    worst = (g @ d).min()
    w = _inner_weights(out.weights.numpy(), g, c)
    scale = np.trace(g @ g.T) / num_tasks
    assert abs(worst - objective(w, g, c)) <= 1e-6 * scale
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2000, g.shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    candidates = g0 + radius * u * rng.uniform(0, 1, (2000, 1)) ** (1 / g.shape[1])
    assert worst >= (candidates @ g.T).min(axis=1).max() - 1e-9 * scale
    assert worst >= (g @ g0).min() - 1e-9 * scale


def test_c_zero_is_plain_average():
    g = spread_grads(5, seed=1)
    out = make_balancer("cagrad", num_tasks=5, c=0.0).balance(g, torch.ones(5, dtype=DTYPE))
    np.testing.assert_allclose(out.direction.numpy(), g.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(out.weights.numpy(), np.full(5, 0.2), rtol=1e-12)


def test_identical_gradients():
    """All tasks equal: g_w = g0 = g for every w, so d = (1 + c) g / (1 + c^2)."""
    g = spread_grads(1, dim=12, seed=5).repeat(4, 1)
    out = make_balancer("cagrad", num_tasks=4, c=0.9).balance(g, torch.ones(4, dtype=DTYPE))
    np.testing.assert_allclose(out.direction.numpy(), g[0].numpy() * 1.9 / 1.81, rtol=1e-9)


def test_scale_equivariance():
    """Scaling every gradient by s scales d by s (the method has no absolute scale)."""
    g = spread_grads(10, seed=2)
    d1 = make_balancer("cagrad", num_tasks=10).balance(g, torch.ones(10, dtype=DTYPE)).direction
    d2 = make_balancer("cagrad", num_tasks=10).balance(1e-4 * g, torch.ones(10, dtype=DTYPE)).direction
    np.testing.assert_allclose(d2.numpy(), 1e-4 * d1.numpy(), rtol=1e-7)


def test_degenerate_inputs_finite_and_counted():
    for name, g in degenerate_cases().items():
        b = make_balancer("cagrad", num_tasks=3)
        out = b.balance(g, torch.ones(3, dtype=DTYPE))
        assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all(), name
        failed = b.solver_failures.item()
        if failed:  # a stated fallback, never a silent one
            np.testing.assert_allclose(out.direction.numpy(), g.mean(0).numpy(), err_msg=name)
        else:
            np.testing.assert_allclose(out.direction.numpy(), out.weights.numpy() @ g.numpy(), atol=1e-9)
    # all-zero gradients converge (to w = 1/K) and give a zero step
    b = make_balancer("cagrad", num_tasks=3)
    out = b.balance(degenerate_cases()["all_zero"], torch.ones(3, dtype=DTYPE))
    assert b.solver_failures.item() == 0 and torch.all(out.direction == 0)


def test_solver_failure_is_counted_and_falls_back_to_equal_weights(monkeypatch):
    # the active set breaks down, then two interior-point iterations cannot meet the tolerance
    monkeypatch.setattr(simplex, "conflict_averse_active_set", lambda *args: None)
    monkeypatch.setattr(simplex, "interior_point", functools.partial(real_pdipm, max_iters=2))
    g = spread_grads(10, seed=4)
    bal = make_balancer("cagrad", num_tasks=10, c=0.9)
    out = bal.balance(g, torch.ones(10, dtype=DTYPE))
    assert bal.solver_failures.item() == 1
    np.testing.assert_allclose(out.weights.numpy(), np.full(10, 0.1))
    np.testing.assert_allclose(out.direction.numpy(), g.mean(0).numpy())


def test_float32_close_to_float64():
    g = spread_grads(10, dim=50, seed=3)
    d64 = make_balancer("cagrad", num_tasks=10, c=0.9).balance(g, torch.ones(10, dtype=DTYPE)).direction
    out = make_balancer("cagrad", num_tasks=10, c=0.9).balance(g.float(), torch.ones(10))
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    np.testing.assert_allclose(out.direction.numpy(), d64.numpy(), rtol=1e-4, atol=1e-4 * float(d64.abs().max()))
