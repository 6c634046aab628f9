"""The device work of one loss's update, as pure functions of tensors: what ``compile`` compiles.

``Trainer._optimizer_step`` calls them, eager or compiled (:mod:`mtrl.compile`); the two give
the same parameters because they are the same functions. None of them reads the device from
the host or draws random numbers (the noise comes in as an argument).

Two paths, by what the balancer needs (see ``Trainer._optimizer_step``):

* gradient balancers: :func:`task_gradients` (per-task gradients of the shared parameters, the
  heads' own gradients, losses, the finite flag), then the balancer, then :func:`apply_direction`
  (the balanced direction and the heads' gradients as the ``.grad`` Adam sees, clipped);
* loss-only balancers: :func:`weighted_gradients`, the gradients of sum_t w_t L_t for the
  shared parameters and of L_t for task t's head, with w from the balancer on this step's
  losses.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from mtrl.gradients import per_task_grads, split_task_specific


def all_finite(*tensors: Tensor) -> Tensor:
    """A 0-dim bool on the device, read by nobody on the host: the sum of norms is finite only
    if every entry of every tensor is."""
    return torch.isfinite(torch.stack(torch._foreach_norm(list(tensors))).sum())


def clip_global_norm(grads: list[Tensor], max_norm: float) -> list[Tensor]:
    """``grads`` scaled by min(1, max_norm / (|grads| + 1e-6)), |grads| the norm of them all, when
    ``max_norm`` > 0: the clip of ``torch.nn.utils.clip_grad_norm_``, on the device, without a
    host read, in a handful of foreach kernels."""
    if max_norm <= 0:
        return grads
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return list(torch._foreach_mul(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0)))


def unflatten(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """The [P] vector ``flat`` as tensors shaped as ``like`` (views, in order)."""
    out, offset = [], 0
    for p in like:
        out.append(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    if offset != flat.numel():
        raise ValueError(f"the gradient has {flat.numel()} entries, the parameters {offset}")
    return out


def task_gradients(
    loss_fn: Callable, params: dict[str, Tensor], heads: dict[str, Tensor], task_args: tuple, ok: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(grads [K, P_shared], head_grads [P_heads], losses [K], aux, ok): the per-task gradients
    of the shared parameters (one batched pass), each head's gradient from its own task's loss,
    and ``ok`` and-ed with their finiteness."""
    grads, losses, aux = per_task_grads(loss_fn, {**params, **heads}, *task_args)
    grads, head_grads = split_task_specific(grads, params)
    return grads, head_grads, losses, aux, ok & all_finite(losses, grads, head_grads)


def apply_direction(
    direction: Tensor, head_grads: Tensor, like: list[Tensor], ok: Tensor, max_norm: float
) -> tuple[list[Tensor], Tensor]:
    """The balanced direction [P_shared] followed by the heads' gradients, clipped together (the
    global norm of everything Adam sees) and shaped as ``like``; ``ok`` and-ed with the
    direction's finiteness."""
    (flat,) = clip_global_norm([torch.cat([direction, head_grads])], max_norm)
    return unflatten(flat, like), ok & all_finite(direction)


def weighted_gradients(
    loss_fn: Callable,
    params: dict[str, Tensor],
    heads: dict[str, Tensor],
    task_args: tuple,
    ok: Tensor,
    balancer,
    task_success: Tensor,
    max_norm: float,
) -> tuple[list[Tensor], Tensor, Tensor, Tensor, Tensor]:
    """(gradients shaped as [*params, *heads], losses [K], aux, weights [K], ok) for a loss-only
    balancer: w = balancer.balance(None, L) on this step's losses, the shared parameters get the
    gradient of sum_t w_t L_t and task t's head that of L_t (weight 1, whatever the balancer).

    One forward pass, one backward pass to the shared parameters, and a second one (on the same
    graph) that stops at the heads. ``torch.autograd.grad``, not ``torch.func.vjp``: the vjp's
    pullback reaches every input, so the heads' cotangent would cost a second whole backward
    pass (measured +32% for a multi-head EW update on the CPU). torch.compile traces it with
    ``trace_autograd_ops`` (:class:`mtrl.compile.CompiledFunction`)."""
    losses, aux = loss_fn({**params, **heads}, *task_args)
    aux = tree_map(torch.Tensor.detach, aux)  # returned, so the backward passes must not consume its graph
    ok = ok & all_finite(losses.detach())
    weights = balancer.balance(None, losses.detach(), task_success=task_success, finite=ok).weights
    grads = list(torch.autograd.grad((weights * losses).sum(), list(params.values()), retain_graph=bool(heads)))
    if heads:
        grads += torch.autograd.grad(losses.sum(), list(heads.values()))
    ok = ok & all_finite(*grads)
    return clip_global_norm(grads, max_norm), losses.detach(), aux, weights, ok
