"""Multi-task SAC: networks plus the per-task losses, each a [K] tensor.

The batch is stratified, shaped [K, n, ...] (row t = n transitions of task t), so the loss of
task t is the mean over row t and the mean over tasks equals the mean over the whole batch:
with equal weights the update is exactly standard (mean-loss) multi-task SAC.

This module computes losses only. Turning losses into parameter updates (per-task gradients,
balancing, optimizer steps) is the trainer's job, in one place.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from agents.networks import Actor, TaskHeads, TwinCritic, init_network
from mtrl.config import SACConfig
from mtrl.replay import Batch

# How critic_loss reduces over the twin critics, as summary.json records it ("critic_loss"; runs
# without the key summed them). "mean" is the reference's, rainx0r/metaworld-algorithms @30c9991,
# metaworld_algorithms/rl/algorithms/mtsac.py:302 (MTSAC.update_critic):
# ``loss = ((q_pred - next_q_value) ** 2).mean()``, q_pred stacked over the ensemble of critics.
CRITIC_LOSS = "mean"


class MTSAC(nn.Module):
    """Twin critics with Polyak targets, a tanh-Gaussian actor and one learned temperature per
    task (target entropy -|A|). Every network sees the one-hot task id, which is part of obs."""

    def __init__(self, obs_dim: int, action_dim: int, num_tasks: int, cfg: SACConfig):
        super().__init__()
        self.cfg = cfg
        self.num_tasks = num_tasks
        self.action_dim = action_dim
        heads = num_tasks if cfg.multi_head else 0
        self.actor = Actor(obs_dim, action_dim, cfg.hidden_sizes, cfg.log_std_min, cfg.log_std_max, heads)
        self.critic = TwinCritic(obs_dim, action_dim, cfg.hidden_sizes, heads)
        init_network(self.actor, cfg.init, output_bound=1e-3)
        init_network(self.critic, cfg.init, output_bound=3e-3)
        self.critic_target = TwinCritic(obs_dim, action_dim, cfg.hidden_sizes, heads)
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

    # Each loss is written as a function of explicit (parameters, inputs), reducing only the
    # last (sample) axis: on [K, n, ...] inputs it gives the [K] per-task losses, on one task's
    # [n, ...] slice a scalar, which is what torch.func vmaps over for per-task gradients.

    @torch.no_grad()
    def critic_targets(self, batch: Batch, eps: Tensor | None = None) -> Tensor:
        """[K, n] soft targets y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha_t log pi(a'|s')),
        a' drawn with the standard normal noise ``eps`` (drawn here when not given: the trainer
        draws it outside, so that its compiled and eager updates use the same numbers)."""
        eps = self.noise(batch.next_obs) if eps is None else eps
        next_action, next_log_prob = self.actor(batch.next_obs, eps)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=0).values
        soft_next = next_q - self.alpha() * next_log_prob
        return batch.rewards + self.cfg.gamma * (1.0 - batch.terminated) * soft_next

    def critic_loss(self, params: dict[str, Tensor], obs: Tensor, actions: Tensor, target: Tensor) -> Tensor:
        """mean over samples and over the two critics of (Q_i - y)^2, i.e. (L_Q1 + L_Q2) / 2."""
        q = functional_call(self.critic, params, (obs, actions))  # [2, ..., n]
        # The mean over the critics too, as the reference MT-SAC (see CRITIC_LOSS): the sum doubles
        # the loss and its gradient, so the clip at sac.max_grad_norm and the balancers would see
        # twice the reference's values
        return (q - target).pow(2).mean(dim=(0, -1))

    def actor_loss(self, params: dict[str, Tensor], obs: Tensor, eps: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """mean over samples of alpha_t log pi(a|s) - min_i Q_i(s, a), a = tanh(mu + sigma eps),
        and the log-probabilities (for the temperature losses). ``alpha`` broadcasts against
        [..., n]. The critic is a constant here: only the actor's parameters get gradient."""
        action, log_prob = functional_call(self.actor, params, (obs, eps))
        q = functional_call(self.critic, self.critic_constants(), (obs, action)).min(dim=0).values
        return (alpha * log_prob - q).mean(dim=-1), log_prob

    def critic_losses(self, batch: Batch) -> Tensor:
        """[K] per-task critic losses on a stratified batch."""
        return self.critic_loss(
            dict(self.critic.named_parameters()), batch.obs, batch.actions, self.critic_targets(batch)
        )

    def actor_losses(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """[K] per-task actor losses and the [K, n] log-probabilities."""
        return self.actor_loss(dict(self.actor.named_parameters()), batch.obs, self.noise(batch.obs), self.alpha())

    def split_params(self, module: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(shared, task-specific) named parameters of the actor or critic. Task-specific ones
        are the per-task output layers of multi-head SAC; they are left out of balancing."""
        specific = {
            f"{name}.{p}"
            for name, m in module.named_modules()
            if isinstance(m, TaskHeads)
            for p, _ in m.named_parameters()
        }
        named = dict(module.named_parameters())
        return (
            {k: v for k, v in named.items() if k not in specific},
            {k: v for k, v in named.items() if k in specific},
        )

    def critic_constants(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.critic.named_parameters()}

    def alpha_losses(self, log_prob: Tensor) -> Tensor:
        """[K]: mean(-log alpha_t (log pi + target entropy)); task t's loss moves only alpha_t."""
        return -(self.log_alpha.unsqueeze(1) * (log_prob.detach() + self.target_entropy)).mean(dim=-1)

    @torch.no_grad()
    def update_targets(self, ok: torch.Tensor) -> None:
        """Polyak averaging: target <- (1 - tau) target + tau online; with ``ok`` (a 0-dim bool
        on the device) False, the targets stay (tau becomes 0 on the device: no host read)."""
        targets: list[Tensor] = list(self.critic_target.parameters())
        online: list[Tensor] = list(self.critic.parameters())
        tau = ok.to(targets[0].dtype) * self.cfg.tau
        # one weight tensor per pair, kept on the device; torch's stub knows only scalar weights
        torch._foreach_lerp_(targets, online, [tau] * len(targets))  # type: ignore[list-item]

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions for a [N, obs_dim] array of observations (collection and evaluation)."""
        device = self.log_alpha.device
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        action = self.actor.mode(obs_t) if deterministic else self.actor.sample(obs_t, self.noise(obs_t))
        return action.cpu().numpy()
