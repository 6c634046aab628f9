"""Networks of multi-task SAC: ReLU MLPs over [obs | one-hot task id]."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Tanh-Gaussian policy: a = tanh(mu + sigma * eps), eps ~ N(0, I).

    The noise ``eps`` is an argument, not drawn inside, so a loss is a deterministic function
    of (parameters, batch, noise): the batched per-task gradients rely on that.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], log_std_min: float, log_std_max: float):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of the Gaussian before the tanh."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def forward(self, obs: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised action and its log-probability (summed over action dims)."""
        mean, log_std = self.distribution(obs)
        pre_tanh = mean + log_std.exp() * eps
        action = torch.tanh(pre_tanh)
        gaussian_log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_det = (2 * (math.log(2) - pre_tanh - nn.functional.softplus(-2 * pre_tanh))).sum(-1)
        return action, gaussian_log_prob - log_det

    def mode(self, obs: Tensor) -> Tensor:
        """The deterministic (mean) action used for evaluation."""
        return torch.tanh(self.distribution(obs)[0])


class TwinCritic(nn.Module):
    """Two independent Q(s, a) networks; forward returns both, stacked: [2, ...]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int]):
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, hidden, 1)
        self.q2 = mlp(obs_dim + action_dim, hidden, 1)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])
