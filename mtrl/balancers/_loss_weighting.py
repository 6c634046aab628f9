"""Small pieces shared by the stateful loss-weighting balancers (famo, uw, gradnorm, loss_norm):
the dtype of their K-sized state, Adam on one tensor, and the result of a loss-only method."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers.base import BalanceResult, clone_or_none


def state_dtype(device: torch.device) -> torch.dtype:
    """dtype of the K-sized balancer state: float64 (long runs accumulate), float32 on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


class TensorAdam:
    """Adam on one K-sized tensor, written out so that its state is three plain tensors and a
    step count (checkpointable, movable between devices, no host synchronisation).

    Exactly the update of ``torch.optim.Adam`` (Kingma & Ba 2015) with PyTorch's defaults,
    including its L2-style ``weight_decay`` (added to the gradient, not decoupled):
    ``g += wd * p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    The step count is a host-side Python int, so the bias corrections never read a tensor.
    """

    def __init__(
        self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m: Tensor | None = None
        self.v: Tensor | None = None
        self.t = 0

    def step(self, param: Tensor, grad: Tensor) -> Tensor:
        m, v = self.m, self.v
        if m is None or v is None:
            m, v = torch.zeros_like(param), torch.zeros_like(param)
        elif m.device != param.device or m.dtype != param.dtype:
            m, v = m.to(param.device, param.dtype), v.to(param.device, param.dtype)
        b1, b2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        self.t += 1
        self.m = m = b1 * m + (1.0 - b1) * grad
        self.v = v = b2 * v + (1.0 - b2) * grad * grad
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        denom = (v / bc2).sqrt() + self.eps
        return param - self.lr * (m / bc1) / denom

    def state_dict(self) -> dict:
        return {
            "m": clone_or_none(self.m),
            "v": clone_or_none(self.v),
            "t": self.t,
        }

    def load_state_dict(self, state: dict) -> None:
        self.m = clone_or_none(state["m"])
        self.v = clone_or_none(state["v"])
        self.t = int(state["t"])


def loss_only_result(weights: Tensor, grads: Tensor | None, losses: Tensor) -> BalanceResult:
    """The result of a loss-only method (``needs_grads = False``).

    With ``grads``: ``direction = grads.T @ weights``. Without (``grads=None``, the trainer's
    cheap path): ``direction`` is an EMPTY tensor (``torch.empty(0)``, dtype/device of
    ``losses``) -- the dataclass has no None -- and the trainer backpropagates
    ``sum_t weights_t L_t`` itself, which is the same update. (``log_losses`` is handled by the
    base class on both paths: it divides the gradients and reports the weights on the raw ones.)
    """
    if grads is None:
        return BalanceResult(
            direction=torch.empty(0, dtype=losses.dtype, device=losses.device), weights=weights.to(losses.dtype)
        )
    w = weights.to(grads.dtype)
    return BalanceResult(direction=grads.T @ w, weights=w)
