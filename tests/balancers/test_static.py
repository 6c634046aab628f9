"""Static loss weights: w = r / sum(r) for the user's r, given in task order or by task name; the
update is the gradient of sum_t w_t L_t (checked against autograd on a small model); bad weights
are refused with one line; the checkpoint refuses other weights."""

from __future__ import annotations

import math

import pytest
import torch

from mtrl.balancers import make_balancer
from tests.balancers.conftest import DTYPE, positive_losses, spread_grads

NAMES = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3"]


def static(weights=None, names=NAMES, **kwargs):
    return make_balancer("static", num_tasks=len(names), task_names=names, weights=weights, **kwargs)


def test_list_weights_are_normalised_in_task_order():
    out = static([1, 3, 0, 4]).balance(None, positive_losses(4))
    torch.testing.assert_close(out.weights, torch.tensor([1 / 8, 3 / 8, 0.0, 4 / 8], dtype=DTYPE), rtol=0, atol=1e-15)
    assert out.direction.numel() == 0  # loss-only: the trainer backpropagates sum_t w_t L_t


def test_mapping_weights_unnamed_tasks_weigh_one():
    w = static({"pick-place-v3": 4, "reach-v3": 0.5}).balance(None, positive_losses(4)).weights
    raw = torch.tensor([0.5, 1.0, 4.0, 1.0], dtype=DTYPE)
    torch.testing.assert_close(w, raw / raw.sum(), rtol=0, atol=1e-15)


def test_only_ratios_matter_and_equal_weights_are_ew(num_tasks):
    names = [f"t{i}" for i in range(num_tasks)]
    g, losses = spread_grads(num_tasks), positive_losses(num_tasks)
    ew = make_balancer("ew", num_tasks=num_tasks).balance(g, losses)
    for weights in (None, [7.0] * num_tasks, dict.fromkeys(names[:1], 1.0)):
        out = static(weights, names).balance(g, losses)
        torch.testing.assert_close(out.weights, ew.weights, rtol=0, atol=1e-15)
        torch.testing.assert_close(out.direction, ew.direction, rtol=1e-13, atol=1e-14 * g.norm().item())
    scaled = static([2.0 * (i + 1) for i in range(num_tasks)], names).balance(g, losses)
    plain = static([float(i + 1) for i in range(num_tasks)], names).balance(g, losses)
    torch.testing.assert_close(scaled.weights, plain.weights, rtol=1e-15, atol=0)


def test_direction_is_the_gradient_of_the_weighted_loss():
    """Independent of the balancer's algebra: autograd of sum_t w_t L_t on a small model whose task
    losses are quadratics of different scales, against the direction from the per-task gradients."""
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(6, dtype=DTYPE, generator=gen, requires_grad=True)
    targets = torch.randn(4, 6, dtype=DTYPE, generator=gen) * torch.tensor([1e-3, 1.0, 10.0, 1e3], dtype=DTYPE)[:, None]
    losses = ((theta - targets) ** 2).sum(dim=1)
    grads = torch.stack([torch.autograd.grad(losses[t], theta, retain_graph=True)[0] for t in range(4)])
    raw = [0.25, 2.0, 1.0, 0.0]
    out = static(raw).balance(grads, losses.detach())
    w = torch.tensor(raw, dtype=DTYPE) / math.fsum(raw)
    (expected,) = torch.autograd.grad((w * losses).sum(), theta)
    torch.testing.assert_close(out.direction, expected, rtol=1e-13, atol=0)


def test_log_losses_divides_by_the_loss():
    losses = torch.tensor([2.0, 4.0, 8.0, 1.0], dtype=DTYPE)
    w = static([1, 1, 1, 2], log_losses=True).balance(None, losses).weights
    torch.testing.assert_close(w, torch.tensor([0.2, 0.2, 0.2, 0.4], dtype=DTYPE) / (losses + 1e-8))


def test_float32_losses_get_float32_weights_on_their_device():
    out = static([1, 2, 3, 4]).balance(None, positive_losses(4).float())
    assert out.weights.dtype == torch.float32 and out.weights.device == torch.device("cpu")


@pytest.mark.parametrize(
    "weights,message",
    [
        ([1, 2, 3], "weights has 3 entries but the task set has 4 tasks (reach-v3, push-v3"),
        ({"reach-v2": 2}, "weights name task 'reach-v2', which is not in the task set; tasks: reach-v3"),
        ([1, -1, 1, 1], "the weight of push-v3 must be a finite number >= 0, got -1"),
        ([1, 1, float("nan"), 1], "the weight of pick-place-v3 must be a finite number >= 0, got nan"),
        ({"door-open-v3": float("inf")}, "the weight of door-open-v3 must be a finite number >= 0, got inf"),
        ([1, 1, True, 1], "the weight of pick-place-v3 must be a finite number >= 0, got True"),
        ([1, "2", 1, 1], "the weight of push-v3 must be a finite number >= 0, got '2'"),
        ([0, 0, 0, 0], "every weight is 0"),
        (3.0, "weights must be a list in task order or a mapping {task: weight}, got 3.0"),
    ],
)
def test_bad_weights_raise_one_line(weights, message):
    with pytest.raises(ValueError) as err:
        static(weights)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_names_are_needed_for_a_mapping():
    with pytest.raises(ValueError, match="need the task names"):
        make_balancer("static", num_tasks=2, weights={"a": 1})


def test_checkpoint_keeps_the_weights_and_refuses_others():
    b = static([1, 2, 3, 4])
    b.balance(None, positive_losses(4))
    state = b.state_dict()
    again = static([1, 2, 3, 4])
    again.load_state_dict(state)
    torch.testing.assert_close(again.balance(None, positive_losses(4)).weights, b.weights, rtol=0, atol=0)
    with pytest.raises(ValueError, match="trained with weights"):
        static([4, 3, 2, 1]).load_state_dict(state)
