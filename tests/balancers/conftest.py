"""Shared inputs for the balancer tests: random gradient matrices whose task norms differ by
up to two orders of magnitude, and the degenerate cases every method must survive."""

from __future__ import annotations

import pytest
import torch

DTYPE = torch.float64  # the math checks run in double; the trainer runs float32


@pytest.fixture(autouse=True)
def _one_thread():
    """K x K solver work is tiny: handing it between threads costs more than it saves, 10-50x
    on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def spread_grads(num_tasks: int, dim: int = 20, seed: int = 0, spread: float = 100.0) -> torch.Tensor:
    """[K, P] gaussian rows rescaled so that task norms span [1, spread] (log-uniformly)."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(num_tasks, dim, generator=gen, dtype=DTYPE)
    norms = torch.logspace(0, torch.log10(torch.tensor(spread)).item(), num_tasks, dtype=DTYPE)
    perm = torch.randperm(num_tasks, generator=gen)
    return g / g.norm(dim=1, keepdim=True) * norms[perm].unsqueeze(1)


def positive_losses(num_tasks: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1000)
    return torch.rand(num_tasks, generator=gen, dtype=DTYPE) * 10 + 0.1


@pytest.fixture(params=[2, 3, 10], ids=lambda k: f"K{k}")
def num_tasks(request) -> int:
    return request.param


@pytest.fixture(params=[0, 1, 2], ids=lambda s: f"seed{s}")
def grads_and_losses(request, num_tasks):
    return spread_grads(num_tasks, seed=request.param), positive_losses(num_tasks, seed=request.param)


def degenerate_cases(num_tasks: int = 3, dim: int = 8) -> dict[str, torch.Tensor]:
    g = spread_grads(num_tasks, dim=dim, seed=7, spread=10.0)
    zero_row = g.clone()
    zero_row[0] = 0.0
    duplicate = g.clone()
    duplicate[1] = duplicate[0]
    opposite = g.clone()
    opposite[1] = -opposite[0]
    return {
        "zero_row": zero_row,
        "duplicate_rows": duplicate,
        "opposite_rows": opposite,
        "all_zero": torch.zeros_like(g),
    }


@pytest.fixture(params=["zero_row", "duplicate_rows", "opposite_rows", "all_zero"])
def degenerate_grads(request) -> torch.Tensor:
    return degenerate_cases()[request.param]
