"""On the CPU the interior-point and Nash-MTL solvers leave their loop once the iterate is
frozen. Every later iteration would have left it unchanged, so the results must be the same
to the bit as the full fixed-iteration run that an accelerator does, and fewer operations must
be dispatched (the exit really happens)."""

from __future__ import annotations

import pytest
import torch

from conftest import degenerate_cases, positive_losses, spread_grads
from mtrl.balancers import make_balancer
from mtrl.balancers._simplex import fixed_iterations
from mtrl.bench import CountOps

SOLVING = ["mgda", "cagrad", "imgrad", "nash_mtl", "imgrad_nash"]


def _run(name: str, calls: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list, list, int]:
    """Directions, weights and operation count of a fresh balancer over a sequence of calls
    (stateful methods carry warm starts from call to call)."""
    balancer = make_balancer(name, num_tasks=calls[0][0].shape[0])
    directions, weights = [], []
    with CountOps() as ops:
        for grads, losses in calls:
            out = balancer.balance(grads, losses)
            directions.append(out.direction)
            weights.append(out.weights)
    return directions, weights, ops.count


@pytest.mark.parametrize("name", SOLVING)
@pytest.mark.parametrize("num_tasks", [2, 3, 10])
def test_leaving_early_changes_no_bit(name, num_tasks):
    calls = [(spread_grads(num_tasks, seed=s), positive_losses(num_tasks, seed=s)) for s in range(3)]
    calls += [(g, positive_losses(3)) for g in degenerate_cases().values()] if num_tasks == 3 else []
    early_d, early_w, early_ops = _run(name, calls)
    with fixed_iterations():
        full_d, full_w, full_ops = _run(name, calls)
    for a, b in zip(early_d + early_w, full_d + full_w):
        assert torch.equal(a, b)
    # K = 2 has closed forms for the min-norm point (mgda, imgrad_nash): no loop to leave there
    assert early_ops < full_ops if num_tasks > 2 else early_ops <= full_ops


def test_fixed_iterations_restores_early_exit_after_an_error():
    with pytest.raises(RuntimeError), fixed_iterations():
        raise RuntimeError
    g, losses = spread_grads(10), positive_losses(10)
    _, _, after = _run("nash_mtl", [(g, losses)])
    with fixed_iterations():
        _, _, full = _run("nash_mtl", [(g, losses)])
    assert after < full
