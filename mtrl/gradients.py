"""The gradient statistics of TensorBoard's ``grad/<loss>/...`` tags: what the per-task
gradients [K, P] of an update (:func:`mtrl.update.per_task_grads`) say about imbalance and conflict.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
