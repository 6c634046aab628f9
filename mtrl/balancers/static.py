"""Static loss weights: fixed per-task weights, the grid-searched baseline (loss-only)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._loss_weighting import loss_only_result
from mtrl.balancers.base import Balancer, BalanceResult


@register
class Static(Balancer):
    r"""Fixed per-task loss weights, set by hand or by a grid search.

    The baseline that loss balancing is measured against: Guo et al., "Revisit the Imbalance
    Optimization in Multi-task Learning: An Experimental Analysis" (arXiv:2509.23915, 2025)
    find that architectures "still rely on costly grid-searched loss weights" and that
    ``grad_norm_scaling`` matches such a grid. With raw weights r_t >= 0 given by the user:

        w_t = r_t / sum_j r_j,        direction = sum_t w_t g_t,   i.e. the gradient of sum_t w_t L_t

    Normalised to sum to 1 so that the step size stays ``ew``'s (all r_t equal: exactly ``ew``);
    only the ratios between tasks matter.

    Hyperparameter ``weights``: a list in task order (one number per task), or a mapping from
    task name to weight in which the tasks not named weigh 1 (``{reach-v3: 4}`` makes reach four
    times as heavy as each other task). Default: every task 1. A list of the wrong length, an
    unknown task name, a weight that is negative, non-finite or not a number, or weights that
    are all 0 raise ValueError (the config check turns it into one line and exit code 2).

    ``needs_grads = False``: with ``grads=None`` the direction is ``torch.empty(0)`` and the
    trainer backpropagates ``sum_t w_t L_t``. Stateless apart from the weights, which the
    checkpoint holds so that a resume with other weights is refused rather than mixed.
    """

    name = "static"
    needs_grads = False
    traceable = True

    def __init__(self, num_tasks: int, weights: list | dict | None = None, **kwargs):
        super().__init__(num_tasks, **kwargs)
        raw = resolve_weights(weights, num_tasks, self.task_names)
        self.weights = torch.tensor(raw, dtype=torch.float64) / math.fsum(raw)
        self._on_device: Tensor | None = None  # the weights on the losses' device and dtype, made once

    def _balance(self, grads: Tensor | None, losses: Tensor) -> BalanceResult:
        w = self._on_device
        if w is None or w.device != losses.device or w.dtype != losses.dtype:
            w = self._on_device = self.weights.to(losses.device, losses.dtype)
        return loss_only_result(w, grads, losses)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights": self.weights.clone()}

    def load_state_dict(self, state: dict) -> None:
        if not torch.equal(state["weights"], self.weights):
            raise ValueError(
                f"static: the checkpoint was trained with weights {state['weights'].tolist()}, "
                f"not {self.weights.tolist()}; resume with the run's own config"
            )
        super().load_state_dict(state)


def resolve_weights(weights: list | dict | None, num_tasks: int, task_names: list[str] | None) -> list[float]:
    """The raw weights r_t in task order, checked (ValueError with one line otherwise)."""
    if weights is None:
        return [1.0] * num_tasks
    if isinstance(weights, dict):
        if task_names is None:
            raise ValueError(
                "static: weights given by task name need the task names (make_balancer(..., task_names=...))"
            )
        unknown = [str(k) for k in weights if k not in task_names]
        if unknown:
            raise ValueError(
                f"static: weights name task {unknown[0]!r}, which is not in the task set; "
                f"tasks: {', '.join(task_names)}"
            )
        raw = [weights.get(name, 1.0) for name in task_names]
    elif isinstance(weights, (list, tuple)):
        if len(weights) != num_tasks:
            names = f" ({', '.join(task_names)})" if task_names else ""
            raise ValueError(
                f"static: weights has {len(weights)} entries but the task set has {num_tasks} tasks{names}; "
                "give one per task in task order, or a mapping {task: weight}"
            )
        raw = list(weights)
    else:
        raise ValueError(f"static: weights must be a list in task order or a mapping {{task: weight}}, got {weights!r}")
    for i, r in enumerate(raw):
        name = task_names[i] if task_names else f"task {i}"
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise ValueError(f"static: the weight of {name} must be a finite number >= 0, got {r!r}")
    if not any(r > 0 for r in raw):
        raise ValueError("static: every weight is 0; at least one task needs a positive weight")
    return [float(r) for r in raw]
