"""IMGrad: imbalance-sensitive gradient descent (CAGrad form, as in the official code).

g_m = G^T w_m,  w_m = argmin_{w in simplex} |G^T w|      (MGDA)
cos = cos(g0, g_m)
w*  = argmin_{w in simplex} (1.5 - cos) w.(G g0) + cos c |g0| |G^T w|
d   = (g0 + c |g0| / |g_w*| g_w*) / (1 + c^2)
"""

from __future__ import annotations

import numpy as np

from mtrl.balancers import register
from mtrl.balancers.host_solver import HostSolverBalancer
from mtrl.balancers.simplex_solvers import conflict_averse_update, floored_norm, min_norm_weights


@register
class IMGrad(HostSolverBalancer):
    """IMGrad (Zhou, Liu, Zhao & Gong, "Injecting Imbalance Sensitivity for Multi-Task
    Learning", IJCAI 2025).

    Equation (the objective of the official code, zzpustc/IMGrad ``imgrad()``, which produced the
    published numbers): with the MGDA min-norm point ``g_m`` and ``cos = cos(g0, g_m)``,
    ``w* = argmin_{w in simplex} (1.5 - cos) w.(G g0) + cos c |g0| |G^T w|``; direction as CAGrad,
    ``d = (g0 + c |g0| / |g_w*| g_w*) / (1 + c^2)`` (the official ``rescale=1``), weights
    ``(1/K + c |g0| / |g_w*| w*) / (1 + c^2)``. Since g_m is the min-norm point of a convex set
    that contains g0, ``g0.g_m >= |g_m|^2 >= 0``, so cos is in [0, 1]: the closer the MGDA
    direction is to the average, the more the objective weighs the conflict-averse term. cos
    is computed as ``g0.g_m / (|g0| max(|g_m|, 1e-4 rho))`` (rho = sum_i w_m,i |g_i|, the scale of
    the rounding in |g_m|: ``floored_norm``), which equals cos(g0, g_m) unless g_m is numerically
    zero (a Pareto-stationary point, where the official code's ``F.cosine_similarity`` with eps
    1e-8 likewise gives ~0) and tends to 0 continuously as g_m -> 0; it is 0 when g0 = 0. With
    cos = 0, w* minimises w.(G g0) alone.

    Hyperparameters: ``c=0.5`` (>= 0). The paper's MT10 experiment builds on CAGrad's MT10 setup;
    the official repository has no MT10 script (its NYUv2 and Cityscapes scripts use c = 0.8 for
    IMGrad, 0.4 for CAGrad); CAGrad's MT10 value is c = 0.9.

    Solvers: MGDA by ``min_norm_weights`` (closed form for K = 2; otherwise Wolfe's active-set
    algorithm started from the previous call's support) and the inner problem by
    ``conflict_averse_weights`` (the same active set with the objective's face minimiser in
    closed form, see CAGrad), both exact to rounding and KKT-certified, with interior-point
    fallbacks, on the float64 K x K Gram matrix on the host (one host synchronisation per call:
    the copy of the Gram matrix).

    Failure and fallback: when either solve misses its tolerance or anything is not finite,
    ``solver_failures`` is incremented (once per call) and the update is the equal-weights one
    (weights 1/K, d = g0).

    Differences from the official code: it solves MGDA with the host-side ``MinNormSolver``
    (see MGDA) and the inner problem with scipy SLSQP on the host at default tolerances, with
    1e-8 added inside the square root and to the denominators; mtrl solves both exactly. The
    paper's Nash-MTL-based form (its Eq. 13) is the separate balancer ``imgrad_nash``.
    """

    name = "imgrad"

    def __init__(self, num_tasks: int, c: float = 0.5, **kwargs):
        super().__init__(num_tasks, **kwargs)
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)
        self.last_cos: float | None = None
        # the support of the last MGDA solution, where the next active-set solve starts; it
        # changes the speed, not the result, so it is not checkpointed
        self.support: np.ndarray | None = None

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        b = m.mean(axis=1)  # G g0
        g0_norm = np.sqrt(max(float(m.sum()), 0.0)) / self.num_tasks
        w_m, ok_m = min_norm_weights(m, self.support)
        self.support = w_m > 0 if ok_m else None
        # cos(g0, g_m) with |g_m| floored (see docstring)
        gm_norm = floored_norm(m, w_m)
        cos = float(np.clip(float(w_m @ b) / (g0_norm * gm_norm), 0.0, 1.0)) if g0_norm > 0 else 0.0
        self.last_cos = cos  # diagnostic
        weights, ok = conflict_averse_update(m, 1.5 - cos, cos * self.c * g0_norm, self.c)
        return weights, ok and ok_m
