"""GradNorm: adaptive loss weights that equalise the tasks' gradient norms and training rates."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._loss_weighting import TensorAdam, state_dtype
from mtrl.balancers.base import Balancer, BalanceResult, clone_or_none, given_grads, log_loss_scale, skipped_result


@register
class GradNorm(Balancer):
    r"""GradNorm -- Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for
    Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.

    Loss weights w_t (init 1, sum K). At each call, with n_t = |g_t| (norm of the task's gradient
    of the shared parameters):

        G_t = w_t n_t,   G_bar = mean_t G_t,   Ltilde_t = L_t / L_t(0),   r_t = Ltilde_t / mean Ltilde
        L_grad = sum_t | G_t - G_bar r_t^alpha |          (G_bar r_t^alpha held constant)
        dL_grad/dw_t = sign(G_t - G_bar r_t^alpha) n_t

    The update uses the current weights (``weights = w / K``, ``direction = G^T weights``: the
    gradient of (1/K) sum_t w_t L_t, the ``ew`` scale), then one Adam step on w with dL_grad/dw,
    then w is clamped to >= 1e-6 and renormalised to sum K (paper, Algorithm 1).

    Hyperparameters:
      * ``alpha`` = 1.5 -- restoring-force strength (the LibMTL default; the paper tunes it
        per dataset, roughly within [0.1, 3]). GradNorm has no published MT10 setting.
      * ``lr`` = 1e-3 -- Adam learning rate of w. The paper steps w with the network's
        optimiser; mtrl gives the balancer its own Adam (mtrl's choice, not from the paper).
      * ``eps`` = 1e-8.

    Where mtrl differs: the norms are those of the gradient of all shared parameters (the
    per-task gradients mtrl computes anyway) instead of the last shared layer only. Losses that
    can be negative (the SAC actor loss) have no meaningful ratio L/L(0) (and r^alpha of a
    negative r is NaN): mtrl uses magnitudes, Ltilde_t = (|L_t| + eps) / (|L_t(0)| + eps)
    (:func:`mtrl.balancers.base.log_loss_scale`'s convention), so a task whose loss magnitude
    shrinks counts as trained. L(0) is the first call's losses.

    State (checkpointed): w, L(0), Adam moments and step.
    """

    name = "gradnorm"

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 1e-3, eps: float = 1e-8, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if alpha < 0 or lr < 0 or eps <= 0:
            raise ValueError(f"gradnorm: need alpha >= 0, lr >= 0, eps > 0 (got {alpha}, {lr}, {eps})")
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.loss_weights: Tensor | None = None  # w, sums to K
        self.initial_losses: Tensor | None = None
        self.adam = TensorAdam(lr=lr)

    def _balance(self, grads_or_none: Tensor | None, losses: Tensor) -> BalanceResult:
        grads = given_grads(grads_or_none, self.name)
        if self._skip_call():  # non-finite inputs: the trainer skips this update, the state stays
            return skipped_result(grads, losses)
        device = grads.device
        dtype = state_dtype(device)
        k = self.num_tasks
        if self.loss_weights is None:
            self.loss_weights = torch.ones(k, dtype=dtype, device=device)
        elif self.loss_weights.device != device:
            self.loss_weights = self.loss_weights.to(device, dtype)
            if self.initial_losses is not None:
                self.initial_losses = self.initial_losses.to(device, dtype)
        l_hat = log_loss_scale(losses.detach().to(dtype), self.eps)
        if self.initial_losses is None:
            self.initial_losses = l_hat.clone()

        w = self.loss_weights
        weights = (w / k).to(grads.dtype)
        direction = grads.T @ weights

        norms = grads.norm(dim=1).to(dtype)
        g_w = w * norms
        ratio = l_hat / self.initial_losses
        r = ratio / ratio.mean()
        target = g_w.mean() * r.pow(self.alpha)
        grad_w = torch.sign(g_w - target) * norms
        w_new = self.adam.step(w, grad_w).clamp_min(1e-6)
        self.loss_weights = k * w_new / w_new.sum()
        return BalanceResult(direction=direction, weights=weights)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            loss_weights=clone_or_none(self.loss_weights),
            initial_losses=clone_or_none(self.initial_losses),
            adam=self.adam.state_dict(),
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.loss_weights = clone_or_none(state["loss_weights"])
        self.initial_losses = clone_or_none(state["initial_losses"])
        self.adam.load_state_dict(state["adam"])
