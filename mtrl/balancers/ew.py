"""Equal weighting (EW): the plain multi-task SAC update.

    d = g0 = (1/K) sum_t g_t,   w_t = 1/K

With stratified batches (equal samples per task) this is exactly the gradient of the mean
loss over the whole batch, i.e. standard multi-task SAC. No hyperparameters of its own.
EW is linear in the losses, so it needs no per-task gradients (``needs_grads = False``): the
trainer then takes one backward pass of sum_t w_t L_t, and ``direction`` is empty when
``grads`` is None.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import Balancer, BalanceResult


@register
class EW(Balancer):
    name = "ew"
    needs_grads = False
    traceable = True

    def _balance(self, grads: Tensor | None, losses: Tensor) -> BalanceResult:
        weights = torch.full((self.num_tasks,), 1.0 / self.num_tasks, dtype=losses.dtype, device=losses.device)
        if grads is None:
            return BalanceResult(direction=losses.new_empty(0), weights=weights)
        return BalanceResult(direction=grads.mean(dim=0), weights=weights)
