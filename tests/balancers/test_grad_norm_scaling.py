"""Inverse-gradient-norm scaling: every task's weighted gradient has the mean task norm / K."""

from __future__ import annotations

import pytest
import torch

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, degenerate_cases, positive_losses, spread_grads




def test_weighted_gradients_have_equal_norms(grads_and_losses):
    g, losses = grads_and_losses
    k = g.shape[0]
    out = make_balancer("grad_norm_scaling", num_tasks=k).balance(g, losses)
    norms = g.norm(dim=1)
    contrib = (out.weights.unsqueeze(1) * g).norm(dim=1)
    torch.testing.assert_close(contrib, (norms.mean() / k).expand(k), rtol=1e-12, atol=0)
    unit_mean = (g / norms.unsqueeze(1)).mean(0)
    torch.testing.assert_close(out.direction, norms.mean() * unit_mean, rtol=1e-12, atol=1e-14)


def test_equal_norms_is_ew():
    g = spread_grads(5, spread=1.0)
    out = make_balancer("grad_norm_scaling", num_tasks=5).balance(g, positive_losses(5))
    torch.testing.assert_close(out.weights, torch.full((5,), 0.2, dtype=DTYPE))
    torch.testing.assert_close(out.direction, g.mean(0))


def test_direction_invariant_to_rescaling_one_task():
    g = spread_grads(4, seed=3)
    h = g.clone()
    h[2] *= 1e4
    b = make_balancer("grad_norm_scaling", num_tasks=4)
    d1, d2 = b.balance(g, positive_losses(4)).direction, b.balance(h, positive_losses(4)).direction
    torch.testing.assert_close(d1 / d1.norm(), d2 / d2.norm(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(degenerate_cases()))
def test_degenerate_inputs(case):
    g = degenerate_cases()[case]
    out = make_balancer("grad_norm_scaling", num_tasks=3).balance(g, positive_losses(3))
    assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all()
    zero = g.norm(dim=1) == 0
    torch.testing.assert_close(out.weights[zero], torch.full((int(zero.sum()),), 1.0 / 3, dtype=DTYPE))


def test_float32_and_log_losses():
    g, losses = spread_grads(3).float(), positive_losses(3).float()
    out = make_balancer("grad_norm_scaling", num_tasks=3).balance(g, losses)
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    # rescaling each row by 1/|L| does not change the unit vectors, only the mean norm
    logd = make_balancer("grad_norm_scaling", num_tasks=3, log_losses=True).balance(g, losses).direction
    manual = make_balancer("grad_norm_scaling", num_tasks=3).balance(g / (losses.abs() + 1e-8).unsqueeze(1), losses).direction
    torch.testing.assert_close(logd, manual)
