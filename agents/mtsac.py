"""Multi-task SAC: networks plus the per-task losses, each a [K] tensor.

The batch is stratified, shaped [K, n, ...] (row t = n transitions of task t), so the loss of
task t is the mean over row t and the mean over tasks equals the mean over the whole batch:
with equal weights the update is exactly standard (mean-loss) multi-task SAC.

This module computes losses only. Turning losses into parameter updates (per-task gradients,
balancing, optimizer steps) is the trainer's job, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from agents.networks import Actor, TwinCritic
from mtrl.replay import Batch


@dataclass
class SACConfig:
    hidden_sizes: list[int]
    gamma: float
    tau: float
    actor_lr: float
    critic_lr: float
    alpha_lr: float
    init_log_alpha: float
    log_std_min: float
    log_std_max: float


class MTSAC(nn.Module):
    """Twin critics with Polyak targets, a tanh-Gaussian actor and one learned temperature per
    task (target entropy -|A|). Every network sees the one-hot task id, which is part of obs."""

    def __init__(self, obs_dim: int, action_dim: int, num_tasks: int, cfg: SACConfig):
        super().__init__()
        self.cfg = cfg
        self.num_tasks = num_tasks
        self.action_dim = action_dim
        self.actor = Actor(obs_dim, action_dim, cfg.hidden_sizes, cfg.log_std_min, cfg.log_std_max)
        self.critic = TwinCritic(obs_dim, action_dim, cfg.hidden_sizes)
        self.critic_target = TwinCritic(obs_dim, action_dim, cfg.hidden_sizes)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((num_tasks,), float(cfg.init_log_alpha)))
        self.target_entropy = -float(action_dim)

    def alpha(self) -> Tensor:
        """[K, 1] temperatures, detached: they are constants in the critic and actor losses."""
        return self.log_alpha.detach().exp().unsqueeze(1)

    def noise(self, like: Tensor) -> Tensor:
        """Standard normal noise for actions sampled at the observations ``like``."""
        return torch.randn(*like.shape[:-1], self.action_dim, device=like.device, dtype=like.dtype)

    def critic_losses(self, batch: Batch) -> Tensor:
        """[K]: per task, mean over its rows of (Q1 - y)^2 + (Q2 - y)^2 with the soft target
        y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha_t log pi(a'|s'))."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch.next_obs, self.noise(batch.next_obs))
            next_q = self.critic_target(batch.next_obs, next_action).min(dim=0).values
            soft_next = next_q - self.alpha() * next_log_prob
            target = batch.rewards + self.cfg.gamma * (1.0 - batch.terminated) * soft_next
        q = self.critic(batch.obs, batch.actions)  # [2, K, n]
        return (q - target).pow(2).sum(dim=0).mean(dim=-1)

    def actor_losses(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """[K] losses mean(alpha_t log pi(a|s) - min_i Q_i(s, a)), a ~ pi(.|s) reparameterised,
        and the [K, n] log-probabilities (for the temperature losses). The critic is a constant
        here: only the actor's parameters receive gradient."""
        action, log_prob = self.actor.sample(batch.obs, self.noise(batch.obs))
        q = self.critic(batch.obs, action).min(dim=0).values
        return (self.alpha() * log_prob - q).mean(dim=-1), log_prob

    def alpha_losses(self, log_prob: Tensor) -> Tensor:
        """[K]: mean(-log alpha_t (log pi + target entropy)); task t's loss moves only alpha_t."""
        return -(self.log_alpha.unsqueeze(1) * (log_prob.detach() + self.target_entropy)).mean(dim=-1)

    @torch.no_grad()
    def update_targets(self) -> None:
        """Polyak averaging: target <- (1 - tau) target + tau online."""
        torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.cfg.tau)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions for a [N, obs_dim] array of observations (collection and evaluation)."""
        device = self.log_alpha.device
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        action = self.actor.mode(obs_t) if deterministic else self.actor.sample(obs_t, self.noise(obs_t))[0]
        return action.cpu().numpy()
