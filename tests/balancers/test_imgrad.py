"""IMGrad against independent math: the MGDA point and cos(g0, g_m) recomputed with scipy (or
the K = 2 closed form), then the official objective (1.5 - cos) w.(G g0) + cos c |g0| |G^T w|
minimised by brute force (K = 2) or checked by its KKT conditions and SLSQP (K = 3, 10)."""

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


def mgda_point(g: np.ndarray) -> np.ndarray:
    k = g.shape[0]
    m = g @ g.T
    if k == 2:
        gamma = np.clip((m[1, 1] - m[0, 1]) / (m[0, 0] + m[1, 1] - 2 * m[0, 1]), 0.0, 1.0)
        return gamma * g[0] + (1 - gamma) * g[1]
    res = minimize(
        lambda w: w @ m @ w,
        np.full(k, 1.0 / k),
        jac=lambda w: 2 * m @ w,
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return res.x @ g


def cos_g0_gm(g: np.ndarray) -> float:
    g0, gm = g.mean(0), mgda_point(g)
    return float(g0 @ gm / (np.linalg.norm(g0) * np.linalg.norm(gm)))


def objective(w: np.ndarray, g: np.ndarray, c: float, cos: float) -> float:
    g0 = g.mean(0)
    gw = w @ g
    return float((1.5 - cos) * (gw @ g0) + cos * c * np.linalg.norm(g0) * np.linalg.norm(gw))


def inner_weights(weights: np.ndarray, k: int, c: float) -> np.ndarray:
    v = weights * (1 + c**2) - 1.0 / k
    return v / v.sum()


def direction_from(w: np.ndarray, g: np.ndarray, c: float) -> np.ndarray:
    g0 = g.mean(0)
    gw = w @ g
    return (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c**2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_tasks_brute_force(seed):
    grads, losses = spread_grads(2, seed=seed), positive_losses(2, seed=seed)
    g = grads.numpy()
    c = 0.5
    cos = cos_g0_gm(g)
    f = lambda t: objective(np.array([t, 1.0 - t]), g, c, cos)  # noqa: E731
    ref = minimize_scalar(f, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-12})
    f_grid = min(f(t) for t in np.linspace(0.0, 1.0, 20001))
    b = make_balancer("imgrad", num_tasks=2, c=c)
    out = b.balance(grads, losses)
    np.testing.assert_allclose(float(b.last_cos), cos, rtol=1e-10)
    w = inner_weights(out.weights.numpy(), 2, c)
    scale = (g**2).sum() / 2
    assert objective(w, g, c, cos) <= min(ref.fun, f_grid) + 1e-10 * scale
    d = out.direction.numpy()
    np.testing.assert_allclose(d, direction_from(np.array([ref.x, 1 - ref.x]), g, c), atol=1e-6 * np.linalg.norm(d))


def test_kkt_and_scipy(grads_and_losses, num_tasks):
    grads, losses = grads_and_losses
    g = grads.numpy()
    c = 0.9
    cos = cos_g0_gm(g)
    b = make_balancer("imgrad", num_tasks=num_tasks, c=c)
    out = b.balance(grads, losses)
    assert b.solver_failures.item() == 0
    np.testing.assert_allclose(float(b.last_cos), cos, atol=1e-5)
    w = inner_weights(out.weights.numpy(), num_tasks, c)
    m = g @ g.T
    gw = w @ g
    grad_f = (1.5 - cos) * m.mean(1) + cos * c * np.linalg.norm(g.mean(0)) * (m @ w) / np.linalg.norm(gw)
    value = w @ grad_f
    scale = np.trace(m) / num_tasks
    assert grad_f.min() >= value - 1e-5 * scale
    support = w > 1e-5
    assert np.all(np.abs(grad_f[support] - value) <= 1e-5 * scale)
    best = min(
        minimize(
            objective,
            x0,
            args=(g, c, cos),
            bounds=[(0.0, 1.0)] * num_tasks,
            constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1.0}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 1000},
        ).fun
        for x0 in [np.full(num_tasks, 1.0 / num_tasks), np.eye(num_tasks)[0] * 0.9 + 0.1 / num_tasks]
    )
    assert objective(w, g, c, cos) <= best + 1e-5 * scale
    np.testing.assert_allclose(out.direction.numpy(), direction_from(w, g, c), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out.direction.numpy(), out.weights.numpy() @ g, rtol=1e-8, atol=1e-10)


def test_cos_in_unit_interval(grads_and_losses, num_tasks):
    """g_m is the min-norm point of a convex set containing g0, so g0.g_m >= |g_m|^2 >= 0."""
    grads, losses = grads_and_losses
    b = make_balancer("imgrad", num_tasks=num_tasks)
    b.balance(grads, losses)
    assert 0.0 <= float(b.last_cos) <= 1.0


def test_identical_gradients():
    """g_m = g0 = g, cos = 1: d = (1 + c) g / (1 + c^2), whatever w* is."""
    g = spread_grads(1, dim=12, seed=5).repeat(3, 1)
    b = make_balancer("imgrad", num_tasks=3, c=0.8)
    out = b.balance(g, torch.ones(3, dtype=DTYPE))
    assert abs(float(b.last_cos) - 1.0) < 1e-9
    np.testing.assert_allclose(out.direction.numpy(), g[0].numpy() * 1.8 / 1.64, rtol=1e-9)


def test_differs_from_cagrad_when_cos_below_one():
    """The imbalance term matters: with cos < 1 the inner solution is not CAGrad's."""
    g = spread_grads(10, seed=0)
    ones = torch.ones(10, dtype=DTYPE)
    b = make_balancer("imgrad", num_tasks=10, c=0.5)
    d_im = b.balance(g, ones).direction
    d_ca = make_balancer("cagrad", num_tasks=10, c=0.5).balance(g, ones).direction
    assert float(b.last_cos) < 0.99
    assert float((d_im - d_ca).norm()) > 1e-3 * float(d_ca.norm())


def test_degenerate_inputs_finite():
    for name, g in degenerate_cases().items():
        b = make_balancer("imgrad", num_tasks=3)
        out = b.balance(g, torch.ones(3, dtype=DTYPE))
        assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all(), name
        assert 0.0 <= float(b.last_cos) <= 1.0, name
        if b.solver_failures.item():
            np.testing.assert_allclose(out.direction.numpy(), g.mean(0).numpy(), err_msg=name)
    # zero in the convex hull: g_m = 0, cos -> 0, and the objective reduces to w.(G g0)
    b = make_balancer("imgrad", num_tasks=3)
    b.balance(degenerate_cases()["opposite_rows"], torch.ones(3, dtype=DTYPE))
    assert float(b.last_cos) < 0.1


def test_solver_failure_is_counted_and_falls_back_to_equal_weights(monkeypatch):
    # the active set breaks down, then two interior-point iterations cannot meet the tolerance
    monkeypatch.setattr(simplex, "conflict_averse_active_set", lambda *args: None)
    monkeypatch.setattr(simplex, "interior_point", functools.partial(real_pdipm, max_iters=2))
    g = spread_grads(10, seed=4)
    bal = make_balancer("imgrad", num_tasks=10)
    out = bal.balance(g, torch.ones(10, dtype=DTYPE))
    assert bal.solver_failures.item() == 1
    np.testing.assert_allclose(out.weights.numpy(), np.full(10, 0.1))
    np.testing.assert_allclose(out.direction.numpy(), g.mean(0).numpy())
