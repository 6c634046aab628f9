"""Equal weighting (EW): the plain multi-task SAC update.

    d = g0 = (1/K) sum_t g_t,   w_t = 1/K

With stratified batches (equal samples per task) this is exactly the gradient of the mean
loss over the whole batch, i.e. standard multi-task SAC. No hyperparameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import BalanceResult, Balancer


@register
class EW(Balancer):
    name = "ew"

    def _balance(self, grads: Tensor, losses: Tensor) -> BalanceResult:
        weights = torch.full((self.num_tasks,), 1.0 / self.num_tasks, dtype=grads.dtype, device=grads.device)
        return BalanceResult(direction=grads.mean(dim=0), weights=weights)
