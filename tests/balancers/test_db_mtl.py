"""DB-MTL against a straightforward reference loop (EMA of log-loss gradients recomputed by
hand, then magnitude balancing), its treatment of negative losses, and its checkpoint state."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import DTYPE, spread_grads
from mtrl.balancers import make_balancer


def sequence(num_tasks: int, calls: int, negative: bool = False):
    gen = torch.Generator().manual_seed(num_tasks + 100 * calls)
    out = []
    for t in range(calls):
        g = spread_grads(num_tasks, dim=16, seed=40 + t)
        losses = torch.rand(num_tasks, generator=gen, dtype=DTYPE) * 5 + 0.05
        if negative:  # SAC actor losses: mixed signs
            losses = losses * torch.where(torch.arange(num_tasks) % 2 == 0, -1.0, 1.0).to(DTYPE)
        out.append((g, losses))
    return out


def reference(seq, beta: float, beta_sigma: float):
    """Plain loop over calls k = 1, 2, ...: the equations of the DB-MTL docstring, |L| for the log scale."""
    buf = np.zeros_like(seq[0][0].numpy())
    results = []
    for k, (g, losses) in enumerate(seq, start=1):
        gl = g.numpy() / (np.abs(losses.numpy()) + 1e-8)[:, None]
        beta_k = beta / k**beta_sigma
        buf = beta_k * buf + (1 - beta_k) * gl
        norms = np.linalg.norm(buf, axis=1)
        alpha = norms.max() / (norms + 1e-8)
        results.append((alpha @ buf, alpha))
    return results


@pytest.mark.parametrize("beta,beta_sigma", [(0.9, 0.0), (0.9, 0.5), (0.5, 1.0), (0.0, 0.0)])
@pytest.mark.parametrize("negative", [False, True], ids=["pos", "mixed"])
def test_matches_reference_loop(num_tasks, beta, beta_sigma, negative):
    seq = sequence(num_tasks, 6, negative)
    b = make_balancer("db_mtl", num_tasks=num_tasks, beta=beta, beta_sigma=beta_sigma)
    for t, ((g, losses), (d_ref, w_ref)) in enumerate(zip(seq, reference(seq, beta, beta_sigma))):
        out = b.balance(g, losses)
        np.testing.assert_allclose(out.direction.numpy(), d_ref, rtol=1e-12, atol=1e-12, err_msg=f"call {t}")
        np.testing.assert_allclose(out.weights.numpy(), w_ref, rtol=1e-12, err_msg=f"call {t}")


def test_first_call_equalises_log_gradient_norms():
    """buf_1 = (1 - beta) g / |L|; every task's buffer is rescaled to the largest norm."""
    g = spread_grads(4, dim=10, seed=2)
    losses = torch.tensor([2.0, -0.5, 10.0, 1.0], dtype=DTYPE)
    out = make_balancer("db_mtl", num_tasks=4).balance(g, losses)
    scaled = 0.1 * g / losses.abs().unsqueeze(1)
    norms = scaled.norm(dim=1)
    expected = (norms.max() / norms).unsqueeze(1) * scaled
    np.testing.assert_allclose(out.direction.numpy(), expected.sum(0).numpy(), rtol=1e-5)  # 1e-8 guards


def test_negative_loss_keeps_descent_direction():
    """Dividing by L < 0 would flip the task into ascent; |L| keeps g_t's direction."""
    g = torch.zeros(2, 3, dtype=DTYPE)
    g[0, 0], g[1, 1] = 1.0, 1.0
    out = make_balancer("db_mtl", num_tasks=2).balance(g, torch.tensor([-3.0, 2.0], dtype=DTYPE))
    assert float(out.direction @ g[0]) > 0 and float(out.direction @ g[1]) > 0
    # a loss of exactly zero stays finite
    out = make_balancer("db_mtl", num_tasks=2).balance(g, torch.tensor([0.0, 2.0], dtype=DTYPE))
    assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all()


def test_log_losses_option_is_not_applied_twice():
    seq = sequence(3, 4, negative=True)
    a = make_balancer("db_mtl", num_tasks=3)
    b = make_balancer("db_mtl", num_tasks=3, log_losses=True)
    for g, losses in seq:
        oa, ob = a.balance(g, losses), b.balance(g, losses)
        np.testing.assert_allclose(ob.direction.numpy(), oa.direction.numpy(), rtol=1e-12)


def test_state_dict_round_trip():
    seq = sequence(10, 7)
    a = make_balancer("db_mtl", num_tasks=10, beta_sigma=0.5)
    for g, losses in seq[:3]:
        a.balance(g, losses)
    state = copy.deepcopy(a.state_dict())
    assert state["step"] == 3 and state["buffer"].shape == (10, 16)
    b = make_balancer("db_mtl", num_tasks=10, beta_sigma=0.5)
    b.load_state_dict(state)
    for g, losses in seq[3:]:
        oa, ob = a.balance(g, losses), b.balance(g, losses)
        assert torch.equal(oa.direction, ob.direction) and torch.equal(oa.weights, ob.weights)
    # a fresh instance (no state) gives a different result: the state matters
    g, losses = seq[3]
    fresh = make_balancer("db_mtl", num_tasks=10, beta_sigma=0.5).balance(g, losses).direction
    b2 = make_balancer("db_mtl", num_tasks=10, beta_sigma=0.5)
    b2.load_state_dict(state)
    assert not torch.allclose(b2.balance(g, losses).direction, fresh)


def test_float32_buffer_dtype():
    g, losses = sequence(3, 1)[0]
    b = make_balancer("db_mtl", num_tasks=3)
    out = b.balance(g.float(), losses.float())
    assert out.direction.dtype == torch.float32 and b.buffer.dtype == torch.float32


def test_gradient_shape_change_is_an_error():
    b = make_balancer("db_mtl", num_tasks=2)
    b.balance(torch.ones(2, 4, dtype=DTYPE), torch.ones(2, dtype=DTYPE))
    with pytest.raises(ValueError, match="shape"):
        b.balance(torch.ones(2, 5, dtype=DTYPE), torch.ones(2, dtype=DTYPE))


@pytest.mark.parametrize("bad", [{"beta": 1.0}, {"beta": -0.1}, {"beta_sigma": -1.0}])
def test_invalid_hyperparameters(bad):
    with pytest.raises(ValueError):
        make_balancer("db_mtl", num_tasks=3, **bad)
