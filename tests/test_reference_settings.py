"""The reference MT-SAC settings (sac.max_grad_norm, sac.adam_eps, sac.init; the critic loss's
scale) and the presets that use them: the keys load, reach the one update path, and are
checked; the MTMHSAC and parameter-scaled presets load and train."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from agents.mtsac import MTSAC
from agents.networks import Actor, MultiHeadMLP
from mtrl.cli import main
from mtrl.config import ConfigError, default_sac, load_config
from mtrl.logger import RunLogger
from mtrl.trainer import Trainer
from tests.conftest import REPO, SMOKE
from tests.test_multihead import random_batch, critic_step

GYM2 = "gym:MountainCarContinuous-v0,InvertedDoublePendulum-v5"  # two tasks that build in a blink


# --- loading and bad values ---------------------------------------------------------------------
def test_defaults_are_the_reference_values_and_keys_override():
    cfg = load_config(SMOKE)
    assert (cfg.sac.max_grad_norm, cfg.sac.adam_eps, cfg.sac.init) == (1.0, 1e-5, "he_uniform")
    cfg = load_config(SMOKE, {"sac.max_grad_norm": "0.5", "sac.adam_eps": "1e-8", "sac.init": "torch_default"})
    assert (cfg.sac.max_grad_norm, cfg.sac.adam_eps, cfg.sac.init) == (0.5, 1e-8, "torch_default")
    for off in ("none", "None", "0"):
        assert load_config(SMOKE, {"sac.max_grad_norm": off}).sac.max_grad_norm == 0.0


@pytest.mark.parametrize("override, message", [
    ("sac.max_grad_norm=-1", "'sac.max_grad_norm' must be >= 0"),
    ("sac.adam_eps=0", "'sac.adam_eps' must be > 0"),
    ("sac.init=xavier", "'sac.init' is 'xavier'; valid: he_uniform, torch_default"),
    ("sac.max_grad_norm=big", "'sac.max_grad_norm' expects float"),
])  # fmt: skip
def test_bad_values_exit_2_with_one_line(override, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run_dir), override]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run_dir.exists()


@pytest.mark.parametrize("preset", ["mt10", "mt50", "mt10_mh", "mt50_mh", "mt10_mh_w1024", "mt10_mh_w4096"])
def test_protocol_presets_take_the_reference_values(preset):
    cfg = load_config(REPO / "configs" / f"{preset}.yaml")
    assert (cfg.sac.max_grad_norm, cfg.sac.adam_eps, cfg.sac.init) == (1.0, 1e-5, "he_uniform")
    assert cfg.sac.multi_head == ("_mh" in preset)
    width = {"mt10_mh_w1024": 1024, "mt10_mh_w4096": 4096}.get(preset, 400)
    assert cfg.sac.hidden_sizes == [width] * 3
    # everything but the width is the MTMHSAC / MTSAC protocol of the preset's task set
    base = load_config(REPO / "configs" / ("mt50.yaml" if "mt50" in preset else "mt10.yaml"))
    base.sac.hidden_sizes, base.sac.multi_head = cfg.sac.hidden_sizes, cfg.sac.multi_head
    assert cfg == base


# --- Adam eps -------------------------------------------------------------------------------------
def test_adam_eps_reaches_every_optimizer(tmp_path):
    trainer = Trainer(load_config(SMOKE, {"taskset": GYM2, "batch_size": 10, "sac.adam_eps": 3e-6}), tmp_path)
    optimizers = [*(loss.optimizer for loss in trainer.update.losses), trainer.update.alpha_opt]
    assert len(optimizers) == 3
    for opt in optimizers:
        assert [g["eps"] for g in opt.param_groups] == [3e-6] * len(opt.param_groups)
    # every trainable parameter of the agent is in one of them
    stepped = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
    assert stepped == {id(p) for p in trainer.agent.parameters() if p.requires_grad}
    trainer.envs.close()


# --- clipping -------------------------------------------------------------------------------------
def _grads_reaching_adam(balancer: str, max_grad_norm: float, multi_head: bool, tmp_path) -> list[torch.Tensor]:
    """The critic gradients present at optimizer.step() for one update on a fixed batch."""
    cfg = load_config(SMOKE, {"taskset": GYM2, "batch_size": 10, "balancer": balancer, "seed": 3,
                              "sac.multi_head": multi_head, "sac.max_grad_norm": max_grad_norm})  # fmt: skip
    trainer = Trainer(cfg, tmp_path / f"{balancer}_{max_grad_norm}")
    agent, opt = trainer.agent, trainer.update.critic.optimizer
    batch = random_batch(trainer.num_tasks, 9, 1, seed=1)
    target = agent.critic_targets(batch)
    seen = []
    opt.step = lambda: seen.extend(p.grad.clone() for g in opt.param_groups for p in g["params"])
    assert critic_step(trainer, batch, target) is not None
    trainer.envs.close()
    return seen


@pytest.mark.parametrize("balancer, multi_head", [("ew", False), ("cagrad", True), ("nash_mtl", True)])
def test_clipping_bounds_the_global_norm_of_what_reaches_adam(balancer, multi_head, tmp_path):
    free = _grads_reaching_adam(balancer, 0.0, multi_head, tmp_path)  # same seed: same init, same batch
    free_norm = torch.cat([g.reshape(-1) for g in free]).norm().item()
    c = free_norm / 4  # binding: the clip must act
    clipped = _grads_reaching_adam(balancer, c, multi_head, tmp_path)
    assert len(clipped) == len(free) == 12  # q1, q2: weight and bias of 3 layers (or 2 + the heads) each
    # the clip_grad_norm_ arithmetic, written out: g * min(1, c / (|g| + 1e-6)) over all of them at once
    scale = min(1.0, c / (free_norm + 1e-6))
    for got, g in zip(clipped, free):
        torch.testing.assert_close(got, g * scale, rtol=1e-5, atol=1e-8)
    assert torch.cat([g.reshape(-1) for g in clipped]).norm().item() == pytest.approx(c, rel=1e-5)
    # a bound above the norm changes nothing
    loose = _grads_reaching_adam(balancer, free_norm * 2, multi_head, tmp_path)
    for got, g in zip(loose, free):
        torch.testing.assert_close(got, g, rtol=1e-6, atol=0)


# --- critic loss scale ----------------------------------------------------------------------------
@pytest.mark.parametrize("balancer", ["ew", "pcgrad"])  # the loss step and the per-task gradient path
def test_critic_loss_is_the_reference_mean_over_the_two_critics(balancer, tmp_path):
    """The per-task critic losses the balancer gets, and EW's unclipped gradient, against the
    reference's ((q_pred - y) ** 2).mean() over the stacked critics, computed here with F.linear
    and relu on copies of the critic's weights (a sum over the critics gives exactly twice)."""
    cfg = load_config(SMOKE, {"taskset": GYM2, "batch_size": 10, "balancer": balancer, "seed": 3,
                              "sac.max_grad_norm": 0})  # fmt: skip
    trainer = Trainer(cfg, tmp_path)
    agent, opt, K = trainer.agent, trainer.update.critic.optimizer, trainer.num_tasks
    batch = random_batch(K, 9, 1, seed=1)
    target = agent.critic_targets(batch)
    names = [name for name, _ in agent.critic.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in agent.critic.parameters()]

    def q(layers: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        for i in range(0, len(layers), 2):
            x = torch.nn.functional.linear(x, layers[i], layers[i + 1])
            x = torch.relu(x) if i + 2 < len(layers) else x.squeeze(-1)
        return x

    x = torch.cat([batch.obs, batch.actions], dim=-1)
    q1 = q([w for n, w in zip(names, weights) if n.startswith("q1.")], x)
    q2 = q([w for n, w in zip(names, weights) if n.startswith("q2.")], x)
    q_pred = torch.stack([q1, q2])  # [2, K, n], the reference's ensemble axis first
    expected = torch.stack([((q_pred[:, t] - target[t]) ** 2).mean() for t in range(K)])
    # the reference's unsplit loss over the whole (stratified) batch: what EW's update descends
    expected_grads = torch.autograd.grad(((q_pred - target) ** 2).mean(), weights)

    seen = []
    opt.step = lambda: seen.extend(p.grad.clone() for g in opt.param_groups for p in g["params"])
    losses, _, ok = critic_step(trainer, batch, target)
    trainer.envs.close()
    assert bool(ok) and losses.shape == (K,)
    torch.testing.assert_close(losses, expected.detach(), rtol=1e-5, atol=0)
    if balancer == "ew":
        assert len(seen) == len(expected_grads) == 12
        for got, want in zip(seen, expected_grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)


# --- init -----------------------------------------------------------------------------------------
def _layers(module) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(weight, bias, is_output) of every layer of an actor or twin critic."""
    out = []
    for net in [module.net] if isinstance(module, Actor) else [module.q1, module.q2]:
        trunk = net.trunk if isinstance(net, MultiHeadMLP) else net
        linears = [m for m in trunk if isinstance(m, torch.nn.Linear)]
        if isinstance(net, MultiHeadMLP):
            out += [(m.weight, m.bias, False) for m in linears] + [(net.heads.weight, net.heads.bias, True)]
        else:
            out += [(m.weight, m.bias, False) for m in linears[:-1]] + [(linears[-1].weight, linears[-1].bias, True)]
    return out


@pytest.mark.parametrize("multi_head", [False, True])
def test_he_uniform_init(multi_head):
    torch.manual_seed(0)
    agent = MTSAC(30, 4, 5, dataclasses.replace(default_sac(), hidden_sizes=[256, 128], multi_head=multi_head))
    for module, out_bound in ((agent.actor, 1e-3), (agent.critic, 3e-3)):
        layers = _layers(module)
        assert sum(is_out for *_, is_out in layers) == (1 if module is agent.actor else 2)
        for w, b, is_out in layers:
            if is_out:
                for t in (w, b):  # the reference draws the output biases too: U(+-out_bound), not 0
                    assert 0 < t.abs().max() <= out_bound
                    assert t.numel() < 100 or t.abs().max() > 0.9 * out_bound
            else:
                bound = math.sqrt(6 / w.shape[-1])  # He uniform: gain sqrt(2) x sqrt(3 / fan_in)
                assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
                assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
                assert torch.equal(b, torch.zeros_like(b))
    assert torch.equal(agent.critic_target.q1[0].weight if not multi_head else agent.critic_target.q1.trunk[0].weight,
                       agent.critic.q1[0].weight if not multi_head else agent.critic.q1.trunk[0].weight)  # fmt: skip


def test_torch_default_init_keeps_nn_linear():
    torch.manual_seed(0)
    agent = MTSAC(30, 4, 5, dataclasses.replace(default_sac(), hidden_sizes=[256, 128], init="torch_default"))
    for w, b, is_out in _layers(agent.critic):
        bound = 1 / math.sqrt(w.shape[-1])  # nn.Linear: U(+-1/sqrt(fan_in)) for weights and biases
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound and b.abs().max() > 0


def test_unknown_init_in_code_raises():
    with pytest.raises(ValueError, match="valid: he_uniform, torch_default"):
        MTSAC(30, 4, 5, dataclasses.replace(default_sac(), init="orthogonal"))
    with pytest.raises(ConfigError):
        load_config(SMOKE, {"sac.init": "orthogonal"})


# --- the scaled presets train -----------------------------------------------------------------------
CUT = {"device": "cpu", "compile": "false", "batch_size": 20, "buffer_size": 200, "warmup_env_steps": 30, "total_env_steps": 60}


def _few_updates(preset: str, tmp_path, **overrides) -> Trainer:
    """Three vector steps of warm-up, then three with an update each, on MT10 with the preset's
    networks; returns the trainer after checking that the updates moved every parameter."""
    cfg = load_config(REPO / "configs" / f"{preset}.yaml", {**CUT, **overrides})
    trainer = Trainer(cfg, tmp_path)
    trainer.logger = RunLogger(tmp_path, trainer.task_names)  # the first update logs gradient statistics
    before = [p.detach().clone() for p in trainer.agent.parameters()]
    obs, _ = trainer.envs.reset()
    done = np.zeros(trainer.num_tasks, dtype=bool)
    for _ in range(6):
        obs, _, terminated, truncated, _ = trainer.vector_step(obs, done)
        done = terminated | truncated
    assert trainer.counters.updates == 3 and trainer.counters.nonfinite_skipped == 0
    after = list(trainer.agent.parameters())
    assert all(torch.isfinite(p).all() and not torch.equal(p, q) for p, q in zip(after, before))
    trainer.logger.close()
    trainer.envs.close()
    return trainer


def test_width_1024_preset_trains_at_its_width(tmp_path):
    trainer = _few_updates("mt10_mh_w1024", tmp_path)
    assert trainer.agent.critic.q1.trunk[-1].weight.shape == (1024, 1024)
    assert trainer.agent.actor.net.heads.weight.shape == (10, 8, 1024)


def test_width_4096_preset_trains_with_its_width_cut(tmp_path):
    # At width 4096 the first update (per-task gradients for the statistics: 10 x 67M floats)
    # took 100 s and 10 GB on the 2-core CPU; everything but the width is exercised here, and
    # the full width by the slow test below.
    trainer = _few_updates("mt10_mh_w4096", tmp_path, **{"sac.hidden_sizes": "[64, 64, 64]"})
    assert trainer.agent.actor.net.heads.weight.shape == (10, 8, 64)


@pytest.mark.slow
def test_width_4096_preset_trains_at_its_width(tmp_path):
    trainer = _few_updates("mt10_mh_w4096", tmp_path)
    assert trainer.agent.critic.q1.trunk[-1].weight.shape == (4096, 4096)
