"""MGDA: the minimum-norm point of the convex hull of the task gradients.

    w* = argmin_{w in simplex} |G^T w|^2,   d = G^T w*

d is a common descent direction for every task (or 0 at a Pareto-stationary point).
"""

from __future__ import annotations

import numpy as np

from mtrl.balancers import register
from mtrl.balancers.host_solver import HostSolverBalancer
from mtrl.balancers.simplex_solvers import min_norm_weights


@register
class MGDA(HostSolverBalancer):
    """MGDA (Desideri 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018, the MGDA-UB form on the shared parameters' gradients).

    Equation: ``w* = argmin_{w >= 0, sum w = 1} w^T (G G^T) w``; direction ``d = G^T w*``,
    weights ``w*`` (summing to 1, so d has the scale of one task gradient, not of their sum).

    Hyperparameters: none (plus the base ``log_losses``, which gives the official code's "loss"
    gradient normalisation). The paper has no Meta-World experiment, so there is no published
    MT10 setting; the official code's default normalisation is "none", as here.

    Solver (``mtrl.balancers.simplex_solvers.min_norm_weights``), on the float64 K x K Gram matrix on
    the host (one host synchronisation per call: the copy of the Gram matrix): closed form for
    K = 2; for K >= 3 Wolfe's active-set algorithm, started from the previous call's support,
    exact to rounding and certified by the KKT conditions, with the primal-dual interior point
    as the fallback (and for ties, where the optimal weights may not be unique).

    Failure and fallback: when neither solver meets its optimality conditions, or the result is
    not finite, ``solver_failures`` is incremented and the update is the equal-weights one
    (w = 1/K, d = g0).

    Differences from the official code (isl-org/MultiObjectiveOptimization ``MinNormSolver``,
    copied into the CAGrad, Nash-MTL and IMGrad repositories): it runs on the host
    (``.item()`` per inner product), its two-task "analytic" solution clips the weight to
    [0.001, 0.999] instead of [0, 1] (so a dominated task is never switched off exactly), and its
    projected-gradient loop stops on a 1e-5 change in w (the iteration cap of 250 is never
    enforced: the counter is not incremented). mtrl solves the same problem exactly.
    """

    name = "mgda"

    def __init__(self, num_tasks: int, **kwargs):
        super().__init__(num_tasks, **kwargs)
        # the support of the last solution, where the next active-set solve starts (consecutive
        # Gram matrices are close); it changes the speed, not the result, so it is not checkpointed
        self.support: np.ndarray | None = None

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        w, ok = min_norm_weights(m, self.support)
        self.support = w > 0 if ok else None
        return w, ok
