"""Gradient-norm loss scaling: each task's loss scaled inversely to its gradient norm."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import Balancer, BalanceResult, given_grads


@register
class GradNormScaling(Balancer):
    r"""Inverse-gradient-norm loss scaling ("AvgNorm") -- Guo, Yu, Bai, Guo, Ruan, Li & Zheng,
    "Revisit the Imbalance Optimization in Multi-task Learning: An Experimental Analysis",
    arXiv:2509.23915, 2025. Their finding: scaling each task loss by the inverse of its gradient
    norm matches grid-searched static loss weights on dense-prediction benchmarks.

    Exact form used by mtrl (stateless, recomputed every call), with n_t = |g_t| and
    n_bar = (1/K) sum_j n_j:

        w_t = n_bar / (K n_t)     if n_t > eps * n_bar,      else 1/K
        direction = sum_t w_t g_t = (1/K) sum_t n_bar * g_t / |g_t|

    i.e. every task gradient is rescaled to the mean task-gradient norm and then averaged as in
    ``ew`` (equal norms: exactly ``ew``). A task whose gradient is (numerically) zero keeps the
    neutral weight 1/K (its contribution is zero either way), so the weights stay finite; all
    zero: weights 1/K, direction 0.

    Hyperparameters: ``eps`` = 1e-8 (relative to n_bar). The study has no MT10 experiment.

    Where mtrl differs: the study measures the norms on the last shared layer and (as we read
    it) rescales to the norm of the summed gradient; mtrl uses the gradient of all shared
    parameters (available anyway) and the mean task norm. The two targets differ by one scalar
    per step, so the direction is the same; only its length differs.
    """

    name = "grad_norm_scaling"

    def __init__(self, num_tasks: int, eps: float = 1e-8, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if eps <= 0:
            raise ValueError(f"grad_norm_scaling: eps must be > 0, got {eps}")
        self.eps = float(eps)

    def _balance(self, grads_or_none: Tensor | None, losses: Tensor) -> BalanceResult:
        grads = given_grads(grads_or_none, self.name)
        k = grads.shape[0]
        norms = grads.norm(dim=1)
        mean_norm = norms.mean()
        valid = norms > self.eps * mean_norm  # False for every row when all are zero
        safe = torch.where(valid, norms, torch.ones_like(norms))
        w = torch.where(valid, mean_norm / (k * safe), torch.full_like(norms, 1.0 / k))
        return BalanceResult(direction=grads.T @ w, weights=w)
