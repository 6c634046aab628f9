"""MGDA against independent math: the two-task closed form, the KKT conditions of
min_{w in simplex} |G^T w|^2, and scipy's SLSQP on the same problem."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from conftest import DTYPE, degenerate_cases, positive_losses, spread_grads
from mtrl.balancers import make_balancer
from mtrl.balancers import simplex_solvers as simplex


def _gram(grads: torch.Tensor) -> np.ndarray:
    g = grads.double().numpy()
    return g @ g.T


def _slsqp_min_norm(m: np.ndarray) -> np.ndarray:
    k = m.shape[0]
    res = minimize(
        lambda w: w @ m @ w,
        np.full(k, 1.0 / k),
        jac=lambda w: 2.0 * m @ w,
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    return res.x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_tasks_closed_form(seed):
    grads, losses = spread_grads(2, seed=seed), positive_losses(2, seed=seed)
    g1, g2 = grads.numpy()
    # min_{gamma in [0,1]} |gamma g1 + (1 - gamma) g2|^2
    gamma = np.clip((g2 @ g2 - g1 @ g2) / ((g1 - g2) @ (g1 - g2)), 0.0, 1.0)
    out = make_balancer("mgda", num_tasks=2).balance(grads, losses)
    np.testing.assert_allclose(out.weights.numpy(), [gamma, 1.0 - gamma], atol=1e-12)
    np.testing.assert_allclose(out.direction.numpy(), gamma * g1 + (1.0 - gamma) * g2, rtol=1e-10, atol=1e-12)


def test_kkt_conditions(grads_and_losses, num_tasks):
    """w* is optimal for min w^T M w on the simplex iff (M w*)_i >= w*^T M w* for all i, with
    equality where w*_i > 0."""
    grads, losses = grads_and_losses
    b = make_balancer("mgda", num_tasks=num_tasks)
    out = b.balance(grads, losses)
    w = out.weights.numpy()
    m = _gram(grads)
    scale = np.trace(m) / num_tasks
    assert np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-12
    grad = m @ w  # half the gradient of w^T M w
    value = w @ grad
    assert grad.min() >= value - 1e-7 * scale
    support = w > 1e-6
    assert np.all(np.abs(grad[support] - value) <= 1e-6 * scale)
    np.testing.assert_allclose(out.direction.numpy(), w @ grads.numpy(), rtol=1e-10, atol=1e-12)
    assert b.solver_failures.item() == 0


def test_matches_scipy(grads_and_losses, num_tasks):
    grads, losses = grads_and_losses
    m = _gram(grads)
    w_ref = _slsqp_min_norm(m)
    w = make_balancer("mgda", num_tasks=num_tasks).balance(grads, losses).weights.numpy()
    scale = np.trace(m) / num_tasks
    # not worse than SLSQP (and SLSQP, started elsewhere, is not much better)
    assert w @ m @ w <= w_ref @ m @ w_ref + 1e-9 * scale


def test_min_norm_point_is_common_descent_direction(grads_and_losses, num_tasks):
    """g_i . d >= |d|^2 for every task: the min-norm point decreases every loss."""
    grads, losses = grads_and_losses
    d = make_balancer("mgda", num_tasks=num_tasks).balance(grads, losses).direction
    scale = (grads**2).sum() / num_tasks
    assert torch.all(grads @ d >= d @ d - 1e-7 * scale)


def test_degenerate_cases_reach_zero_or_split():
    cases = degenerate_cases()
    m_scale = lambda g: float((g**2).sum() / g.shape[0])  # noqa: E731
    for name in ("zero_row", "opposite_rows"):
        g = cases[name]
        out = make_balancer("mgda", num_tasks=3).balance(g, torch.ones(3, dtype=DTYPE))
        # zero is in the convex hull: the min-norm point is 0
        assert float(out.direction @ out.direction) <= 1e-7 * m_scale(g), name
    out = make_balancer("mgda", num_tasks=3).balance(cases["all_zero"], torch.ones(3, dtype=DTYPE))
    np.testing.assert_allclose(out.weights.numpy(), np.full(3, 1.0 / 3.0))
    # duplicate rows: the duplicated pair shares its weight equally
    out = make_balancer("mgda", num_tasks=3).balance(cases["duplicate_rows"], torch.ones(3, dtype=DTYPE))
    assert abs(float(out.weights[0] - out.weights[1])) < 1e-9


def test_single_task():
    g = spread_grads(1, dim=5)
    out = make_balancer("mgda", num_tasks=1).balance(g, torch.ones(1, dtype=DTYPE))
    np.testing.assert_allclose(out.direction.numpy(), g[0].numpy())


def test_float32_close_to_float64():
    g = spread_grads(10, dim=50, seed=3)
    w64 = make_balancer("mgda", num_tasks=10).balance(g, torch.ones(10, dtype=DTYPE)).weights
    out = make_balancer("mgda", num_tasks=10).balance(g.float(), torch.ones(10))
    assert out.weights.dtype == torch.float32 and out.direction.dtype == torch.float32
    np.testing.assert_allclose(out.weights.numpy(), w64.numpy(), atol=1e-5)


def _uniform(mh, start=None):
    return np.full(mh.shape[0], 1.0 / mh.shape[0])


def test_wrong_active_set_result_is_caught_and_the_interior_point_used(monkeypatch):
    """The certificate is what makes the result exact: an active set that returns a wrong w
    (here 1/K) is rejected and the interior point's answer is returned, counted as no failure."""
    g = spread_grads(10, seed=4)
    ref = make_balancer("mgda", num_tasks=10).balance(g, torch.ones(10, dtype=DTYPE)).weights.numpy()
    monkeypatch.setattr(simplex, "min_norm_active_set", _uniform)
    b = make_balancer("mgda", num_tasks=10)
    w = b.balance(g, torch.ones(10, dtype=DTYPE)).weights.numpy()
    assert b.solver_failures.item() == 0
    assert np.abs(w - ref).max() <= 1e-7 and np.abs(w - 0.1).max() > 0.05


def test_solver_failure_is_counted_and_falls_back_to_equal_weights(monkeypatch):
    # a wrong active-set result (rejected by its certificate), then a 1-iteration interior point,
    # which cannot meet its tolerance
    monkeypatch.setattr(simplex, "min_norm_active_set", _uniform)
    monkeypatch.setattr(simplex, "interior_point", functools.partial(simplex.interior_point, max_iters=1))
    g = spread_grads(10, seed=4)
    b = make_balancer("mgda", num_tasks=10)
    out = b.balance(g, torch.ones(10, dtype=DTYPE))
    assert b.solver_failures.item() == 1
    np.testing.assert_allclose(out.weights.numpy(), np.full(10, 0.1))
    np.testing.assert_allclose(out.direction.numpy(), g.mean(0).numpy())


@pytest.mark.parametrize("name", ["mgda", "imgrad"])
def test_warm_start_across_calls_does_not_change_the_result(name):
    """Each call starts MGDA's active set from the previous call's support; over a sequence of
    slowly changing gradients the results are those of a fresh balancer at every call."""
    gen = torch.Generator().manual_seed(0)
    g = spread_grads(10, dim=40, seed=5)
    warm = make_balancer(name, num_tasks=10)
    for _ in range(8):
        g = g + 0.05 * torch.randn(g.shape, generator=gen, dtype=DTYPE) * g.norm(dim=1, keepdim=True) / 40**0.5
        out = warm.balance(g, torch.ones(10, dtype=DTYPE))
        assert warm.support is not None and warm.support.any()
        cold = make_balancer(name, num_tasks=10)
        ref = cold.balance(g, torch.ones(10, dtype=DTYPE))
        torch.testing.assert_close(out.weights, ref.weights, rtol=0, atol=1e-14)
        torch.testing.assert_close(out.direction, ref.direction, rtol=0, atol=1e-12 * float(g.norm()))
    assert warm.solver_failures.item() == 0
