"""FairGrad: the residual of its defining equation G G^T w = w^(-1/alpha), scipy's
least_squares (the official solver), torchjd, and the closed form for orthogonal gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, degenerate_cases, positive_losses, spread_grads




@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_solves_the_defining_equation(grads_and_losses, alpha):
    g, losses = grads_and_losses
    b = make_balancer("fairgrad", num_tasks=g.shape[0], alpha=alpha)
    out = b.balance(g, losses)
    w = out.weights
    lhs, rhs = g @ (g.T @ w), w.pow(-1.0 / alpha)
    assert ((lhs - rhs).norm() / rhs.norm()).item() < 1e-8
    assert (w > 0).all()
    torch.testing.assert_close(out.direction, g.T @ w)
    assert b.solver_failures.item() == 0


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_agrees_with_scipy_least_squares(alpha):
    g = spread_grads(5, seed=4, spread=20.0)
    a = (g @ g.T).numpy()
    res = least_squares(lambda x: a @ x - np.power(1.0 / x, 1.0 / alpha), np.ones(5) / 5, bounds=(0, np.inf),
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    w = make_balancer("fairgrad", num_tasks=5, alpha=alpha).balance(g, positive_losses(5)).weights
    np.testing.assert_allclose(w.numpy(), res.x, rtol=1e-6)


def test_agrees_with_torchjd():
    pytest.importorskip("torchjd")
    from torchjd.aggregation import FairGrad as JDFairGrad

    g = spread_grads(4, seed=2, spread=10.0)
    ours = make_balancer("fairgrad", num_tasks=4, alpha=2.0).balance(g, positive_losses(4)).direction
    theirs = JDFairGrad(alpha=2.0)(g).to(ours.dtype)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_orthogonal_closed_form(alpha):
    """Orthogonal gradients: |g_i|^2 w_i = w_i^(-1/alpha)  =>  w_i = |g_i|^(-2 alpha / (1 + alpha))."""
    norms = torch.tensor([0.1, 1.0, 30.0], dtype=DTYPE)
    g = torch.diag(norms)
    w = make_balancer("fairgrad", num_tasks=3, alpha=alpha).balance(g, positive_losses(3)).weights
    torch.testing.assert_close(w, norms.pow(-2 * alpha / (1 + alpha)), rtol=1e-10, atol=0)


def test_alpha_zero_is_ew():
    g = spread_grads(3)
    out = make_balancer("fairgrad", num_tasks=3, alpha=0.0).balance(g, positive_losses(3))
    torch.testing.assert_close(out.direction, g.mean(0))


@pytest.mark.parametrize("case", sorted(degenerate_cases()))
def test_degenerate_inputs(case):
    g = degenerate_cases()[case]
    b = make_balancer("fairgrad", num_tasks=3)
    out = b.balance(g, positive_losses(3))
    assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all()
    if case == "duplicate_rows":  # singular but solvable: no failure, equation holds
        w = out.weights
        rhs = w.pow(-0.5)
        assert ((g @ (g.T @ w) - rhs).norm() / rhs.norm()).item() < 1e-8
        assert b.solver_failures.item() == 0
    else:  # 0 is in the convex hull: no solution -> counted, fallback 1/K
        assert b.solver_failures.item() == 1
        torch.testing.assert_close(out.weights, torch.full((3,), 1.0 / 3, dtype=DTYPE))


def test_float32_and_log_losses():
    g, losses = spread_grads(4, spread=10.0).float(), positive_losses(4).float()
    b = make_balancer("fairgrad", num_tasks=4)
    out = b.balance(g, losses)
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    assert b.solver_failures.item() == 0
    w = out.weights.double()
    gd = g.double()
    assert ((gd @ (gd.T @ w) - w.pow(-0.5)).norm() / w.pow(-0.5).norm()).item() < 1e-5
    logd = make_balancer("fairgrad", num_tasks=4, log_losses=True).balance(g, losses).direction
    manual = make_balancer("fairgrad", num_tasks=4).balance(g / (losses.abs() + 1e-8).unsqueeze(1), losses).direction
    torch.testing.assert_close(logd, manual)
