"""CAGrad: conflict-averse gradient descent.

    w* = argmin_{w in simplex}  w.(G g0) + c |g0| |G^T w|
    d  = (g0 + c |g0| / |g_w*| g_w*) / (1 + c^2),   g_w* = G^T w*

d maximises the worst task's improvement within a ball of radius c |g0| around the average
gradient g0 (c = 0 gives plain averaging).
"""

from __future__ import annotations

import numpy as np

from mtrl.balancers import register
from mtrl.balancers.host_solver import HostSolverBalancer
from mtrl.balancers.simplex_solvers import conflict_averse_update


@register
class CAGrad(HostSolverBalancer):
    """CAGrad (Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021).

    Equation: ``w* = argmin_{w in simplex} w.(G g0) + c |g0| |G^T w|`` (the dual of
    ``max_d min_i g_i.d  s.t. |d - g0| <= c |g0|``); direction
    ``d = (g0 + c |g0| / |g_w*| g_w*) / (1 + c^2)``; weights
    ``(1/K + c |g0| / |g_w*| w*) / (1 + c^2)`` so that ``d = G^T weights``.

    Hyperparameters: ``c=0.5`` (>= 0). Meta-World: the paper's MT10 runs use c = 0.9 and its MT50
    runs c = 0.5 (official ``mtrl/mtrl_files/run.sh``).

    Solver (``mtrl.balancers.simplex_solvers.conflict_averse_weights``), on the float64 K x K Gram
    matrix M on the host (one host synchronisation per call: the copy of M): an active-set
    method (Wolfe's, with the objective's minimiser over each face in closed form), exact to
    rounding and certified by the KKT conditions. The inner problem is convex but not
    differentiable where G^T w = 0; near there (and where the optimal w is not unique) it is
    solved in the lifted form ``min_{w, tau > 0} w.(G g0) + c |g0| (w^T M w / (2 tau) + tau / 2)``
    by a primal-dual interior-point method, to a relative KKT residual of 1e-9. When the
    optimum is at G^T w* = 0 (zero in the convex hull of the gradients, c large enough),
    CAGrad's direction is undefined: the correction term fades out (see
    ``conflict_averse_combination``) and d tends to g0 / (1 + c^2).

    Failure and fallback: when neither solver meets its optimality conditions (in practice only
    when the optimum sits at G^T w* = 0, where the interior-point method converges slowly), or
    the result is not finite, ``solver_failures`` is incremented and the update is the
    equal-weights one (weights 1/K, d = g0).

    Differences from the official code (Cranial-XIX/CAGrad): its MT10/MT50 agent
    (``mtrl/mtrl_files/cagrad.py``, method "cagrad", the one behind the published numbers) does
    not solve the inner problem: it runs 20 SGD steps (lr 25, momentum 0.5; lr 50 for 50 tasks)
    on softmax logits of w, on a Gram matrix normalised by the mean gradient norm and with 1e-4
    added inside the square roots, keeping the best of 21 iterates, and reads the objective on
    the host every step. Its "cagrad_exact" variant uses scipy SLSQP on the host with default
    tolerances and divides by (1 + lambda) instead of (1 + c^2). mtrl solves the problem to
    optimality and uses the paper's (1 + c^2) rescale, as the official supervised
    code (rescale=1) does. torchjd's CAGrad omits the (1 + c^2) rescale. Like the official code,
    mtrl solves on the host; unlike it, to the problem's optimum.
    """

    name = "cagrad"

    def __init__(self, num_tasks: int, c: float = 0.5, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        g0_norm = np.sqrt(max(float(m.sum()), 0.0)) / self.num_tasks
        return conflict_averse_update(m, 1.0, self.c * g0_norm, self.c)
