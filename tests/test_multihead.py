"""Multi-head SAC: each task's output layer gets its own task's gradient and nothing else;
the shared trunk gets the balancer's direction."""

import dataclasses

import pytest
import torch

from agents.mtsac import MTSAC
from mtrl.balancers import make_balancer
from mtrl.config import default_sac, load_config
from mtrl.update import per_task_grads
from mtrl.replay import Batch
from mtrl.trainer import Trainer
from tests.conftest import SMOKE

K, N, OBS, ACT = 3, 5, 4, 2


def critic_step(trainer: Trainer, batch: Batch, target: torch.Tensor) -> tuple:
    """The trainer's critic step (``SACUpdate.loss_step``) on ``batch``: (losses, aux, ok)."""
    update = trainer.update
    ok = torch.ones((), dtype=torch.bool, device=trainer.device)
    return update.loss_step(update.critic, update.fns.critic, (batch.obs, batch.actions, target), trainer.task_success, ok)


def random_batch(num_tasks=K, obs_dim=OBS, action_dim=ACT, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(num_tasks).unsqueeze(1).expand(num_tasks, N, num_tasks)
    obs = torch.cat([torch.randn(num_tasks, N, obs_dim, generator=g), one_hot], dim=-1)
    next_obs = torch.cat([torch.randn(num_tasks, N, obs_dim, generator=g), one_hot], dim=-1)
    return Batch(obs=obs, actions=torch.rand(num_tasks, N, action_dim, generator=g) * 2 - 1,
                 rewards=torch.randn(num_tasks, N, generator=g), terminated=torch.zeros(num_tasks, N),
                 next_obs=next_obs)  # fmt: skip


@pytest.mark.parametrize("net", ["critic", "actor"])
def test_head_j_gets_exactly_zero_gradient_from_task_t(net):
    torch.manual_seed(0)
    agent = MTSAC(OBS + K, ACT, K, dataclasses.replace(default_sac(), hidden_sizes=[8, 8], multi_head=True))
    batch = random_batch()
    shared, heads = agent.split_params(getattr(agent, net))
    assert heads and all(".heads." in name for name in heads) and not any(".heads." in name for name in shared)
    if net == "critic":
        losses = agent.critic_loss({**shared, **heads}, batch.obs, batch.actions, agent.critic_targets(batch))
    else:
        losses = agent.actor_loss({**shared, **heads}, batch.obs, agent.noise(batch.obs), agent.alpha())[0]
    for t in range(K):
        grads = torch.autograd.grad(losses[t], list(heads.values()), retain_graph=True)
        for name, g in zip(heads, grads):  # weight [K, out, in], bias [K, out]
            for j in range(K):
                if j == t:
                    assert g[j].abs().sum() > 0, (name, t)
                else:
                    assert torch.equal(g[j], torch.zeros_like(g[j])), (name, t, j)


@pytest.mark.parametrize("balancer", ["cagrad", "ew"])  # the per-task-gradient path and the loss-only path
def test_trainer_step_gives_shared_params_the_balancer_direction_and_heads_their_own_gradient(balancer, tmp_path):
    cfg = load_config(SMOKE, {"taskset": "gym:MountainCarContinuous-v0,InvertedDoublePendulum-v5", "batch_size": 10,
                              "sac.multi_head": True, "balancer": balancer,
                              "sac.max_grad_norm": 0})  # the direction unclipped (clipping: test_reference_settings.py)  # fmt: skip
    trainer = Trainer(cfg, tmp_path)
    agent, k = trainer.agent, trainer.num_tasks
    batch = random_batch(k, 9, 1, seed=1)
    target = agent.critic_targets(batch)
    shared, heads = trainer.update.critic.params, trainer.update.critic.heads
    def fn(p, o, a, y):
        return agent.critic_loss(p, o, a, y), ()

    grads, losses, _ = per_task_grads(fn, {**shared, **heads}, batch.obs, batch.actions, target)
    shared_grads = grads[:, : sum(p.numel() for p in shared.values())]
    direction = make_balancer(balancer, num_tasks=k).balance(shared_grads, losses).direction
    trainer.update.critic.optimizer.step = lambda: None  # keep the parameters: only .grad is compared
    assert bool(critic_step(trainer, batch, target)[2])  # finite

    written = torch.cat([p.grad.reshape(-1) for p in shared.values()])
    torch.testing.assert_close(written, direction, rtol=1e-5, atol=1e-7)
    if balancer == "cagrad":  # not the plain mean: the balancer really acts on the trunk
        assert not torch.allclose(written, shared_grads.mean(0), rtol=1e-3, atol=0)
    for p in heads.values():
        for t in range(k):
            own = torch.autograd.grad(fn({**shared, **heads}, batch.obs, batch.actions, target)[0][t], p)[0]
            torch.testing.assert_close(p.grad[t], own[t], rtol=1e-5, atol=1e-7)  # weight 1, its own task only
    trainer.envs.close()


def test_multi_head_is_off_by_default_and_single_head_has_no_task_specific_params():
    agent = MTSAC(OBS + K, ACT, K, default_sac())
    assert agent.split_params(agent.critic)[1] == {} and agent.split_params(agent.actor)[1] == {}
    assert list(agent.split_params(agent.actor)[0]) == [name for name, _ in agent.actor.named_parameters()]
