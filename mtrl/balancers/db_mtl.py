"""DB-MTL: dual balancing -- log-loss gradients (loss scale) + EMA gradient-magnitude balancing.

g_t   = grad L_t / (|L_t| + 1e-8)                      (gradient of log L_t)
buf_t <- beta_k buf_t + (1 - beta_k) g_t,   beta_k = beta / k^beta_sigma,   buf_0 = 0
d     = sum_t (max_j |buf_j| / (|buf_t| + 1e-8)) buf_t
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import Balancer, BalanceResult, clone_or_none, given_grads, log_loss_scale


@register
class DBMTL(Balancer):
    """DB-MTL (Lin, Jiang, Ye, Zhang, Chen, Chen, Liu & Kwok, "Dual-Balancing for Multi-Task
    Learning", arXiv:2308.12029, 2023; implemented in LibMTL).

    Equation, at call k = 1, 2, ...: ``g_t = grads_t / (|L_t| + 1e-8)``;
    ``buf <- beta_k buf + (1 - beta_k) g`` with ``beta_k = beta / k^beta_sigma`` and buf = 0
    before the first call (no bias correction, as in the official code); direction
    ``d = sum_t alpha_t buf_t`` with ``alpha_t = max_j |buf_j| / (|buf_t| + 1e-8)``, i.e. every
    task's EMA gradient rescaled to the largest EMA norm. The method is not linear in the
    current gradients; the returned ``weights`` are alpha (the factors applied to the EMA
    buffers: ``direction == buf.T @ weights``).

    Hyperparameters: ``beta=0.9``, ``beta_sigma=0.0`` (LibMTL's defaults; the paper tunes beta
    and beta_sigma per data set). The paper has no Meta-World experiment, so there is no
    published MT10 setting.

    Negative losses (the SAC actor loss). DB-MTL's loss-scale balancing is the gradient of
    log L_t = grad L_t / L_t, undefined for L_t <= 0, and dividing by a negative L_t would turn
    that task's descent into ascent. mtrl divides by |L_t| + 1e-8 (``base.log_loss_scale``):
    each task's gradient keeps its direction and is normalised by its loss magnitude, which is
    the scale invariance the log transform provides; for positive losses it is exactly the
    paper's ``L_t + 1e-8``. The official code computes ``log(L_t + 1e-8)`` and produces NaN.
    The ``log_losses`` option of the base class is therefore built in: it is accepted for
    uniformity and has no further effect (the division happens once, and the weights stay the
    factors applied to the buffers).

    State (checkpointed): the EMA buffer [K, P] and the call counter k. No solver, hence no
    failure counting.

    Differences from LibMTL's ``DB_MTL`` (the official implementation): the |L_t| treatment of
    negative losses above; otherwise identical (same update order, same 1e-8 constants).
    """

    name = "db_mtl"
    logs_losses_itself = True

    def __init__(self, num_tasks: int, beta: float = 0.9, beta_sigma: float = 0.0, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if beta_sigma < 0:
            raise ValueError(f"beta_sigma must be >= 0, got {beta_sigma}")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.step = 0  # calls so far (host-side counter)
        self.buffer: Tensor | None = None

    def _balance(self, grads_or_none: Tensor | None, losses: Tensor) -> BalanceResult:
        grads = given_grads(grads_or_none, self.name)
        grads = grads / log_loss_scale(losses).to(grads.dtype).unsqueeze(1)
        if self.buffer is None:
            self.buffer = torch.zeros_like(grads)
        elif self.buffer.shape != grads.shape:
            raise ValueError(f"db_mtl: gradient shape changed from {tuple(self.buffer.shape)} to {tuple(grads.shape)}")
        self.step += 1
        beta_k = self.beta / self.step**self.beta_sigma
        buf = self.buffer.to(device=grads.device, dtype=grads.dtype)
        new = beta_k * buf + (1.0 - beta_k) * grads
        # a call the trainer skips (non-finite inputs) leaves the buffer as it was: selected on
        # the device, no host read (the call counter, used only when beta_sigma > 0, counts it)
        self.buffer = new if self.finite is None else torch.where(self.finite, new, buf)
        buf = new
        norms = torch.linalg.vector_norm(buf, dim=1)
        alpha = norms.max() / (norms + 1e-8)
        return BalanceResult(direction=alpha @ buf, weights=alpha)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["step"] = self.step
        state["buffer"] = clone_or_none(self.buffer)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
        self.buffer = clone_or_none(state["buffer"])
