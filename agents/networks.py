"""Networks of multi-task SAC: ReLU MLPs over [obs | one-hot task id], optionally with one
output layer per task (multi-head SAC)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtrl.config import INITS, Init


def mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class TaskHeads(nn.Module):
    """K output layers, one per task: y = W_t x + b_t for a sample of task t.

    All K heads are computed and the one-hot task id selects one: y = sum_j onehot_j (W_j x + b_j).
    That is one batched einsum (vmap-friendly, no gather by index), and the gradient of a sample
    of task t with respect to head j != t is multiplied by onehot_j = 0, so it is exactly zero.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int):
        super().__init__()
        layers = [nn.Linear(in_dim, out_dim) for _ in range(num_tasks)]  # nn.Linear's init, per head
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # [K, out, in]
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))  # [K, out]

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        y = torch.einsum("...i,koi->...ko", x, self.weight) + self.bias  # [..., K, out]
        return (one_hot.unsqueeze(-1) * y).sum(dim=-2)


class MultiHeadMLP(nn.Module):
    """A shared ReLU trunk and per-task output layers (``TaskHeads``)."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, num_tasks: int):
        super().__init__()
        self.trunk = mlp(in_dim, hidden[:-1], hidden[-1])
        self.heads = TaskHeads(hidden[-1], out_dim, num_tasks)

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        return self.heads(torch.relu(self.trunk(x)), one_hot)


def make_net(in_dim: int, hidden: list[int], out_dim: int, num_tasks: int) -> nn.Sequential | MultiHeadMLP:
    """``num_tasks`` = 0: one shared MLP, called as net(x); else a MultiHeadMLP, net(x, one_hot)."""
    return MultiHeadMLP(in_dim, hidden, out_dim, num_tasks) if num_tasks else mlp(in_dim, hidden, out_dim)


class Actor(nn.Module):
    """Tanh-Gaussian policy: a = tanh(mu + sigma * eps), eps ~ N(0, I).

    The noise ``eps`` is an argument, not drawn inside, so a loss is a deterministic function
    of (parameters, batch, noise): the batched per-task gradients rely on that.
    """

    def __init__(
        self, obs_dim: int, action_dim: int, hidden: list[int], log_std_min: float, log_std_max: float, heads: int = 0
    ):
        """``heads`` = K: one output layer per task, chosen by the one-hot (the last K obs entries)."""
        super().__init__()
        self.net = make_net(obs_dim, hidden, 2 * action_dim, heads)
        self.heads = heads
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of the Gaussian before the tanh."""
        out = self.net(obs, obs[..., -self.heads :]) if self.heads else self.net(obs)
        mean, log_std = out.chunk(2, dim=-1)
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

    def sample(self, obs: Tensor, eps: Tensor) -> Tensor:
        """The action of ``forward`` without its log-probability: what collection needs."""
        mean, log_std = self.distribution(obs)
        return torch.tanh(mean + log_std.exp() * eps)

    def mode(self, obs: Tensor) -> Tensor:
        """The deterministic (mean) action used for evaluation."""
        return torch.tanh(self.distribution(obs)[0])


class TwinCritic(nn.Module):
    """Two independent Q(s, a) networks; forward returns both, stacked: [2, ...]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], heads: int = 0):
        super().__init__()
        self.q1 = make_net(obs_dim + action_dim, hidden, 1, heads)
        self.q2 = make_net(obs_dim + action_dim, hidden, 1, heads)
        self.heads = heads

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        x = torch.cat([obs, action], dim=-1)
        if self.heads:
            one_hot = obs[..., -self.heads :]
            return torch.stack([self.q1(x, one_hot).squeeze(-1), self.q2(x, one_hot).squeeze(-1)])
        return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])


def _hidden_and_output(net: nn.Sequential | MultiHeadMLP) -> tuple[list[nn.Linear], nn.Linear | TaskHeads]:
    if isinstance(net, MultiHeadMLP):
        return [m for m in net.trunk if isinstance(m, nn.Linear)], net.heads
    linears = [m for m in net if isinstance(m, nn.Linear)]
    return linears[:-1], linears[-1]


@torch.no_grad()
def init_network(module: Actor | TwinCritic, scheme: Init, output_bound: float) -> None:
    """Re-initialise an actor or twin critic in place.

    ``he_uniform`` is the reference MT-SAC init (metaworld-algorithms: config/nn.py and
    rl/networks.py): hidden weights U(+-sqrt(6 / fan_in)) (He uniform for ReLU), hidden biases 0,
    and output-layer weights and biases, every head of a multi-head net included, U(+-output_bound)
    (1e-3 for the actor, 3e-3 for the critic), so that initial actions and Q-values are near zero.
    ``torch_default`` keeps nn.Linear's own init (mtrl before the reference settings).
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; valid: {', '.join(INITS)}")
    if scheme == "torch_default":
        return
    for net in [module.net] if isinstance(module, Actor) else [module.q1, module.q2]:
        hidden, output = _hidden_and_output(net)
        for layer in hidden:
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.uniform_(output.weight, -output_bound, output_bound)
        nn.init.uniform_(output.bias, -output_bound, output_bound)
