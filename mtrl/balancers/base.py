"""The balancer contract shared by every method (README.md, "Balancers").

A balancer turns the per-task gradients of the shared parameters, ``grads[K, P]``, and the
per-task losses, ``losses[K]`` (detached), into one update direction ``[P]`` and the per-task
weights ``[K]`` that produced it. Everything stays on the input's device and dtype. A method
with a K x K solve brings the Gram matrix to the host once per call and solves there
(:mod:`mtrl.balancers.host_solver`); every other method runs on the device without reading it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class BalanceResult:
    direction: Tensor  # [P]: written into .grad of the shared parameters
    weights: Tensor  # [K]: direction == grads.T @ weights where the method is linear in grads


class Balancer:
    """Base of every method: one instance serves one loss (critic or actor), never both.

    Subclasses implement ``_balance(grads, losses)``. The base adds the ``log_losses`` option
    (balance the gradients of log L_t, i.e. grads_t / L_t, as the DB-MTL paper recommends for
    PCGrad, CAGrad, Nash-MTL and others) and the solver-failure counter that the trainer logs
    as ``balancer/<loss>/solver_failures``.

    ``needs_grads`` is False for loss-only methods (the trainer may then skip per-task
    gradients and pass ``grads=None``).

    A subclass's hyperparameters are the keyword arguments of its ``__init__`` with their
    defaults (``mtrl list balancers`` reads them from the signature); it passes ``**kwargs``
    on to this ``__init__``. ``task_names`` (not a hyperparameter) lets a method take a
    hyperparameter per task by name (``static``'s weights).
    """

    name: str = ""
    needs_grads: bool = True
    # Methods defined on log losses (DB-MTL, FAMO, UW) have the log_losses transform built in:
    # for them the option is accepted (so balancer.kwargs.log_losses can reach every instance)
    # and does nothing, instead of taking the log a second time.
    logs_losses_itself: bool = False
    uses_success: bool = False  # True: _balance also takes the trainer's task_success
    # balance() reads nothing on the host, so torch.compile traces it whole (mtrl/compile.py): a
    # loss-only method with it set runs inside the compiled loss step
    traceable: bool = False

    def __init__(self, num_tasks: int, log_losses: bool = False, task_names: list[str] | None = None):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if task_names is not None and len(task_names) != num_tasks:
            raise ValueError(f"{len(task_names)} task names for {num_tasks} tasks")
        self.num_tasks = num_tasks
        self.task_names = None if task_names is None else list(task_names)  # for hyperparameters given by task name
        self.log_losses = log_losses and not self.logs_losses_itself
        # a 0-dim tensor, moved to the input's device on first use; incremented without a sync
        self.solver_failures = torch.zeros((), dtype=torch.long)
        self.finite: Tensor | None = None  # the trainer's flag for the current call (see balance)

    def balance(
        self, grads: Tensor | None, losses: Tensor, task_success: Tensor | None = None, finite: Tensor | None = None
    ) -> BalanceResult:
        """``task_success`` [K]: each task's recent training success, from the trainer; only the
        methods driven by task performance (``uses_success``) receive it, the others ignore it.

        ``finite`` (from the trainer): a 0-dim bool on the device, False when this call's
        inputs, or anything earlier in the same update, are not finite. The update is then
        skipped on the device, so the result is not used and the method's state must stay as it
        was. Methods keep it so without a host read where they can: stateless ones need nothing,
        DB-MTL selects its buffer with ``torch.where``, and the host solvers get the flag with
        their Gram matrix (:func:`mtrl.balancers.host_solver.host_gram`); the other stateful methods
        read it once (:meth:`_skip_call`)."""
        if self.solver_failures.device != losses.device:
            self.solver_failures = self.solver_failures.to(losses.device)
        self.finite = finite
        extra = {"task_success": task_success} if self.uses_success else {}
        if not self.log_losses:
            return self._balance(grads, losses, **extra)
        # Balance the gradients of log L_t = grad L_t / scale_t; the weights are reported on
        # the raw gradients (w_t / scale_t), so direction == grads.T @ weights still holds
        # and a loss-only caller can apply them to the raw losses.
        scale = log_loss_scale(losses)
        out = self._balance(None if grads is None else grads / scale.unsqueeze(1), losses, **extra)
        return BalanceResult(direction=out.direction, weights=out.weights / scale)

    def _balance(self, grads: Tensor | None, losses: Tensor) -> BalanceResult:
        raise NotImplementedError

    def task_scalars(self) -> dict[str, Tensor]:
        """Per-task [K] diagnostics the trainer logs as ``balancer/<loss>/<name>/<task>``."""
        return {}

    def _count_failure(self, failed: Tensor | bool) -> None:
        """Add a failure flag (a host bool, or a 0-dim bool tensor that is not read) to the counter;
        a call whose inputs are not finite is not a solver failure."""
        if isinstance(failed, Tensor):
            self.solver_failures += (failed if self.finite is None else failed & self.finite).to(torch.long)
        else:
            self.solver_failures += int(failed)

    def _skip_call(self) -> bool:
        """For stateful methods that cannot select their state on the device: whether this call
        is to be skipped (the trainer's flag read on the host: one synchronisation)."""
        return self.finite is not None and not bool(self.finite)

    # --- state, for checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that must survive a resume. Stateful subclasses extend this."""
        return {"solver_failures": self.solver_failures.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.solver_failures = state["solver_failures"].clone()


def given_grads(grads: Tensor | None, name: str) -> Tensor:
    """The gradients of a method that balances them (``needs_grads``), or one clear error."""
    if grads is None:
        raise ValueError(f"balancer {name!r} balances the per-task gradients: pass grads [K, P], not None")
    return grads


def skipped_result(grads: Tensor | None, losses: Tensor) -> BalanceResult:
    """The result of a skipped call: NaN, so that nothing downstream can take it for an update."""
    ref = losses if grads is None else grads
    direction = torch.full((0 if grads is None else grads.shape[1],), float("nan"), dtype=ref.dtype, device=ref.device)
    return BalanceResult(direction=direction, weights=torch.full_like(losses, float("nan"), dtype=ref.dtype))


def log_loss_scale(losses: Tensor, eps: float = 1e-8) -> Tensor:
    """The divisor that turns grad L_t into the gradient of a log loss.

    For L_t > 0 this is exactly L_t (grad log L_t = grad L_t / L_t). Losses that can be
    negative (the SAC actor loss) have no logarithm; dividing by L_t < 0 would flip the
    gradient into ascent. We divide by |L_t| instead: the direction of each task's gradient is
    kept and its scale normalised by the loss magnitude, which is the scale-invariance that
    DB-MTL's log transform is there for. For positive losses this is DB-MTL's L_t + 1e-8
    exactly; eps keeps a loss at exactly 0 finite.
    """
    return losses.abs() + eps


def clone_or_none(x: Tensor | None) -> Tensor | None:
    """For state_dicts whose tensors exist only after the first call."""
    return None if x is None else x.clone()


def gram(grads: Tensor) -> Tensor:
    """``G G^T`` on the device, in float64, for methods whose K x K work stays there (PCGrad's
    projections, Aligned-MTL's eigendecomposition). Computed in the gradients' dtype when that
    is float32 or float64 (no [K, P] copy), in float32 for half-precision gradients."""
    if grads.dtype not in (torch.float32, torch.float64):
        grads = grads.float()
    m = grads @ grads.T
    return (0.5 * (m + m.T)).to(torch.float64)
