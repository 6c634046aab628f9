"""Batched per-task gradients (one vmapped pass) against K separate backward passes, and the
gradient statistics against their definitions."""

import itertools

import pytest
import torch

from agents.mtsac import MTSAC
from mtrl.config import default_sac
from mtrl.gradients import gradient_statistics
from mtrl.update import per_task_grads
from mtrl.update import unflatten
from mtrl.replay import Batch

K, N, OBS, ACT = 4, 6, 7, 3


@pytest.fixture
def agent_and_batch():
    torch.manual_seed(0)
    cfg = default_sac()
    cfg.hidden_sizes = [16, 16]
    agent = MTSAC(OBS, ACT, K, cfg).double()
    g = torch.Generator().manual_seed(1)
    batch = Batch(
        obs=torch.randn(K, N, OBS, generator=g, dtype=torch.float64),
        actions=torch.rand(K, N, ACT, generator=g, dtype=torch.float64) * 2 - 1,
        rewards=torch.rand(K, N, generator=g, dtype=torch.float64),
        terminated=torch.zeros(K, N, dtype=torch.float64),
        next_obs=torch.randn(K, N, OBS, generator=g, dtype=torch.float64),
    )
    return agent, batch


def _loop_grads(loss_of_task, params: dict) -> torch.Tensor:
    """The reference: one backward pass per task."""
    rows = []
    for t in range(K):
        grads = torch.autograd.grad(loss_of_task(t), list(params.values()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def test_critic_per_task_grads_equal_k_backward_passes(agent_and_batch):
    agent, batch = agent_and_batch
    params = dict(agent.critic.named_parameters())
    target = agent.critic_targets(batch)
    grads, losses, _ = per_task_grads(
        lambda p, o, a, y: (agent.critic_loss(p, o, a, y), ()), params, batch.obs, batch.actions, target
    )
    expected = _loop_grads(lambda t: agent.critic_loss(params, batch.obs[t], batch.actions[t], target[t]), params)
    assert grads.shape == (K, sum(p.numel() for p in params.values()))
    torch.testing.assert_close(grads, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses, agent.critic_loss(params, batch.obs, batch.actions, target))
    assert all(p.grad is None for p in params.values())


def test_actor_per_task_grads_equal_k_backward_passes(agent_and_batch):
    agent, batch = agent_and_batch
    params = dict(agent.actor.named_parameters())
    eps = agent.noise(batch.obs)
    alpha = agent.alpha()
    grads, losses, log_prob = per_task_grads(agent.actor_loss, params, batch.obs, eps, alpha)
    expected = _loop_grads(lambda t: agent.actor_loss(params, batch.obs[t], eps[t], alpha[t])[0], params)
    torch.testing.assert_close(grads, expected, rtol=1e-10, atol=1e-12)
    full_losses, full_log_prob = agent.actor_loss(params, batch.obs, eps, alpha)
    torch.testing.assert_close(losses, full_losses)
    torch.testing.assert_close(log_prob, full_log_prob)
    # the mean of the rows is the gradient of the mean loss (equal weighting = mean-loss SAC)
    mean_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(full_losses.mean(), list(params.values()))])
    torch.testing.assert_close(grads.mean(0), mean_grad, rtol=1e-10, atol=1e-12)


def test_unflatten_follows_the_parameter_order():
    a, b = torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(4))
    ga, gb = unflatten(torch.arange(10.0), [a, b])
    assert torch.equal(ga, torch.arange(6.0).view(2, 3)) and torch.equal(gb, torch.arange(6.0, 10.0))
    with pytest.raises(ValueError):
        unflatten(torch.arange(11.0), [a, b])


def test_gradient_statistics_match_definitions():
    g = torch.tensor([[3.0, 4.0, 0.0], [0.0, 1.0, 0.0], [-3.0, -4.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    s = gradient_statistics(g)
    torch.testing.assert_close(s["norms"], torch.tensor([5.0, 1.0, 5.0, 2.0], dtype=torch.float64))
    cosines = [torch.dot(g[i], g[j]) / (g[i].norm() * g[j].norm()) for i, j in itertools.combinations(range(4), 2)]
    torch.testing.assert_close(s["cos_mean"], torch.stack(cosines).mean())
    assert float(s["conflict_frac"]) == sum(float(c) < 0 for c in cosines) / len(cosines) == 2 / 6
    assert float(s["norm_ratio"]) == 5.0


def test_gradient_statistics_finite_with_a_zero_row():
    g = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    s = gradient_statistics(g)
    assert all(torch.isfinite(v).all() for v in s.values())


def test_update_statistics_match_definitions():
    """proj_t = g_t.d/|d|, cos_update_t = cos(g_t, d), norm_share_t = |g_t| / sum_j |g_j|, each
    against a plain loop over hand-made rows."""
    g = torch.tensor([[3.0, 4.0, 0.0], [0.0, 1.0, 0.0], [-3.0, -4.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    d = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)  # |d| = 3
    s = gradient_statistics(g, d)
    proj = [float(torch.dot(row, d)) / 3.0 for row in g]
    assert proj == pytest.approx([11 / 3, 2 / 3, -11 / 3, 4 / 3])
    torch.testing.assert_close(s["proj"], torch.tensor(proj, dtype=torch.float64))
    cos = [float(torch.dot(row, d) / (row.norm() * d.norm())) for row in g]
    torch.testing.assert_close(s["cos_update"], torch.tensor(cos, dtype=torch.float64))
    assert float(s["cos_update"][3]) == pytest.approx(2 / 3)
    torch.testing.assert_close(s["norm_share"], torch.tensor([5.0, 1.0, 5.0, 2.0], dtype=torch.float64) / 13)
    # for the direction EW applies, d = mean row, the projections sum to K |d| (= K d.d/|d|)
    mean = g.mean(0)
    assert float(gradient_statistics(g, mean)["proj"].sum()) == pytest.approx(4 * float(mean.norm()))
    assert "proj" not in gradient_statistics(g)  # no direction, no update statistics


def test_update_statistics_zero_direction_and_zero_rows_give_zero():
    g = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    s = gradient_statistics(g, torch.zeros(2))
    assert torch.equal(s["proj"], torch.zeros(2)) and torch.equal(s["cos_update"], torch.zeros(2))
    s = gradient_statistics(torch.zeros(3, 2), torch.tensor([1.0, 1.0]))
    assert torch.equal(s["norm_share"], torch.zeros(3)) and torch.equal(s["cos_update"], torch.zeros(3))
    assert all(torch.isfinite(v).all() for v in s.values())
