"""One multi-task SAC update, top to bottom: :class:`SACUpdate`.

An update samples nothing itself: it gets a stratified batch [K, n, ...] (row t = task t) and
does, on the device, without reading anything on the host:

1. the critic targets (:meth:`agents.mtsac.MTSAC.critic_targets`, noise drawn here);
2. the critic's step and then the actor's, each by :meth:`SACUpdate.loss_step`, one of two paths:

   * **gradient balancer** (``balancer.needs_grads``: IMGrad, CAGrad, Nash-MTL, PCGrad, ...):
     :func:`task_gradients` gives the [K, P] per-task gradients of the shared parameters in
     one batched pass, the balancer turns them into one direction, and
     :func:`apply_direction` makes it (with the task heads' own gradients, clipped) the
     ``.grad`` that Adam sees;
   * **loss weighting** (EW, FAMO, UW, DB-MTL's loss form, ...): :func:`weighted_gradients`,
     one backward pass of sum_t w_t L_t with the balancer's weights w on this step's losses;
     with EW that is exactly mean-loss SAC.

3. the per-task temperatures (each its own loss, no balancing), the Polyak targets, and the
   count of skipped updates (:class:`NonFiniteCount`).

When a loss, gradient or direction is not finite, the fused optimizers skip their step
(``found_inf``), the balancers keep their state, the targets stay and the count goes up: a
0-dim bool ``ok`` carries the decision through the update on the device.

The device functions (:class:`DeviceFunctions`) are pure
functions of tensors, compiled with the config key ``compile`` (:mod:`mtrl.compile`) or eager;
the two give the same parameters because they are the same functions. They draw no random
numbers (the noise comes in as an argument).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap
from torch.utils._pytree import tree_map

from agents.mtsac import MTSAC
from mtrl.balancers.base import Balancer
from mtrl.compile import CompiledFunction
from mtrl.config import Config
from mtrl.replay import Batch


# --- the device functions ------------------------------------------------------------------------
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


def per_task_grads(
    loss_fn: Callable[..., tuple[Tensor, Tensor]], params: dict[str, Tensor], *task_args: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(grads [K, P], losses [K], aux [K, ...]): per-task gradients in one batched pass.

    Sampling is stratified, so task t's loss depends only on row t of every tensor in
    ``task_args``. ``torch.func.vmap`` over that task axis of ``torch.func.grad`` gives all K
    gradients from one batched forward/backward, instead of K backward passes over the whole
    batch. ``loss_fn(params, *slices) -> (scalar loss, aux)`` is called on one task's slices; row
    t of ``grads`` is task t's gradient, the parameters flattened in ``params`` order. The
    parameters are treated as leaves: nothing flows into their ``.grad``."""
    detached = {k: v.detach() for k, v in params.items()}
    batched = vmap(grad_and_value(loss_fn, has_aux=True), in_dims=(None, *[0] * len(task_args)))
    grads, (losses, aux) = batched(detached, *task_args)
    num_tasks = losses.shape[0]
    flat = torch.cat([grads[name].reshape(num_tasks, -1) for name in params], dim=1)
    return flat, losses, aux


def task_gradients(
    loss_fn: Callable, params: dict[str, Tensor], heads: dict[str, Tensor], task_args: tuple, ok: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(grads [K, P_shared], head_grads [P_heads], losses [K], aux, ok): the per-task gradients
    of the shared parameters, each head's gradient from its own task's loss, and ``ok`` and-ed
    with their finiteness. Task t's loss reaches only its own head, so the heads' block summed
    over tasks gives each head exactly its own task's gradient."""
    grads, losses, aux = per_task_grads(loss_fn, {**params, **heads}, *task_args)
    num_shared = sum(p.numel() for p in params.values())
    grads, head_grads = grads[:, :num_shared], grads[:, num_shared:].sum(dim=0)
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
    balancer: Balancer,
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


# --- the update ------------------------------------------------------------------------------------
@dataclass
class LossFunctions:
    """One loss's device functions, its loss bound, each compiled or eager."""

    task_gradients: CompiledFunction  # the gradient balancer's path, before the balancer
    apply_direction: CompiledFunction  # ... and after it
    weighted_gradients: CompiledFunction  # the loss-weighting path, balancer included when traceable


@dataclass
class DeviceFunctions:
    """The device functions of an update, compiled or eager."""

    compiled: bool
    critic_targets: CompiledFunction
    critic: LossFunctions
    actor: LossFunctions

    def all(self) -> list[CompiledFunction]:
        losses = (self.critic, self.actor)
        return [self.critic_targets, *(f for fns in losses for f in vars(fns).values())]


@dataclass
class LossState:
    """What one balanced loss updates: its shared parameters (balanced), its task-specific ones
    (multi-head SAC's output layers: each gets only its own task's gradient), their optimizer."""

    name: str  # "critic" or "actor": the key of its balancer and of its state in a checkpoint
    params: dict[str, Tensor]
    heads: dict[str, Tensor]
    optimizer: torch.optim.Adam


@dataclass
class GradStats:
    """A gradient-statistics update's per-task gradients [K, P], the balancer's weights [K] and
    the direction [P] it applied, for :func:`mtrl.gradients.gradient_statistics`."""

    grads: Tensor
    weights: Tensor
    direction: Tensor


class NonFiniteCount:
    """Updates skipped for a non-finite loss, gradient or direction, counted on the device so
    that deciding to skip needs no host read: skipped in all, in a row now, and the longest run
    in a row since the last :meth:`read`."""

    def __init__(self, skipped: int, in_row: int, device: torch.device):
        self.counts = torch.tensor([skipped, in_row, in_row], device=device)  # [skipped, in_row, longest]
        self._keep = torch.tensor([1, 0, 1], device=device)  # after a good update
        self._add = torch.tensor([1, 1, 0], device=device)  # after a skipped one

    def record(self, ok: Tensor) -> None:
        counted = torch.where(ok, self.counts * self._keep, self.counts + self._add)
        counted[2] = torch.maximum(counted[2], counted[1])
        self.counts = counted

    def read(self) -> tuple[int, int, int]:
        """(skipped, in a row, longest in a row since the last read): one host read."""
        skipped, in_row, longest = (int(x) for x in self.counts.tolist())
        self.counts[2] = in_row
        return skipped, in_row, longest


class SACUpdate:
    """The optimizers, the balancers of the current stage and the device functions of one
    multi-task SAC update; calling it makes one update (:meth:`__call__`)."""

    def __init__(
        self,
        agent: MTSAC,
        cfg: Config,
        balancers: dict[str, Balancer],
        device: torch.device,
        compiled: bool,
        announce: Callable[[str], None],
        compiled_in: Callable[[float], None],
        nonfinite: tuple[int, int] = (0, 0),
    ):
        self.agent, self.cfg, self.device = agent, cfg, device
        self.announce, self.compiled_in = announce, compiled_in
        eps = cfg.sac.adam_eps
        self.losses: list[LossState] = []
        for name, module, lr in (("critic", agent.critic, cfg.sac.critic_lr), ("actor", agent.actor, cfg.sac.actor_lr)):
            params, heads = agent.split_params(module)
            # fused Adam: one kernel over all parameters instead of several per tensor (CPU and CUDA)
            optimizer = torch.optim.Adam([*params.values(), *heads.values()], lr=lr, eps=eps, fused=True)
            self.losses.append(LossState(name, params, heads, optimizer))
        self.critic, self.actor = self.losses
        self.fns = self.device_functions(compiled)
        self.balancers = balancers
        self.alpha_opt = torch.optim.Adam([agent.log_alpha], lr=cfg.sac.alpha_lr, eps=eps, fused=True)
        self.nonfinite = NonFiniteCount(*nonfinite, device)

    @property
    def cudagraphs(self) -> bool:
        return self.fns.compiled and self.device.type == "cuda"

    def device_functions(self, compiled: bool) -> DeviceFunctions:
        """The update's device functions with the losses bound, each compiled on its first call
        when ``compiled`` (with CUDA graphs on CUDA)."""
        if compiled:
            # a process trains one run at a time; the compiled code of an earlier one (guarded on
            # its modules) would only count toward torch.compile's recompilation limit
            torch._dynamo.reset()
        agent, strict = self.agent, self.cfg.compile == "true"

        def wrap(fn: Callable, name: str) -> CompiledFunction:
            return CompiledFunction(fn, name, compiled, self.device, strict, self.announce, self.compiled_in)

        def critic_loss(params, obs, actions, target):
            return agent.critic_loss(params, obs, actions, target), ()

        def loss_functions(loss: str, loss_fn: Callable) -> LossFunctions:
            return LossFunctions(
                task_gradients=wrap(
                    lambda params, heads, task_args, ok: task_gradients(loss_fn, params, heads, task_args, ok),
                    f"the {loss}'s per-task gradients",
                ),
                apply_direction=wrap(apply_direction, f"the {loss}'s direction to gradients"),
                weighted_gradients=wrap(
                    lambda *args: weighted_gradients(loss_fn, *args), f"the {loss}'s weighted loss step"
                ),
            )

        return DeviceFunctions(
            compiled=compiled,
            critic_targets=wrap(agent.critic_targets, "the critic targets"),
            critic=loss_functions("critic", critic_loss),
            actor=loss_functions("actor", agent.actor_loss),
        )

    def use_balancers(self, balancers: dict[str, Balancer]) -> None:
        """A new stage's balancers; a loss-weighting one compiled into its loss step is traced anew."""
        self.balancers = balancers
        for loss, fns in ((self.critic, self.fns.critic), (self.actor, self.fns.actor)):
            balancer = balancers[loss.name]
            if balancer.traceable and not balancer.needs_grads:
                fns.weighted_gradients.expect_compile()

    def __call__(
        self, batch: Batch, task_success: Tensor, stats: bool
    ) -> tuple[dict[str, Tensor], dict[str, GradStats]]:
        """One update on ``batch``: ({loss: [K] losses}, {loss: gradient statistics} when ``stats``)."""
        agent = self.agent
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()  # this update's graphs may reuse the last one's outputs
        grad_stats: dict[str, GradStats] = {}
        ok = torch.ones((), dtype=torch.bool, device=self.device)
        target = self.fns.critic_targets(batch, agent.noise(batch.next_obs))
        critic_args = (batch.obs, batch.actions, target)
        critic_losses, _, ok = self.loss_step(
            self.critic, self.fns.critic, critic_args, task_success, ok, stats, grad_stats
        )
        # a non-finite critic step skips the rest of the update too
        actor_args = (batch.obs, agent.noise(batch.obs), agent.alpha())
        actor_losses, log_prob, ok = self.loss_step(
            self.actor, self.fns.actor, actor_args, task_success, ok, stats, grad_stats
        )
        # each task's temperature has its own loss and receives only its gradient: no balancing
        alpha_losses = agent.alpha_losses(log_prob)
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_losses.sum().backward()
        self.alpha_opt.found_inf = (~ok).float()  # type: ignore[attr-defined]  # read by the fused step
        self.alpha_opt.step()
        agent.update_targets(ok)
        self.nonfinite.record(ok)
        return {"critic": critic_losses, "actor": actor_losses}, grad_stats

    def loss_step(
        self,
        loss: LossState,
        fns: LossFunctions,
        task_args: tuple,
        task_success: Tensor,
        ok: Tensor,
        stats: bool = False,
        grad_stats: dict[str, GradStats] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The one place where per-task losses become a parameter update: (losses [K], aux, ok).

        ``task_args``: the loss's inputs on the stratified [K, n, ...] batch. A gradient balancer
        gets the [K, P] per-task gradients of the shared parameters and its direction is the
        update; a loss-weighting one gets the losses and its weights make one backward pass.
        With ``stats`` the per-task gradients are taken anyway, and kept in ``grad_stats``.

        Task-specific parameters (multi-head SAC's per-task output layers) are left out of
        balancing: head t gets the gradient of L_t alone, with weight 1 whatever the balancer
        (the gradient single-task SAC would give it; its scale matters to Adam through eps and to
        the clip of sac.max_grad_norm, which bounds the heads together with the shared direction).

        ``ok`` comes back False when a loss, gradient or direction is not finite or it came in
        False: the fused optimizer then skips its step (``found_inf``: parameters and moments
        untouched) and the balancer, told through ``finite``, keeps its state."""
        balancer = self.balancers[loss.name]
        like = [*loss.params.values(), *loss.heads.values()]
        # As the reference MT-SAC: the global norm of everything Adam is about to see (the
        # balanced direction plus the task heads' gradients) is clipped after balancing; Nash-MTL's
        # own max_norm scales the shared direction first
        max_norm = float(self.cfg.sac.max_grad_norm or 0.0)
        if balancer.needs_grads or stats:
            grads, head_grads, losses, aux, ok = fns.task_gradients(loss.params, loss.heads, task_args, ok)
            out = balancer.balance(
                grads if balancer.needs_grads else None, losses, task_success=task_success, finite=ok
            )
            direction = out.direction if balancer.needs_grads else grads.T @ out.weights
            new_grads, ok = fns.apply_direction(direction, head_grads, like, ok, max_norm)
            if stats and grad_stats is not None:
                grad_stats[loss.name] = GradStats(grads, out.weights, direction)
        else:
            # a balancer that reads the device in balance() would split the compiled graph between
            # the forward and the backward pass: it runs the same function eagerly
            step = fns.weighted_gradients if balancer.traceable else fns.weighted_gradients.fn
            new_grads, losses, aux, _, ok = step(
                loss.params, loss.heads, task_args, ok, balancer, task_success, max_norm
            )
        for p, g in zip(like, new_grads, strict=True):
            p.grad = g
        # the fused step reads found_inf (as under a GradScaler): nonzero skips it on the device
        loss.optimizer.found_inf = (~ok).float()  # type: ignore[attr-defined]
        loss.optimizer.step()
        return losses.clone(), aux, ok  # a clone: under CUDA graphs the next replay reuses the output's memory

    def state_dict(self) -> dict:
        """The checkpoint's ``optimizers``, ``balancers`` and ``alpha_opt``."""
        return {
            "optimizers": {loss.name: loss.optimizer.state_dict() for loss in self.losses},
            "balancers": {name: b.state_dict() for name, b in self.balancers.items()},
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for loss in self.losses:
            loss.optimizer.load_state_dict(state["optimizers"][loss.name])
        for name, b in self.balancers.items():
            b.load_state_dict(state["balancers"][name])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
