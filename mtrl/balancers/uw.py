"""Uncertainty weighting (UW): learned homoscedastic task uncertainties (loss-only)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._loss_weighting import TensorAdam, loss_only_result, state_dtype
from mtrl.balancers.base import Balancer, BalanceResult, clone_or_none, log_loss_scale, skipped_result


@register
class UncertaintyWeighting(Balancer):
    r"""UW -- Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018.

    One log-variance s_t = log sigma_t^2 per task (init 0), learned jointly with the network on

        L_UW = sum_t 1/2 (exp(-s_t) L_t + s_t)            (the paper's regression form)

    so the network sees the task weights exp(-s_t)/2 and s_t is pulled to log L_t
    (dL_UW/ds_t = (1 - exp(-s_t) L_t)/2).

    mtrl returns ``weights_t = exp(-s_t) / K`` (the mean-over-tasks convention of ``ew``: at
    s = 0 UW is exactly EW; the paper's factor 1/2 vs 1/K is a constant rescaling of the step,
    which Adam on the network removes) and, after weighting, takes one Adam step on s with the
    gradient above, i.e. the simultaneous update of the paper's joint optimisation.

    Hyperparameters:
      * ``lr`` = 0.01 -- Adam learning rate of s. In the paper s is trained by the network's
        optimiser; 0.01 is what the FAMO authors used for their UW baseline on Meta-World MT10
        (``mtrl_files/uw.py`` + ``uw_state_sac.yaml`` of github.com/Cranial-XIX/FAMO: a separate
        Adam with ``w_lr=0.01``, s init 0, the 1/2 (exp(-s) L + s) form, on both the critic and
        the actor loss). The UW paper has no MT10 result.
      * ``log_var_bound`` = 10.0 -- s is projected onto [-bound, bound] after each step, so
        weights stay within [e^-10, e^10] / K.
      * ``eps`` = 1e-8.

    Negative and zero losses: with L < 0 the objective exp(-s) L + s is unbounded below in s
    (s -> -inf, weight -> inf; the FAMO authors' MT10 UW applies it to the raw, negative SAC
    actor loss). mtrl uses the loss magnitude, ``L_hat = |L| + eps`` (the
    convention of :func:`mtrl.balancers.base.log_loss_scale`): s tracks log|L_t|, so each task's
    gradient is normalised by its loss scale -- the scale invariance UW provides for positive
    losses -- and the weight stays positive, so no task's gradient is flipped. For L = 0 the
    stationary point log(eps) is cut off by ``log_var_bound``.

    ``log_losses``: the method is defined on log losses already, so the base option is accepted
    and has no effect (``Balancer.logs_losses_itself``; the same rule as DB-MTL).

    ``needs_grads = False``: with ``grads=None`` the direction is ``torch.empty(0)`` and the
    trainer backpropagates ``sum_t weights_t L_t`` (see :func:`mtrl.balancers.famo.loss_only_result`).
    State (checkpointed): s and its Adam moments and step.
    """

    name = "uw"
    needs_grads = False
    logs_losses_itself = True

    def __init__(self, num_tasks: int, lr: float = 0.01, log_var_bound: float = 10.0, eps: float = 1e-8, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if lr < 0 or log_var_bound <= 0 or eps <= 0:
            raise ValueError(f"uw: need lr >= 0, log_var_bound > 0, eps > 0 (got {lr}, {log_var_bound}, {eps})")
        self.log_var_bound = float(log_var_bound)
        self.eps = float(eps)
        self.log_vars: Tensor | None = None
        self.adam = TensorAdam(lr=lr)

    def _balance(self, grads: Tensor | None, losses: Tensor) -> BalanceResult:
        if self._skip_call():  # non-finite inputs: the trainer skips this update, the state stays
            return skipped_result(grads, losses)
        device = losses.device
        if self.log_vars is None:
            self.log_vars = torch.zeros(self.num_tasks, dtype=state_dtype(device), device=device)
        elif self.log_vars.device != device:
            self.log_vars = self.log_vars.to(device, state_dtype(device))
        s = self.log_vars
        w = torch.exp(-s) / self.num_tasks
        l_hat = log_loss_scale(losses.detach().to(s.dtype), self.eps)
        grad = 0.5 * (1.0 - torch.exp(-s) * l_hat)
        self.log_vars = self.adam.step(s, grad).clamp(-self.log_var_bound, self.log_var_bound)
        return loss_only_result(w, grads, losses)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(log_vars=clone_or_none(self.log_vars), adam=self.adam.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.log_vars = clone_or_none(state["log_vars"])
        self.adam.load_state_dict(state["adam"])
