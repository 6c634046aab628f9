"""Uncertainty weighting against a reference loop that differentiates the paper's objective
with autograd and steps torch.optim.Adam; its equilibrium s* = log L; the |L| treatment."""

from __future__ import annotations

import math

import pytest
import torch

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, positive_losses, spread_grads




def reference_uw(seq, lr=0.01, bound=10.0, eps=1e-8):
    k = seq[0].shape[0]
    s = torch.zeros(k, dtype=DTYPE, requires_grad=True)
    opt = torch.optim.Adam([s], lr=lr)
    out = []
    for losses in seq:
        out.append(torch.exp(-s.detach()) / k)
        objective = (0.5 * (torch.exp(-s) * (losses.abs() + eps) + s)).sum()  # Kendall et al., regression form
        opt.zero_grad()
        objective.backward()
        opt.step()
        with torch.no_grad():
            s.clamp_(-bound, bound)
    return out


def test_matches_autograd_adam_reference():
    k = 4
    gen = torch.Generator().manual_seed(0)
    seq = [torch.rand(k, generator=gen, dtype=DTYPE) * 3 + 0.1 for _ in range(30)]
    b = make_balancer("uw", num_tasks=k)
    for losses, ref in zip(seq, reference_uw(seq)):
        torch.testing.assert_close(b.balance(None, losses).weights, ref, rtol=1e-10, atol=1e-12)


def test_equilibrium_is_log_loss():
    """Constant losses: s -> log L, so the weights become (1/L) / K."""
    losses = torch.tensor([0.5, 2.0, 8.0], dtype=DTYPE)
    b = make_balancer("uw", num_tasks=3, lr=0.05)
    for _ in range(1500):
        out = b.balance(None, losses)
    torch.testing.assert_close(b.log_vars, torch.log(losses), rtol=0, atol=2e-3)
    torch.testing.assert_close(out.weights * 3 * losses, torch.ones(3, dtype=DTYPE), rtol=0, atol=5e-3)


def test_negative_losses_use_the_magnitude_and_zero_is_bounded():
    losses = torch.tensor([-4.0, 0.0, 1.0], dtype=DTYPE)
    b = make_balancer("uw", num_tasks=3, lr=0.1, log_var_bound=6.0)
    g = spread_grads(3)
    for _ in range(1500):
        out = b.balance(g, losses)
        assert torch.isfinite(out.weights).all() and torch.isfinite(out.direction).all()
        assert (out.weights > 0).all()
    s = b.log_vars
    assert abs(s[0].item() - math.log(4.0)) < 5e-3  # |L| = 4 (L = -4 would drive s to -inf)
    assert s[1].item() == pytest.approx(-6.0)  # L = 0: held at the bound, weight e^6 / 3
    assert abs(s[2].item()) < 5e-3


def test_direction_and_empty_direction():
    g, losses = spread_grads(3), positive_losses(3)
    out = make_balancer("uw", num_tasks=3).balance(g, losses)
    torch.testing.assert_close(out.direction, g.mean(0))  # s = 0 at the first call: EW
    none = make_balancer("uw", num_tasks=3).balance(None, losses)
    assert none.direction.numel() == 0
    torch.testing.assert_close(none.weights, out.weights)


def test_state_dict_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(1)
    seq = [torch.rand(3, generator=gen, dtype=DTYPE) * 2 - 0.5 for _ in range(10)]
    a = make_balancer("uw", num_tasks=3)
    for losses in seq[:4]:
        a.balance(None, losses)
    b = make_balancer("uw", num_tasks=3)
    b.load_state_dict(a.state_dict())
    for losses in seq[4:]:
        torch.testing.assert_close(a.balance(None, losses).weights, b.balance(None, losses).weights, rtol=0, atol=0)


def test_float32():
    out = make_balancer("uw", num_tasks=3).balance(spread_grads(3).float(), positive_losses(3).float())
    assert out.weights.dtype == torch.float32 and out.direction.dtype == torch.float32
