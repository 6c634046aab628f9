"""Routing balancers to the two losses: one instance each, never shared; hyperparameters to
the method(s) that have them; the log-loss option on losses of either sign."""

import pytest
import torch

from mtrl.balancers import make_balancer
from mtrl.balancers.base import log_loss_scale
from mtrl.config import Config, ConfigError, apply_overrides, make_loss_balancers, validate


def _balancers(**overrides):
    cfg = apply_overrides(Config(), overrides)
    validate(cfg)
    return make_loss_balancers(cfg.balancer, [f"task{i}" for i in range(10)])


def test_shorthand_gives_two_separate_instances_of_one_method():
    b = _balancers(balancer="cagrad")
    assert b["critic"].name == b["actor"].name == "cagrad"
    assert b["critic"] is not b["actor"]


def test_critic_and_actor_may_differ_and_kwargs_go_where_they_apply():
    b = _balancers(**{"balancer.critic": "cagrad", "balancer.actor": "nash_mtl", "balancer.kwargs.c": "0.9",
                      "balancer.actor_kwargs.max_norm": "2"})  # fmt: skip
    assert b["critic"].name == "cagrad" and b["actor"].name == "nash_mtl"
    assert b["critic"].c == 0.9
    assert b["actor"].max_norm == 2.0


def test_per_loss_kwargs_override_shared_ones():
    b = _balancers(balancer="cagrad", **{"balancer.kwargs.c": "0.9", "balancer.critic_kwargs.c": "0.2"})
    assert b["critic"].c == 0.2 and b["actor"].c == 0.9


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"balancer": "cagrad", "balancer.kwargs.nope": "1"}, "valid:"),
        ({"balancer": "cagrad", "balancer.kwargs.c": "high"}, "expects float"),
        ({"balancer.critic": "nope"}, "unknown balancer 'nope'; valid:"),
        ({"balancer": "ew", "balancer.actor_kwargs.c": "0.5"}, "has no hyperparameter 'c'"),
    ],
)
def test_bad_balancer_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(Config(), overrides))


def test_log_loss_scale_is_the_loss_for_positive_and_its_magnitude_for_negative_losses():
    losses = torch.tensor([2.0, -3.0, 0.0], dtype=torch.float64)
    scale = log_loss_scale(losses)
    torch.testing.assert_close(scale, torch.tensor([2.0 + 1e-8, 3.0 + 1e-8, 1e-8], dtype=torch.float64))


def test_log_losses_option_keeps_descent_for_negative_losses():
    """grad L_t / |L_t| keeps each task's gradient direction: with EW the update is
    sum_t g_t / (K |L_t|), a descent direction for every task whatever the sign of its loss
    (dividing by L_t < 0 would turn task 1's part into ascent)."""
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    losses = torch.tensor([0.5, -4.0], dtype=torch.float64)
    out = make_balancer("ew", num_tasks=2, log_losses=True).balance(g, losses)
    torch.testing.assert_close(out.direction, torch.tensor([1.0, 0.25], dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(out.direction, g.T @ out.weights)  # weights refer to the raw gradients
    assert (g @ out.direction > 0).all()
    loss_only = make_balancer("ew", num_tasks=2, log_losses=True).balance(None, losses)
    torch.testing.assert_close(loss_only.weights, out.weights)
    zero = make_balancer("ew", num_tasks=2, log_losses=True).balance(g, torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(zero.direction).all() and torch.isfinite(zero.weights).all()


def test_mapping_valued_hyperparameters_survive_a_yaml_file_and_its_round_trip(tmp_path):
    """static's weights by task name, in a config file, in a stage and back from a saved config.yaml:
    the mapping reaches the balancer whole (not flattened into keys of its own)."""
    import yaml

    from envs.tasksets import get_taskset
    from mtrl.config import load_config, save_config

    path = tmp_path / "static.yaml"
    path.write_text(yaml.safe_dump({"taskset": "MT10", "balancer": {"critic": "static", "actor": "ew",
                                    "critic_kwargs": {"weights": {"push-v3": 4, "reach-v3": 2}}}}))  # fmt: skip
    names = list(get_taskset("MT10").tasks)
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.balancer == cfg.balancer and cfg.balancer.critic_kwargs == {"weights": {"push-v3": 4, "reach-v3": 2}}
    weights = make_loss_balancers(again.balancer, names)["critic"].weights
    assert weights[names.index("push-v3")] == 4 / 14 and weights[names.index("reach-v3")] == 2 / 14
    path.write_text(yaml.safe_dump({"taskset": "MT10", "balancer": {"stages": [
        {"until": 1000, "balancer": "static", "kwargs": {"weights": {"push-v3": 3}}}, {"balancer": "ew"}]}}))  # fmt: skip
    assert load_config(path).balancer.stages[0].kwargs == {"weights": {"push-v3": 3}}
