"""SAC losses against values computed by hand (numpy, written out from the SAC equations) on
a tiny network, and the equal-weight update against whole-batch (mean-loss) SAC."""

import math

import numpy as np
import pytest
import torch

from agents.mtsac import MTSAC
from mtrl.config import default_sac
from mtrl.replay import Batch

K, N, OBS, ACT, HID = 2, 3, 4, 2, [3]


def _tiny_agent() -> MTSAC:
    torch.manual_seed(0)
    cfg = default_sac()
    cfg.hidden_sizes = HID
    cfg.log_std_min, cfg.log_std_max = -5.0, 2.0
    agent = MTSAC(OBS, ACT, K, cfg).double()
    with torch.no_grad():
        agent.log_alpha.copy_(torch.tensor([0.3, -0.7], dtype=torch.float64))
        for p in agent.critic_target.parameters():  # targets differ from the online critics
            p.add_(0.1 * torch.randn_like(p))
    return agent


def _batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(
        obs=torch.randn(K, N, OBS, generator=g, dtype=torch.float64),
        actions=torch.rand(K, N, ACT, generator=g, dtype=torch.float64) * 2 - 1,
        rewards=torch.rand(K, N, generator=g, dtype=torch.float64),
        terminated=torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64),
        next_obs=torch.randn(K, N, OBS, generator=g, dtype=torch.float64),
    )


def _np_mlp(seq: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    (l1, _, l2) = seq
    h = np.maximum(x @ l1.weight.detach().numpy().T + l1.bias.detach().numpy(), 0.0)
    return h @ l2.weight.detach().numpy().T + l2.bias.detach().numpy()


def _np_sample(agent: MTSAC, obs: np.ndarray, eps: np.ndarray):
    """tanh-Gaussian sample and log-prob, by the textbook formula
    log pi(a|s) = sum_i [log N(u_i; mu_i, sigma_i) - log(1 - tanh(u_i)^2)]."""
    out = _np_mlp(agent.actor.net, obs)
    mu, log_std = out[..., :ACT], np.clip(out[..., ACT:], -5.0, 2.0)
    sigma = np.exp(log_std)
    u = mu + sigma * eps
    log_normal = -((u - mu) ** 2) / (2 * sigma**2) - np.log(sigma * math.sqrt(2 * math.pi))
    log_prob = (log_normal - np.log(1 - np.tanh(u) ** 2)).sum(-1)
    return np.tanh(u), log_prob


def _np_q(critic, obs, act) -> np.ndarray:
    x = np.concatenate([obs, act], -1)
    return np.stack([_np_mlp(critic.q1, x)[..., 0], _np_mlp(critic.q2, x)[..., 0]])


def test_critic_losses_match_hand_computation():
    agent, batch = _tiny_agent(), _batch()
    torch.manual_seed(5)
    losses = agent.critic_losses(batch)
    torch.manual_seed(5)
    eps = torch.randn(K, N, ACT, dtype=torch.float64).numpy()  # the same noise the agent drew
    b = {k: v.numpy() for k, v in vars(batch).items()}
    alpha = np.exp([0.3, -0.7])[:, None]
    next_a, next_logp = _np_sample(agent, b["next_obs"], eps)
    next_q = _np_q(agent.critic_target, b["next_obs"], next_a).min(0)
    y = b["rewards"] + 0.99 * (1 - b["terminated"]) * (next_q - alpha * next_logp)
    q = _np_q(agent.critic, b["obs"], b["actions"])
    expected = ((q[0] - y) ** 2 + (q[1] - y) ** 2).mean(-1) / 2  # the mean over the two critics
    assert losses.shape == (K,)
    np.testing.assert_allclose(losses.detach().numpy(), expected, rtol=1e-10)


def test_actor_and_alpha_losses_match_hand_computation():
    agent, batch = _tiny_agent(), _batch()
    torch.manual_seed(6)
    losses, log_prob = agent.actor_losses(batch)
    alpha_losses = agent.alpha_losses(log_prob)
    torch.manual_seed(6)
    eps = torch.randn(K, N, ACT, dtype=torch.float64).numpy()
    obs = batch.obs.numpy()
    alpha = np.exp([0.3, -0.7])[:, None]
    a, logp = _np_sample(agent, obs, eps)
    q = _np_q(agent.critic, obs, a).min(0)
    np.testing.assert_allclose(losses.detach().numpy(), (alpha * logp - q).mean(-1), rtol=1e-10)
    log_alpha = np.array([0.3, -0.7])[:, None]
    np.testing.assert_allclose(alpha_losses.detach().numpy(), (-log_alpha * (logp - ACT)).mean(-1), rtol=1e-10)


def test_each_temperature_gets_only_its_own_task_gradient():
    agent, batch = _tiny_agent(), _batch()
    _, log_prob = agent.actor_losses(batch)
    grad = torch.autograd.grad(agent.alpha_losses(log_prob)[1], agent.log_alpha)[0]
    assert grad[0] == 0 and grad[1] != 0


def test_actor_loss_gives_no_gradient_to_the_critic_through_the_trainer_step():
    agent, batch = _tiny_agent(), _batch()
    losses, _ = agent.actor_losses(batch)
    grads = torch.autograd.grad(losses.mean(), list(agent.actor.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in agent.critic.parameters())


@pytest.mark.parametrize("which", ["critic", "actor"])
def test_mean_of_per_task_losses_is_whole_batch_sac(which):
    """With equal weights the update is exactly mean-loss SAC: the gradient of the mean of the
    per-task losses equals the gradient of the loss over the flattened, unstratified batch."""
    agent, batch = _tiny_agent(), _batch()
    flat = Batch(*(v.reshape(1, K * N, *v.shape[2:]) for v in vars(batch).values()))
    params = list(getattr(agent, which).parameters())
    agent_flat = _tiny_agent()

    def loss(a, b):
        torch.manual_seed(9)
        out = a.critic_losses(b) if which == "critic" else a.actor_losses(b)[0]
        return out.mean()

    g_tasks = torch.autograd.grad(loss(agent, batch), params)
    # whole-batch SAC: one task axis of size 1, every row with its own task's temperature
    flat_params = list(getattr(agent_flat, which).parameters())
    agent_flat.alpha = lambda: agent.alpha().repeat_interleave(N).unsqueeze(0)  # [1, K*N]
    g_flat = torch.autograd.grad(loss(agent_flat, flat), flat_params)
    for a, b in zip(g_tasks, g_flat):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_collection_samples_the_same_action_as_the_loss_path():
    """``act`` skips the log-probability; with the same noise its action is forward's action,
    so collection draws from exactly the policy that the actor loss trains."""
    agent = _tiny_agent().float()  # act() feeds float32 observations, the training dtype
    obs, eps = torch.randn(5, OBS), torch.randn(5, ACT)
    assert torch.equal(agent.actor.sample(obs, eps), agent.actor(obs, eps)[0])
    torch.manual_seed(3)
    acted = agent.act(obs.numpy(), deterministic=False)
    torch.manual_seed(3)
    assert np.array_equal(acted, agent.actor(obs, agent.noise(obs))[0].detach().numpy())
