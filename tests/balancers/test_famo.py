"""FAMO against a reference loop written like the official code (autograd through softmax,
torch.optim.Adam, log(L + 1e-8)) but with the paper's division by c, plus the negative-loss
treatment."""

from __future__ import annotations

import torch

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, positive_losses, spread_grads




def loss_sequence(k: int, n: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(k, generator=gen, dtype=DTYPE) * 5 + 0.5
    rates = torch.rand(k, generator=gen, dtype=DTYPE) * 0.05
    return [base * torch.exp(-rates * t) * (1 + 0.1 * torch.rand(k, generator=gen, dtype=DTYPE)) for t in range(n)]


def reference_famo(seq, lr=0.025, gamma=0.01, eps=1e-8):
    """Paper Algorithm 1 / official famo.py, with the update of the logits from consecutive calls."""
    k = seq[0].shape[0]
    logits = torch.zeros(k, dtype=DTYPE, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr, weight_decay=gamma)
    prev, out = None, []
    for losses in seq:
        if prev is not None:
            delta = torch.log(prev + eps) - torch.log(losses + eps)
            (d,) = torch.autograd.grad(torch.softmax(logits, -1), logits, grad_outputs=delta)
            opt.zero_grad()
            logits.grad = d
            opt.step()
        z = torch.softmax(logits, -1).detach()
        # the paper: d = c * sum_i z_i grad L_i / L_i with c = 1 / sum_i (z_i / L_i)
        c = 1.0 / (z / (losses + eps)).sum()
        out.append(c * z / (losses + eps))
        prev = losses
    return out


def test_matches_paper_reference_loop():
    k = 4
    seq = loss_sequence(k, 40)
    b = make_balancer("famo", num_tasks=k)
    for ours, ref in zip([b.balance(None, losses).weights for losses in seq], reference_famo(seq)):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_divides_by_c_weights_on_simplex():
    """At the first call z is uniform, so the paper's weights are (1/L) / sum(1/L) -- the MT10
    code's multiplication by c would give (1/L) * sum(1/L) / K instead."""
    losses = positive_losses(5)
    w = make_balancer("famo", num_tasks=5).balance(None, losses).weights
    inv = 1.0 / (losses + 1e-8)
    torch.testing.assert_close(w, inv / inv.sum())
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=DTYPE))


def test_slower_task_gains_weight():
    """Task 0's loss falls fast, task 1's stays: FAMO moves weight to task 1."""
    b = make_balancer("famo", num_tasks=2)
    for t in range(30):
        b.balance(None, torch.tensor([2.0 * 0.9**t, 2.0], dtype=DTYPE))
    z = b.task_weights()
    assert z[1] > 0.6 and z[0] < 0.4


def test_negative_losses_keep_the_paper_sign():
    """Task 0's (negative) loss keeps decreasing, i.e. improves; task 1 stalls at -1. With the
    signed log, task 0 loses weight exactly as a positive, falling loss does; log|L| would
    read task 0 as getting worse and do the opposite."""
    b = make_balancer("famo", num_tasks=2)
    for t in range(30):
        b.balance(None, torch.tensor([-1.0 - 0.2 * t, -1.0], dtype=DTYPE))
    z = b.task_weights()
    assert z[0] < 0.4 and z[1] > 0.6


def test_negative_zero_and_sign_changing_losses_are_finite():
    k = 3
    b = make_balancer("famo", num_tasks=k)
    g = spread_grads(k)
    seq = [
        torch.tensor([-3.0, 0.0, 1.0], dtype=DTYPE),
        torch.tensor([-2.0, 0.0, -1.0], dtype=DTYPE),
        torch.tensor([0.0, 0.0, 0.0], dtype=DTYPE),
        torch.tensor([5.0, -1e-12, 1e12], dtype=DTYPE),
        torch.tensor([-7.0, 1e-30, -1e12], dtype=DTYPE),
    ]
    for losses in seq:
        out = b.balance(g, losses)
        assert torch.isfinite(out.weights).all() and torch.isfinite(out.direction).all()
        assert (out.weights >= 0).all()
        torch.testing.assert_close(out.weights.sum(), torch.tensor(1.0, dtype=DTYPE))
        torch.testing.assert_close(out.direction, g.T @ out.weights)
    assert torch.isfinite(b.logits).all()


def test_grads_none_gives_empty_direction_and_log_losses_folds_in():
    k = 3
    g, losses = spread_grads(k), positive_losses(k)
    a = make_balancer("famo", num_tasks=k, log_losses=True)
    b = make_balancer("famo", num_tasks=k, log_losses=True)
    with_grads = a.balance(g, losses)
    without = b.balance(None, losses)
    assert without.direction.numel() == 0 and without.direction.dtype == losses.dtype
    # the trainer's loss path, sum_t w_t L_t, gives sum_t w_t g_t: the same update
    torch.testing.assert_close(g.T @ without.weights, with_grads.direction)


def test_state_dict_round_trip_continues_identically():
    k = 4
    seq = loss_sequence(k, 12, seed=3)
    a = make_balancer("famo", num_tasks=k)
    for losses in seq[:5]:
        a.balance(None, losses)
    b = make_balancer("famo", num_tasks=k)
    b.load_state_dict(a.state_dict())
    for losses in seq[5:]:
        torch.testing.assert_close(a.balance(None, losses).weights, b.balance(None, losses).weights, rtol=0, atol=0)


def test_float32():
    out = make_balancer("famo", num_tasks=3).balance(spread_grads(3).float(), positive_losses(3).float())
    assert out.weights.dtype == torch.float32 and out.direction.dtype == torch.float32
