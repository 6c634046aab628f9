"""Stall boost: raise the loss weight of tasks whose training success has stopped improving."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers._loss_weighting import loss_only_result, state_dtype
from mtrl.balancers.base import Balancer, BalanceResult, clone_or_none


@register
class StallBoost(Balancer):
    r"""Stall boost: per-task loss weights driven by each task's measured training success.

    The "performance-driven per-task learning-rate modulation" of the practitioners' recipe
    (static loss normalisation, then raise the rate of tasks that have stalled, then a dynamic
    method such as GradNorm). It has no paper or reference code; mtrl fixes the rule below, a
    per-task version of the familiar reduce-on-plateau schedule run in the other direction.

    Input: ``task_success`` [K] from the trainer, each task's recent training success: with
    x = 1 if a finished training episode succeeded at any step, else 0, and n the task's number
    of finished episodes, s_t <- s_t + (x - s_t) / min(n, 10) (the mean of the first ten
    episodes, then an EMA with weight 0.1: about the last ten episodes). Every call of
    balance() (one update) then applies, for each task t:

        moved_t   = s_t >= min(best_t + min_gain, solved)      best_t = s_t at the first call
        best_t    <- s_t               if moved_t
        quiet_t   <- 0 if moved_t else quiet_t + 1             calls since the task last moved
        stalled_t = quiet_t >= patience  and  s_t < solved
        b_t       <- 0                            if s_t >= solved   (solved: no boost, at once)
                     min(b_t + r, log max_boost)  if stalled_t       (r = log(max_boost) / ramp)
                     max(b_t - r, 0)              otherwise          (moving: the boost decays)
        boost_t   = exp(b_t)  in [1, max_boost]
        w_t       = boost_t / sum_j boost_j

    So a task is stalled once its success has not risen by ``min_gain`` above its best for
    ``patience`` updates; its boost then grows geometrically from 1 to ``max_boost`` over
    ``ramp`` updates and stays capped; when the task improves again the boost falls back at the
    same rate (one improvement buys ``patience`` updates of decay: with the defaults, the
    whole way from the cap to 1). A task whose success fell below its best (forgetting) counts
    as stalled until it beats that best again; a task at or above ``solved`` is never boosted,
    and one that slips back below it is stalled until it is solved again. The weights sum to 1
    (``loss_norm``'s convention; with no task boosted this is ``ew``), so a boost takes weight
    from the other tasks rather than raising the step size.

    Hyperparameters (mtrl's choices; no published setting):
      * ``patience`` = 10000 updates: on MT10 (500-step episodes, one update per vector step)
        20 training episodes per task, twice the success signal's ten-episode memory, so a flat
        signal over the window is a plateau and not the signal's lag.
      * ``min_gain`` = 0.1: one more success in ten episodes, the signal's resolution; smaller
        gains are within its episode-to-episode noise.
      * ``max_boost`` = 3.0: a stalled task gets at most 3x the weight of a moving one -- a
        modulation, bounded so that tasks that never learn cannot take over the update.
      * ``ramp`` = 10000 updates from no boost to the cap (and back).
      * ``solved`` = 0.9: training success uses the stochastic policy and runs below the
        deterministic evaluation's; 0.9 leaves room for that.
    On a schedule other than MT10's, scale ``patience`` and ``ramp`` with the updates per
    training episode (the smoke preset's episodes are 50 updates long).

    It is a loss-weighting method (``needs_grads = False``: the trainer backpropagates
    ``sum_t w_t L_t``), and it composes with the other methods as a stage of
    ``balancer.stages`` (e.g. after ``loss_norm``, before ``gradnorm``). Called without
    ``task_success`` (a direct caller, ``mtrl bench``) it has no evidence: the counters and
    boosts hold and the current weights are returned. The trainer logs ``boost_t`` as
    ``balancer/<loss>/boost/<task>``. State (checkpointed): best, quiet and b per task.
    """

    name = "stall_boost"
    needs_grads = False
    traceable = True  # torch.where only: no host read in balance()
    uses_success = True

    def __init__(
        self,
        num_tasks: int,
        patience: int = 10000,
        min_gain: float = 0.1,
        max_boost: float = 3.0,
        ramp: int = 10000,
        solved: float = 0.9,
        **kwargs,
    ):
        super().__init__(num_tasks, **kwargs)
        if int(patience) < 1 or int(ramp) < 1 or min_gain <= 0 or max_boost < 1 or not 0 < solved <= 1:
            raise ValueError(
                f"stall_boost: need patience >= 1, ramp >= 1, min_gain > 0, max_boost >= 1 and "
                f"0 < solved <= 1 (got {patience}, {ramp}, {min_gain}, {max_boost}, {solved})"
            )
        self.patience, self.ramp = int(patience), int(ramp)
        self.min_gain, self.solved = float(min_gain), float(solved)
        self.log_cap = math.log(max_boost)
        self.best: Tensor | None = None
        self.quiet: Tensor | None = None
        self.log_boost: Tensor | None = None

    def _balance(self, grads: Tensor | None, losses: Tensor, task_success: Tensor | None = None) -> BalanceResult:
        device = losses.device
        dtype = state_dtype(device)
        log_boost, best, quiet = self.log_boost, self.best, self.quiet
        if log_boost is None:
            log_boost = torch.zeros(self.num_tasks, dtype=dtype, device=device)
        elif log_boost.device != device:
            log_boost = log_boost.to(device, dtype)
            if best is not None and quiet is not None:
                best, quiet = best.to(device, dtype), quiet.to(device, dtype)
        if task_success is not None:
            s = task_success.detach().to(device, dtype)
            new = self._observe(
                s, s.clone() if best is None else best, torch.zeros_like(s) if quiet is None else quiet, log_boost
            )
            if self.finite is not None and best is not None and quiet is not None:
                # an update the trainer skips (non-finite losses) leaves the stall clock and the
                # boosts as they were: selected on the device, no host read
                f = self.finite
                new = (torch.where(f, new[0], best), torch.where(f, new[1], quiet), torch.where(f, new[2], log_boost))
            best, quiet, log_boost = new
        self.log_boost, self.best, self.quiet = log_boost, best, quiet
        boost = log_boost.exp()
        return loss_only_result(boost / boost.sum(), grads, losses)

    def _observe(self, s: Tensor, best: Tensor, quiet: Tensor, log_boost: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(best, quiet, log_boost) after seeing the success ``s``."""
        # the trainer's success is float32: a gain of exactly min_gain must not miss by a rounding
        moved = s >= (best + self.min_gain).clamp(max=self.solved) - 1e-6
        best = torch.where(moved, s, best)
        quiet = torch.where(moved, torch.zeros_like(quiet), quiet + 1)
        solved = s >= self.solved - 1e-6
        stalled = (quiet >= self.patience) & ~solved
        step = self.log_cap / self.ramp
        grown = (log_boost + step).clamp(max=self.log_cap)
        decayed = (log_boost - step).clamp(min=0.0)
        return best, quiet, torch.where(solved, torch.zeros_like(decayed), torch.where(stalled, grown, decayed))

    def task_scalars(self) -> dict[str, Tensor]:
        return {} if self.log_boost is None else {"boost": self.log_boost.exp()}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            best=clone_or_none(self.best), quiet=clone_or_none(self.quiet), log_boost=clone_or_none(self.log_boost)
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best = clone_or_none(state["best"])
        self.quiet = clone_or_none(state["quiet"])
        self.log_boost = clone_or_none(state["log_boost"])
