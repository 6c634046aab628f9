"""FAMO: Fast Adaptive Multitask Optimization (loss-only, O(1) in K per step)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._loss_weighting import TensorAdam, loss_only_result, state_dtype
from mtrl.balancers.base import Balancer, BalanceResult, clone_or_none, skipped_result


def signed_log(x: Tensor, eps: float) -> Tensor:
    """``sign(x) * log(1 + |x| / eps)``: the antiderivative of ``1 / (|x| + eps)``.

    For x >= 0 this is ``log(x + eps) - log(eps)``, so differences of it are exactly the
    ``log(L + eps)`` differences of the FAMO paper and code; it is increasing, continuous and
    finite on all of R (0 at 0), so it also ranks negative losses correctly (more negative =
    smaller), which ``log|L|`` does not.
    """
    return torch.sign(x) * torch.log1p(x.abs() / eps)


@register
class FAMO(Balancer):
    r"""FAMO -- Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

    Task logits xi (init 0), z = softmax(xi). With D_t = L_t - b_t (b = ``min_loss``):

        weights  w_t = (z_t / D_t) / sum_j (z_j / D_j)          (paper: d = c sum_t z_t grad log D_t,
        direction  = sum_t w_t g_t                                 c = (sum_j z_j / D_j)^-1)

    i.e. a convex combination of the task gradients (weights on the simplex). After each step
    the logits follow the change of the log losses, delta_t = log D_t(before) - log D_t(after):
    xi <- Adam(xi, grad = J_softmax(xi)^T delta, weight_decay = gamma) (the paper's
    regularised update of xi, done with Adam as in the official code).

    Hyperparameters (defaults = the authors' Meta-World MT10 run, ``mtrl_files/run.sh`` of
    github.com/Cranial-XIX/FAMO: ``w_lr=0.025, gamma=0.01``):
      * ``lr`` = 0.025 -- Adam learning rate of the logits (also the default of their ``famo.py``).
      * ``weight_decay`` = 0.01 -- gamma (their ``famo.py`` default too; LibMTL and torchjd
        default to 1e-3).
      * ``min_loss`` = 0.0 -- b, a lower bound of the losses (paper's min_losses, 0 by default).
      * ``eps`` = 1e-8 -- as in the paper/code (``L + 1e-8``).

    Where mtrl differs from the official code:
      * **The MT10 code of the authors multiplies where the paper divides**: it backpropagates
        ``sum z_t log(L_t) * c`` with ``c = sum z_j / L_j``, i.e. scales the update by c
        instead of 1/c. mtrl implements the paper (weights sum to 1), as ``famo.py`` and
        LibMTL do.
      * The authors' MT10 agent applies FAMO to the critic loss only (the actor keeps the plain
        mean loss); in mtrl it is whatever balancer the config puts on each loss.
      * delta uses the losses of consecutive calls (consecutive minibatches, one balance()
        per update) instead of re-evaluating the losses on the same batch after the step (an
        extra forward pass the balancer cannot do). The logits at call t are updated from
        (L_{t-1}, L_t) before weighting L_t -- the same order as the official loop.
      * Losses that can be negative (the SAC actor loss) have no log. mtrl uses the |L|
        convention of :func:`mtrl.balancers.base.log_loss_scale` consistently: the weight
        normaliser is ``|D_t| + eps`` and the "log" is its antiderivative
        ``signed_log(D) = sign(D) log(1 + |D|/eps)``, so delta_t = signed_log(D_before) -
        signed_log(D_after). For D >= 0 both are exactly the paper's formulas
        (``log(D+eps)`` differences); for D < 0 a decreasing (improving) loss still gives
        delta > 0 (``log|D|`` would call it a regression). A loss crossing 0 gives a large
        delta (~ 2 log(|D|/eps)); Adam bounds the resulting logit step by ~lr.

    ``log_losses``: the method is defined on log losses already, so the base option is accepted
    and has no effect (``Balancer.logs_losses_itself``; the same rule as DB-MTL).

    ``needs_grads = False``: with ``grads=None`` the returned direction is ``torch.empty(0)``
    and the trainer backpropagates ``sum_t weights_t L_t`` (see :func:`loss_only_result`).
    State (checkpointed): logits, Adam moments and step, previous losses.
    """

    name = "famo"
    needs_grads = False
    logs_losses_itself = True

    def __init__(
        self,
        num_tasks: int,
        lr: float = 0.025,
        weight_decay: float = 0.01,
        min_loss: float = 0.0,
        eps: float = 1e-8,
        **kwargs,
    ):
        super().__init__(num_tasks, **kwargs)
        if lr < 0 or weight_decay < 0 or eps <= 0:
            raise ValueError(f"famo: need lr >= 0, weight_decay >= 0, eps > 0 (got {lr}, {weight_decay}, {eps})")
        self.min_loss = float(min_loss)
        self.eps = float(eps)
        self.logits: Tensor | None = None
        self.prev: Tensor | None = None  # D at the previous call
        self.adam = TensorAdam(lr=lr, weight_decay=weight_decay)

    def _ensure_state(self, device: torch.device) -> Tensor:
        """The logits on ``device`` (made on the first call; moved with the previous D)."""
        dtype = state_dtype(device)
        if self.logits is None:
            self.logits = torch.zeros(self.num_tasks, dtype=dtype, device=device)
        elif self.logits.device != device:
            self.logits = self.logits.to(device, dtype)
            if self.prev is not None:
                self.prev = self.prev.to(device, dtype)
        return self.logits

    def task_weights(self) -> Tensor:
        """z = softmax(logits), the FAMO task preferences (before the 1/D normalisation)."""
        if self.logits is None:
            raise RuntimeError("famo: no losses seen yet (call balance() first)")
        return torch.softmax(self.logits, dim=0)

    def _balance(self, grads: Tensor | None, losses: Tensor) -> BalanceResult:
        if self._skip_call():  # non-finite inputs: the trainer skips this update, the state stays
            return skipped_result(grads, losses)
        logits = self._ensure_state(losses.device)
        d = losses.detach().to(logits.dtype) - self.min_loss
        if self.prev is not None:  # host-side flag: no tensor is read
            delta = signed_log(self.prev, self.eps) - signed_log(d, self.eps)
            z = torch.softmax(logits, dim=0)
            grad = z * (delta - (z * delta).sum())  # J_softmax^T delta (J symmetric)
            self.logits = logits = self.adam.step(logits, grad)
        z = torch.softmax(logits, dim=0)
        w = z / (d.abs() + self.eps)
        w = w / w.sum()
        self.prev = d
        return loss_only_result(w, grads, losses)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            logits=clone_or_none(self.logits),
            prev=clone_or_none(self.prev),
            adam=self.adam.state_dict(),
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.logits = clone_or_none(state["logits"])
        self.prev = clone_or_none(state["prev"])
        self.adam.load_state_dict(state["adam"])
