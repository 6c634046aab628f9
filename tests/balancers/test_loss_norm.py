"""Static loss normalisation: weights from the early mean |L|, frozen after the warm-up."""

from __future__ import annotations

import torch

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, positive_losses, spread_grads




def test_running_then_frozen_average():
    seq = [
        torch.tensor([1.0, -2.0, 4.0], dtype=DTYPE),
        torch.tensor([3.0, -6.0, 4.0], dtype=DTYPE),
        torch.tensor([100.0, 0.0, 0.01], dtype=DTYPE),  # after the warm-up: ignored
    ]
    b = make_balancer("loss_norm", num_tasks=3, warmup_calls=2)
    w1 = b.balance(None, seq[0]).weights
    # call 1: scales |L(1)| = (1, 2, 4) -> weights prop. to (1, 1/2, 1/4)
    torch.testing.assert_close(w1, torch.tensor([4.0, 2.0, 1.0], dtype=DTYPE) / 7.0)
    w2 = b.balance(None, seq[1]).weights
    # call 2: scales (2, 4, 4) -> prop. to (1/2, 1/4, 1/4)
    torch.testing.assert_close(w2, torch.tensor([2.0, 1.0, 1.0], dtype=DTYPE) / 4.0)
    w3 = b.balance(None, seq[2]).weights
    torch.testing.assert_close(w3, w2)  # frozen


def test_equal_scales_is_ew_and_direction():
    g = spread_grads(4)
    out = make_balancer("loss_norm", num_tasks=4).balance(g, torch.tensor([2.0, -2.0, 2.0, -2.0], dtype=DTYPE))
    torch.testing.assert_close(out.weights, torch.full((4,), 0.25, dtype=DTYPE))
    torch.testing.assert_close(out.direction, g.mean(0))


def test_normalised_losses_have_equal_weighted_scale():
    """After the warm-up, w_t * s_t is the same for every task (each loss divided by its scale)."""
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.01, 1.0, 50.0], dtype=DTYPE)
    b = make_balancer("loss_norm", num_tasks=3, warmup_calls=20)
    for _ in range(25):
        w = b.balance(None, scales * (1 + 0.2 * torch.randn(3, generator=gen, dtype=DTYPE))).weights
    prod = w * b.scales()
    torch.testing.assert_close(prod, prod.mean().expand(3), rtol=1e-6, atol=0)


def test_zero_and_negative_losses_finite():
    b = make_balancer("loss_norm", num_tasks=3, warmup_calls=3)
    g = spread_grads(3)
    for losses in ([0.0, 0.0, 0.0], [0.0, -5.0, 1e-30], [0.0, 5.0, -1e30]):
        out = b.balance(g, torch.tensor(losses, dtype=DTYPE))
        assert torch.isfinite(out.weights).all() and torch.isfinite(out.direction).all()
        assert (out.weights >= 0).all()
        torch.testing.assert_close(out.weights.sum(), torch.tensor(1.0, dtype=DTYPE))


def test_state_dict_round_trip_and_empty_direction():
    gen = torch.Generator().manual_seed(2)
    seq = [torch.rand(3, generator=gen, dtype=DTYPE) for _ in range(8)]
    a = make_balancer("loss_norm", num_tasks=3, warmup_calls=5)
    for losses in seq[:3]:
        a.balance(None, losses)
    b = make_balancer("loss_norm", num_tasks=3, warmup_calls=5)
    b.load_state_dict(a.state_dict())
    for losses in seq[3:]:
        oa, ob = a.balance(None, losses), b.balance(None, losses)
        assert oa.direction.numel() == 0
        torch.testing.assert_close(oa.weights, ob.weights, rtol=0, atol=0)


def test_float32():
    out = make_balancer("loss_norm", num_tasks=3).balance(spread_grads(3).float(), positive_losses(3).float())
    assert out.weights.dtype == torch.float32 and out.direction.dtype == torch.float32
