"""Static loss normalisation: every loss divided by its early average magnitude (loss-only)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._loss_weighting import loss_only_result, state_dtype
from mtrl.balancers.base import Balancer, BalanceResult, clone_or_none, skipped_result


@register
class LossNorm(Balancer):
    r"""Static loss normalisation: L_t / s_t with s_t the task's early average loss magnitude.

    The common hand-tuning substitute for static task weights ("divide each loss by its value
    early in training"). It has no single canonical paper or official code, so mtrl fixes the
    form:

        s_t   = mean of |L_t| over the first ``warmup_calls`` calls of balance()
                (frozen afterwards; during the first calls, the mean over the calls so far)
        w_t   = (1 / (s_t + eps)) / sum_j 1 / (s_j + eps)
        direction = sum_t w_t g_t

    The weights are normalised to sum to 1 (a convex combination, the step-size scale of
    ``ew``; with equal scales it *is* ``ew``) -- the un-normalised sum_t L_t / s_t differs
    only by a constant factor once s is frozen. |L| rather than L so that losses that are
    negative or change sign (the SAC actor loss) get their magnitude as scale, never a negative
    or near-zero-by-cancellation divisor. During the first calls the weights use the running
    average of the calls seen so far (call 1: 1 / |L(1)|), so there is no switch from 1/K.

    Hyperparameters: ``warmup_calls`` = 1000 (N; on MT10 the first update comes after the 4000
    random-action warm-up steps, so the average covers the first 1000 updates), ``eps`` = 1e-8.
    No MT10 result in the literature.

    ``needs_grads = False``: with ``grads=None`` the direction is ``torch.empty(0)`` and the
    trainer backpropagates ``sum_t weights_t L_t``. State (checkpointed): the running sum of
    |L| and the number of calls averaged.
    """

    name = "loss_norm"
    needs_grads = False

    def __init__(self, num_tasks: int, warmup_calls: int = 1000, eps: float = 1e-8, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if int(warmup_calls) < 1 or eps <= 0:
            raise ValueError(f"loss_norm: need warmup_calls >= 1 and eps > 0 (got {warmup_calls}, {eps})")
        self.warmup_calls = int(warmup_calls)
        self.eps = float(eps)
        self.abs_sum: Tensor | None = None
        self.count = 0  # calls averaged so far (host-side int, capped at warmup_calls)

    def scales(self) -> Tensor:
        """s_t, the current (or frozen) average |L_t|."""
        if self.abs_sum is None:
            raise RuntimeError("loss_norm: no losses seen yet (call balance() first)")
        return self.abs_sum / max(self.count, 1)

    def _balance(self, grads: Tensor | None, losses: Tensor) -> BalanceResult:
        if self._skip_call():  # non-finite inputs: the trainer skips this update, the state stays
            return skipped_result(grads, losses)
        device = losses.device
        abs_sum = self.abs_sum
        if abs_sum is None:
            abs_sum = torch.zeros(self.num_tasks, dtype=state_dtype(device), device=device)
        elif abs_sum.device != device:
            abs_sum = abs_sum.to(device, state_dtype(device))
        if self.count < self.warmup_calls:
            abs_sum = abs_sum + losses.detach().to(abs_sum.dtype).abs()
            self.count += 1
        self.abs_sum = abs_sum
        inv = 1.0 / (self.scales() + self.eps)
        w = inv / inv.sum()
        return loss_only_result(w, grads, losses)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(abs_sum=clone_or_none(self.abs_sum), count=self.count)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.abs_sum = clone_or_none(state["abs_sum"])
        self.count = int(state["count"])
