"""PCGrad against the hand-written two-task formula, a literal P-dimensional transcription of
Algorithm 1 (Yu et al. 2020), and torchjd."""

from __future__ import annotations

import pytest
import torch

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, degenerate_cases, positive_losses, spread_grads




def conflicting_grads(k: int, seed: int, dim: int = 20) -> torch.Tensor:
    """spread_grads with every other row pulled against its neighbour, so that many pairs conflict."""
    g = spread_grads(k, dim=dim, seed=seed)
    for i in range(1, k, 2):
        g[i] = -0.8 * g[i - 1] / g[i - 1].norm() * g[i].norm() + 0.6 * g[i]
    return g


def reference_pcgrad(grads: torch.Tensor, orders: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Algorithm 1 on the vectors themselves, as in the official code."""
    projected = []
    for i in range(grads.shape[0]):
        gi = grads[i].clone()
        for j in orders[i].tolist():
            gj = grads[j]
            dot = gi @ gj
            if dot < 0:
                gi = gi - dot / (gj @ gj) * gj
        projected.append(gi)
    out = torch.stack(projected).sum(0)
    return out / grads.shape[0] if reduction == "mean" else out


def test_two_tasks_closed_form():
    g = conflicting_grads(2, seed=3)
    g1, g2 = g[0], g[1]
    dot = g1 @ g2
    assert dot < 0
    p1 = g1 - dot / (g2 @ g2) * g2
    p2 = g2 - dot / (g1 @ g1) * g1
    out = make_balancer("pcgrad", num_tasks=2).balance(g, positive_losses(2))
    torch.testing.assert_close(out.direction, (p1 + p2) / 2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g.T @ out.weights, out.direction, rtol=1e-10, atol=1e-12)
    # the two-task guarantee: the update conflicts with neither task
    assert (g @ out.direction >= -1e-10).all()


def test_no_conflict_is_the_mean():
    g = spread_grads(4, seed=1).abs()  # nonnegative vectors: no pair conflicts
    out = make_balancer("pcgrad", num_tasks=4).balance(g, positive_losses(4))
    torch.testing.assert_close(out.direction, g.mean(0))
    torch.testing.assert_close(out.weights, torch.full((4,), 0.25, dtype=DTYPE))


@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_algorithm_1_over_calls(k, reduction):
    seed = 5
    b = make_balancer("pcgrad", num_tasks=k, seed=seed, reduction=reduction)
    gen = torch.Generator().manual_seed(seed)  # the documented order protocol
    for call in range(3):
        g = conflicting_grads(k, seed=call)
        orders = torch.argsort(torch.rand(k, k, generator=gen), dim=1)
        expected = reference_pcgrad(g, orders, reduction)
        out = b.balance(g, positive_losses(k))
        torch.testing.assert_close(out.direction, expected, rtol=1e-9, atol=1e-10)


def test_order_matters_and_seed_is_used():
    g = conflicting_grads(10, seed=0)
    d0 = make_balancer("pcgrad", num_tasks=10, seed=0).balance(g, positive_losses(10)).direction
    d1 = make_balancer("pcgrad", num_tasks=10, seed=1).balance(g, positive_losses(10)).direction
    assert not torch.allclose(d0, d1)


def test_agrees_with_torchjd_on_two_tasks():
    pytest.importorskip("torchjd")
    from torchjd.aggregation import PCGrad as JDPCGrad

    g = conflicting_grads(2, seed=4)
    ours = make_balancer("pcgrad", num_tasks=2, reduction="sum").balance(g, positive_losses(2)).direction
    theirs = JDPCGrad()(g)  # order is irrelevant for K = 2; torchjd sums the projected gradients
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-8, atol=1e-10)


def test_state_dict_round_trip_continues_identically():
    k = 6
    a = make_balancer("pcgrad", num_tasks=k, seed=3)
    for call in range(2):
        a.balance(conflicting_grads(k, seed=call), positive_losses(k))
    state = a.state_dict()
    b = make_balancer("pcgrad", num_tasks=k, seed=99)
    b.load_state_dict(state)
    for call in range(2, 5):
        g = conflicting_grads(k, seed=call)
        da, db = a.balance(g, positive_losses(k)).direction, b.balance(g, positive_losses(k)).direction
        torch.testing.assert_close(da, db, rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(degenerate_cases()))
def test_degenerate_inputs_finite(case):
    g = degenerate_cases()[case]
    out = make_balancer("pcgrad", num_tasks=3).balance(g, positive_losses(3))
    assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all()
    torch.testing.assert_close(g.T @ out.weights, out.direction)


def test_float32_in_float32_out_and_log_losses():
    g = conflicting_grads(5, seed=2).float()
    losses = positive_losses(5).float()
    out = make_balancer("pcgrad", num_tasks=5).balance(g, losses)
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    # log_losses: the same as PCGrad on grads / (|L| + 1e-8)
    with_log = make_balancer("pcgrad", num_tasks=5, log_losses=True).balance(g, losses).direction
    manual = make_balancer("pcgrad", num_tasks=5).balance(g / (losses.abs() + 1e-8).unsqueeze(1), losses).direction
    torch.testing.assert_close(with_log, manual)
