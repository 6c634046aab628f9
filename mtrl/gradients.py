"""Per-task gradients of the shared parameters in one batched pass.

Sampling is stratified, so the batch is [K, n, ...] and task t's loss depends only on row t.
``torch.func.vmap`` over that task axis of ``torch.func.grad`` gives all K gradients from one
batched forward/backward, instead of the K backward passes over the whole batch that the
reference codebases take. The result is the [K, P] matrix the balancers take (row t = the
gradient of task t's loss, the parameters flattened in ``params`` order).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap


def per_task_grads(
    loss_fn: Callable[..., tuple[Tensor, Tensor]], params: dict[str, Tensor], *task_args: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-task gradients, losses and auxiliary outputs.

    ``loss_fn(params, *slices) -> (scalar loss, aux)`` is called on one task's slices; every
    tensor in ``task_args`` has the task axis first. Returns (grads [K, P], losses [K], aux [K, ...]).
    The parameters are treated as leaves: nothing flows into their ``.grad``.
    """
    detached = {k: v.detach() for k, v in params.items()}
    batched = vmap(grad_and_value(loss_fn, has_aux=True), in_dims=(None, *[0] * len(task_args)))
    grads, (losses, aux) = batched(detached, *task_args)
    num_tasks = losses.shape[0]
    flat = torch.cat([grads[name].reshape(num_tasks, -1) for name in params], dim=1)
    return flat, losses, aux


def gradient_statistics(grads: Tensor, direction: Tensor | None = None, eps: float = 1e-12) -> dict[str, Tensor]:
    """Imbalance and conflict of a [K, P] gradient matrix (K >= 2 for the pairwise ones):
    per-task norms, mean pairwise cosine, fraction of task pairs with negative cosine, and the
    max/min norm ratio; each task's share of the summed norms. With the applied update
    ``direction`` d [P], also each task's projection on it (g_t.d/|d|: how far the update moves
    task t's loss, to first order, per unit step) and its cosine with it. One matvec beyond the
    Gram matrix; a zero d (or a zero row) gives 0, never NaN. All tensors on the input's device."""
    norms = grads.norm(dim=1)
    num_tasks = grads.shape[0]
    cos = (grads / norms.clamp_min(eps).unsqueeze(1)) @ (grads / norms.clamp_min(eps).unsqueeze(1)).T
    off_diagonal = ~torch.eye(num_tasks, dtype=torch.bool, device=grads.device)
    pairs = max(num_tasks * (num_tasks - 1), 1)
    stats = {
        "norms": norms,
        "norm_share": norms / norms.sum().clamp_min(eps),
        "cos_mean": (cos * off_diagonal).sum() / pairs,
        "conflict_frac": ((cos < 0) & off_diagonal).to(grads.dtype).sum() / pairs,
        "norm_ratio": norms.max() / norms.min().clamp_min(eps),
    }
    if direction is not None:
        proj = grads @ direction / direction.norm().clamp_min(eps)
        stats["proj"] = proj
        stats["cos_update"] = proj / norms.clamp_min(eps)
    return stats


def split_task_specific(grads: Tensor, shared: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Split [K, P] per-task gradients, taken over the shared parameters followed by the
    task-specific ones, into the shared block [K, P_shared] (for the balancer) and the
    task-specific gradient [P_specific] = sum over tasks. Task t's loss reaches only its own
    head, so the sum gives each head exactly its own task's gradient."""
    num_shared = sum(p.numel() for p in shared.values())
    return grads[:, :num_shared], grads[:, num_shared:].sum(dim=0)
